"""The offline side of 03_streaming_llm_integration.py: simulated OpenAI, Anthropic and Bedrock streams.

Each simulator plays its provider's documented event shapes with realistic pacing, and can fail on
purpose (the demo's fallback and partial-answer scenarios). Also here: the request options that
choose providers and faults, and whether real mode can run.
Demo machinery only: the lesson (adapters, real SDK calls, transforms, fallback) is in the script.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import time
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any, AsyncIterator, Optional

from streaming_kit import quiet

FAULTS = ("error_before_first_token", "stall", "error_mid_stream")
SDK_MODULES = {"openai": "openai", "anthropic": "anthropic", "bedrock": "boto3"}


@dataclass
class Pace:
    """Simulated latency: time to first token, then per token (both 0 with --fast)."""
    first_token: float = 0.4
    per_token: float = 0.03

    async def wait(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds * random.uniform(0.6, 1.4))


def read_options(message: Any, providers: tuple[str, ...], real: set[str], stall_limit: float
                 ) -> tuple[list[str], dict[str, str], float]:
    """The demo agent's request metadata, validated: the providers to try in order, simulated faults
    ({"openai": "error_mid_stream"}), the stall limit (only ever tightened). ValueError if bad: the
    agent raises it, so the client gets it as an error event."""
    options = getattr(message.metadata, "custom_fields", None) or {}
    order, faults = options.get("providers") or list(providers), options.get("faults") or {}
    stall = options.get("stall_seconds", stall_limit)  # 0 is a bad value, not "unset"
    if not isinstance(order, list):
        raise ValueError('"providers" must be a list of names')
    if not isinstance(faults, dict):
        raise ValueError('"faults" must be an object: {"<provider>": "<fault>"}')
    if unknown := [p for p in [*order, *faults] if p not in providers]:
        raise ValueError(f"unknown provider {unknown[0]!r}; choose from {', '.join(providers)}")
    if bad := [f for f in faults.values() if f not in FAULTS]:
        raise ValueError(f"unknown fault {bad[0]!r}; choose from {', '.join(FAULTS)}")
    if isinstance(stall, bool) or not isinstance(stall, (int, float)) or stall <= 0:
        raise ValueError('"stall_seconds" must be a positive number')
    if real_faults := [p for p in faults if p in real]:
        raise ValueError(f"faults are simulated: {real_faults[0]} is running against the real API")
    return order, faults, min(stall, stall_limit)


def simulated_tokens(prompt: str, model: str) -> list[str]:
    """A deterministic answer split into word pieces, the way a tokenizer splits text."""
    answer = (f"{model} (simulated) on: {prompt}\n\n\n\n"
              "Streaming lets the calling agent show the first words at once and act on the rest "
              "as it arrives, instead of waiting for the whole answer.   \n"
              "Questions go to ops-team@example.com; the old key sk-demo-3f9a8b7c6d5e4f3a2b1c was "
              "rotated. Both leave this agent redacted.\n")
    return re.findall(r" ?\w{1,4}|\s+|[^\w\s]", answer)


def openai_events(model: str, tokens: list[str], prompt_tokens: int) -> tuple[list, Any]:
    """The chunks OpenAI streams with stream_options={"include_usage": True}, and its error shape."""
    def chunk(delta: dict, finish: Optional[str] = None) -> dict:
        return {"id": "chatcmpl-sim", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                "usage": None}
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
             "total_tokens": prompt_tokens + len(tokens)}
    events = ([chunk({"role": "assistant", "content": ""})] + [chunk({"content": t}) for t in tokens]
              + [chunk({}, "stop"), {**chunk({}), "choices": [], "usage": usage}])
    error = {"error": {"type": "server_error", "message": "The server had an error while processing your request."}}
    return events, error


def anthropic_events(model: str, tokens: list[str], prompt_tokens: int) -> tuple[list, Any]:
    """The named SSE events of an Anthropic Messages stream, and its error event."""
    start = {"type": "message_start", "message": {
        "id": "msg_sim", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": prompt_tokens, "output_tokens": 1}}}
    events = ([start, {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
               {"type": "ping"}]
              + [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}
                 for t in tokens]
              + [{"type": "content_block_stop", "index": 0},
                 {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                  "usage": {"output_tokens": len(tokens)}},
                 {"type": "message_stop"}])
    return events, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def bedrock_events(model: str, tokens: list[str], prompt_tokens: int) -> tuple[list, Any]:
    """The events boto3's converse_stream yields, and a throttling exception event."""
    usage = {"inputTokens": prompt_tokens, "outputTokens": len(tokens), "totalTokens": prompt_tokens + len(tokens)}
    events = ([{"messageStart": {"role": "assistant"}}]
              + [{"contentBlockDelta": {"delta": {"text": t}, "contentBlockIndex": 0}} for t in tokens]
              + [{"contentBlockStop": {"contentBlockIndex": 0}}, {"messageStop": {"stopReason": "end_turn"}},
                 {"metadata": {"usage": usage, "metrics": {"latencyMs": 400}}}])
    return events, {"throttlingException": {"message": "Too many requests, please wait before trying again."}}


SIMULATED_EVENTS = {"openai": openai_events, "anthropic": anthropic_events, "bedrock": bedrock_events}


def is_text_event(event: dict) -> bool:
    """True for the events that carry answer text, in any of the three shapes."""
    delta = event.get("delta") if isinstance(event.get("delta"), dict) else {}
    return bool(delta.get("text") or "contentBlockDelta" in event
                or any((c.get("delta") or {}).get("content") for c in event.get("choices") or []))


async def simulate(provider: str, model: str, prompt: str, pace: Pace,
                   fault: Optional[str] = None) -> AsyncIterator[dict]:
    """Play a provider's event sequence with realistic pacing, optionally failing on purpose."""
    tokens = simulated_tokens(prompt, model)
    events, error_event = SIMULATED_EVENTS[provider](model, tokens, len(prompt.split()))
    text_positions = [i for i, event in enumerate(events) if is_text_event(event)]
    fail_at = {"error_before_first_token": text_positions[0], "stall": text_positions[0],
               "error_mid_stream": text_positions[len(text_positions) // 2]}.get(fault)
    await pace.wait(pace.first_token)
    for position, event in enumerate(events):
        if position == fail_at:
            if fault == "stall":
                await asyncio.Event().wait()  # never set: only the stall limit ends this
            yield error_event
            return
        if position in text_positions[1:]:
            await pace.wait(pace.per_token)
        yield event


def parse_checked(parser: argparse.ArgumentParser, argv: Optional[list[str]]) -> argparse.Namespace:
    """parse_args, then: every --provider can run for real, else a usage error (exit 2) now
    instead of a traceback in the middle of the demo."""
    args = parser.parse_args(argv)
    if not args.verbose:
        quiet()  # before the checks: boto3 logs "Found credentials ..." at INFO otherwise
    for provider in args.provider:
        if reason := cannot_use_real(provider):
            parser.error(f"--provider {provider}: {reason}")
    return args


def cannot_use_real(provider: str) -> Optional[str]:
    """Why real mode cannot run for this provider (SDK, credentials, region), or None when it can."""
    module = SDK_MODULES[provider]
    if find_spec(module) is None:
        return f"the {module} SDK is not installed: pip install {module}"
    if provider == "openai" and not os.environ.get("OPENAI_API_KEY"):
        return "set OPENAI_API_KEY"
    if provider == "anthropic" and not os.environ.get("ANTHROPIC_API_KEY"):
        return "set ANTHROPIC_API_KEY"
    if provider == "bedrock":
        import boto3
        session = boto3.Session()
        if session.get_credentials() is None:
            return "configure AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)"
        if not session.region_name:
            return "set AWS_REGION (or AWS_DEFAULT_REGION, or a region in your AWS profile)"
    return None


def llm_command_line(doc: str, port: int, providers: tuple) -> argparse.ArgumentParser:
    """03's command line: the shared contract plus --provider (the agent's), --stall-seconds and --report."""
    from examples_support import demo_parser, output_file, seconds_arg
    parser = demo_parser(doc, port)
    parser.server_option("--provider", action="append", choices=providers, default=[],
                         help="use this provider's real API via its SDK (repeatable); the others stay simulated")
    parser.add_argument("--stall-seconds", type=seconds_arg(), default=10.0,
                        help="a provider silent this long counts as failed (default 10)")
    parser.client_option("--report", type=output_file(), metavar="FILE.json", help="write every outcome as JSON")
    return parser
