"""03 - Bridge LLM provider streams (OpenAI, Anthropic, Bedrock) into one A2A stream.

Offline by default (simulated providers in each one's own event shapes, no keys). You will see:
  1. a small adapter per provider turn its events into text plus a common summary (stop reason, tokens);
  2. a transform pipeline on every answer: an e-mail address and an API key streamed in pieces arrive
     as "[redacted ...]", the answer stops at a stop sequence, blank lines are tidied, chunks are words;
  3. fallback: the first provider fails before its first token, the second stalls, the third answers once;
  4. a provider failing mid-stream: an error event ends the A2A stream; the words so far show as partial;
  5. a table per scenario, then one verdict (exit 1 if a promise was broken).

    python 03_streaming_llm_integration.py --fast
    python 03_streaming_llm_integration.py --provider openai --provider anthropic   # the real APIs

--provider (repeatable) sends that provider's runs to its real API through the official SDK (keys and base
URLs from each SDK's usual environment variables: see the README); credentials alone never send anything.
Request metadata (optional): "providers" (fallback order), "stall_seconds", "faults" (simulated ones only).
"""
from __future__ import annotations

import asyncio
import importlib
import os
import sys
import threading
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterable, Optional

from streaming_kit import (A2AStreamingError, StopAt, StreamingAgent, StrictStreamingClient, chunk_text, message_text,
                           pipeline, redact_secrets, text_message, tidy_whitespace, whole_words)
from streaming_kit.streams import each_event  # boto3's stream blocks: iterated in a thread
from streaming_kit.transforms import Transform
from examples_support import llm_report, paint, run_demo
from examples_support.llm_simulators import SDK_MODULES, Pace, llm_command_line, parse_checked, read_options, simulate

DEFAULT_PORT = 8103
PROVIDERS = ("openai", "anthropic", "bedrock")
MODELS = {"openai": os.environ.get("OPENAI_MODEL", "gpt-4o-mini"),
          "anthropic": os.environ.get("ANTHROPIC_MODEL", "claude-3-5-haiku-latest"),
          "bedrock": os.environ.get("BEDROCK_MODEL_ID", "anthropic.claude-3-haiku-20240307-v1:0")}
PROMPT = "Why stream an LLM answer to another agent instead of sending it in one piece?"


# --8<-- [start:adapters]
class ProviderError(Exception):
    """The provider failed (an error event, a stream cut off, a stall) before the answer was complete."""

    def __str__(self) -> str:  # with the notes transforms add (text they withheld), so the client sees them
        return "; ".join([super().__str__(), *getattr(self, "__notes__", [])])


class ProviderStalled(ProviderError):
    """The provider sent nothing for longer than the stall limit."""


# 1. Each provider names its stop reasons differently; the A2A side sees one vocabulary.
COMMON_STOP_REASONS = {"stop": "end", "end_turn": "end", "length": "max_tokens", "max_tokens": "max_tokens",
                       "model_context_window_exceeded": "max_tokens", "stop_sequence": "stop_sequence",
                       "tool_calls": "tool_use", "function_call": "tool_use", "tool_use": "tool_use",
                       "content_filter": "content_filter", "content_filtered": "content_filter",
                       "guardrail_intervened": "content_filter", "refusal": "refusal"}


@dataclass
class ProviderRun:
    """What one provider stream reported: stop reason, token usage, timing."""
    provider: str
    model: str
    simulated: bool
    raw_stop_reason: str = ""
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    text_events: int = 0
    started: float = field(default_factory=time.monotonic)
    first_token: Optional[float] = None

    def summary(self) -> dict:
        """JSON-ready; output_tokens falls back to the counted text events."""
        tokens = self.output_tokens if self.output_tokens is not None else self.text_events
        streaming = time.monotonic() - (self.first_token or self.started)
        first_ms = None if self.first_token is None else round((self.first_token - self.started) * 1000)
        return {"provider": self.provider, "model": self.model, "simulated": self.simulated,
                "stop_reason": COMMON_STOP_REASONS.get(self.raw_stop_reason, self.raw_stop_reason or "unknown"),
                "raw_stop_reason": self.raw_stop_reason, "input_tokens": self.input_tokens, "output_tokens": tokens,
                "first_token_ms": first_ms, "tokens_per_s": round(tokens / streaming, 1) if streaming > 0 else None}


def field_of(obj: Any, name: str, default: Any = None) -> Any:
    """obj[name] for dicts, obj.name for SDK objects: adapters accept both shapes."""
    return default if obj is None else obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


async def openai_text(chunks: Any, run: ProviderRun) -> AsyncIterator[str]:
    """OpenAI Chat Completions chunks -> text. Usage comes in a last chunk with `choices: []`. A model
    that declines streams `delta.refusal` instead of `delta.content`: forwarded, stop reason "refusal"."""
    refused = False
    async for chunk in each_event(chunks):
        if error := field_of(chunk, "error"):  # the SDK raises on this itself; raw dicts carry it
            raise ProviderError(f"{field_of(error, 'type', 'error')}: {field_of(error, 'message', error)}")
        if usage := field_of(chunk, "usage"):
            run.input_tokens, run.output_tokens = field_of(usage, "prompt_tokens"), field_of(usage, "completion_tokens")
        for choice in field_of(chunk, "choices") or []:
            if field_of(choice, "index", 0) != 0:  # n > 1: stream the first choice only
                continue
            for kind in ("refusal", "content"):
                if text := field_of(field_of(choice, "delta"), kind):
                    refused, run.text_events = refused or kind == "refusal", run.text_events + 1
                    yield text
            run.raw_stop_reason = field_of(choice, "finish_reason") or run.raw_stop_reason
    if not run.raw_stop_reason:
        raise ProviderError("OpenAI stream ended without a finish_reason: it was cut off")
    run.raw_stop_reason = "refusal" if refused else run.raw_stop_reason


async def anthropic_text(events: Any, run: ProviderRun) -> AsyncIterator[str]:
    """Anthropic Messages events -> text. Only `text_delta` carries answer text (not thinking or tool JSON)."""
    finished = False
    async for event in each_event(events):
        kind = field_of(event, "type")
        if kind == "message_start":
            run.input_tokens = field_of(field_of(field_of(event, "message"), "usage"), "input_tokens")
        elif kind == "content_block_delta" and field_of(field_of(event, "delta"), "type") == "text_delta":
            run.text_events += 1
            yield field_of(field_of(event, "delta"), "text")
        elif kind == "message_delta":
            run.raw_stop_reason = field_of(field_of(event, "delta"), "stop_reason") or run.raw_stop_reason
            run.output_tokens = field_of(field_of(event, "usage"), "output_tokens", run.output_tokens)
        elif kind == "message_stop":
            finished = True
        elif kind == "error":  # the SDK raises on this itself; raw dicts carry it
            error = field_of(event, "error")
            raise ProviderError(f"{field_of(error, 'type')}: {field_of(error, 'message')}")
    if not finished:
        raise ProviderError("Anthropic stream ended without message_stop: it was cut off")


async def bedrock_text(events: Any, run: ProviderRun) -> AsyncIterator[str]:
    """Bedrock ConverseStream events (dicts with one key each) -> text; usage arrives after messageStop."""
    finished = False
    async for event in each_event(events):
        for kind, body in event.items():
            if kind.endswith("Exception"):  # throttlingException, modelStreamErrorException, ...
                raise ProviderError(f"{kind}: {field_of(body, 'message', body)}")
            if kind == "contentBlockDelta" and (text := field_of(field_of(body, "delta"), "text")):
                run.text_events += 1
                yield text
            elif kind == "messageStop":
                run.raw_stop_reason, finished = field_of(body, "stopReason") or "", True
            elif kind == "metadata":
                usage = field_of(body, "usage")
                run.input_tokens, run.output_tokens = field_of(usage, "inputTokens"), field_of(usage, "outputTokens")
    if not finished:
        raise ProviderError("Bedrock stream ended without messageStop: it was cut off")


ADAPTERS = {"openai": openai_text, "anthropic": anthropic_text, "bedrock": bedrock_text}
# --8<-- [end:adapters]


# --8<-- [start:providers]
# Each takes the stall limit: boto3 reads in a thread asyncio cannot interrupt, so its socket timeout must match.
async def real_openai_events(prompt: str, stall_seconds: float = 10.0) -> AsyncIterator[Any]:
    import openai  # imported here: the offline demo never pays for it
    async with openai.AsyncOpenAI(max_retries=0) as client:  # the fallback chain is the retry policy
        stream = await client.chat.completions.create(model=MODELS["openai"], stream=True, messages=[
            {"role": "user", "content": prompt}], stream_options={"include_usage": True})
        async for chunk in stream:
            yield chunk


async def real_anthropic_events(prompt: str, stall_seconds: float = 10.0) -> AsyncIterator[Any]:
    import anthropic
    async with anthropic.AsyncAnthropic(max_retries=0) as client:
        stream = await client.messages.create(model=MODELS["anthropic"], max_tokens=512, stream=True,
                                              messages=[{"role": "user", "content": prompt}])
        async for event in stream:
            yield event


async def real_bedrock_events(prompt: str, stall_seconds: float = 10.0) -> AsyncIterator[Any]:
    import boto3
    from botocore.config import Config
    config = Config(read_timeout=stall_seconds, retries={"total_max_attempts": 1})  # no retries, as above
    client = boto3.client("bedrock-runtime", config=config)
    response = await asyncio.to_thread(client.converse_stream, modelId=MODELS["bedrock"],
                                       messages=[{"role": "user", "content": [{"text": prompt}]}])
    try:
        async for event in each_event(response["stream"]):
            yield event
    finally:  # close() waits for the worker's pending read: never on the event loop, or the fallback freezes
        threading.Thread(target=response["stream"].close, name="close bedrock stream", daemon=True).start()


REAL_EVENTS = {"openai": real_openai_events, "anthropic": real_anthropic_events, "bedrock": real_bedrock_events}
# --8<-- [end:providers]


# --8<-- [start:transforms]
# 2. The kit's stream transforms (streaming_kit/transforms.py), in this order: redact first, so nothing
# downstream ever sees a secret; then cut at a stop sequence, tidy whitespace, and group into words.
def default_transforms(stop: StopAt) -> list[Transform]:
    return [redact_secrets, stop, tidy_whitespace, whole_words]
# --8<-- [end:transforms]


# --8<-- [start:agent]
async def within_stall_limit(events: AsyncIterator[Any], seconds: float, provider: str) -> AsyncIterator[Any]:
    """Pass events through; a provider silent for `seconds` counts as failed."""
    async with aclosing(events):
        while True:
            try:
                yield await asyncio.wait_for(anext(events), seconds)
            except StopAsyncIteration:
                return
            except asyncio.TimeoutError:
                raise ProviderStalled(f"{provider} sent nothing for {seconds:g} s") from None


class LLMBridgeAgent(StreamingAgent):
    """Streams an LLM answer through a transform pipeline, falling back across providers."""

    def __init__(self, real: Iterable[str] = (), pace: Optional[Pace] = None, stall_seconds: float = 10.0,
                 stop_sequences: Iterable[str] = ("\nUser:", "\nHuman:")):
        super().__init__()
        self.real, self.pace, self.stall_seconds = set(real), pace or Pace(), stall_seconds
        self.stop_sequences = tuple(stop_sequences)
        for provider in self.real:  # import the SDKs now, so their ~1 s import never counts as a stall
            importlib.import_module(SDK_MODULES[provider])

    async def stream_response(self, message) -> AsyncIterator[Any]:
        # The request's options (see the docstring); a ValueError reaches the client as an error event.
        providers, faults, stall = read_options(message, PROVIDERS, self.real, self.stall_seconds)
        stop, failed_attempts = StopAt(*self.stop_sequences), []
        for provider in providers:  # 3. the first provider that produces a token (or ends cleanly) answers
            run = ProviderRun(provider, MODELS[provider], simulated=provider not in self.real)
            tokens = self.provider_tokens(provider, message_text(message), run, stall, faults.get(provider))
            try:
                first = await anext(tokens, None)  # None: an empty answer, which is still an answer
            except Exception as exc:  # any failure before the first token: try the next provider
                await tokens.aclose()
                failed_attempts.append(f"{provider}: {type(exc).__name__}: {exc}")
                continue
            async for piece in pipeline(self.rest_of_answer(first, tokens, run), default_transforms(stop)):
                yield piece  # 2. transformed text; 4. a failure from here on ends the stream, partial
            summary = {**run.summary(), "failed_attempts": failed_attempts}
            yield {"summary": {**summary, "stop_reason": "stop_sequence"} if stop.hit else summary}  # 1. data, no text
            return
        raise ProviderError("no provider answered: " + "; ".join(failed_attempts))

    async def provider_tokens(self, provider: str, prompt: str, run: ProviderRun, stall: float,
                              fault: Optional[str]) -> AsyncIterator[str]:
        """One provider's text tokens, guarded by the stall limit, with the first token's time on run."""
        if provider in self.real:
            events = REAL_EVENTS[provider](prompt, stall)
        else:
            events = simulate(provider, MODELS[provider], prompt, self.pace, fault)
        async with aclosing(ADAPTERS[provider](within_stall_limit(events, stall, provider), run)) as text:
            async for token in text:
                run.first_token = run.first_token or time.monotonic()
                yield token

    @staticmethod
    async def rest_of_answer(first: Optional[str], tokens: AsyncIterator[str], run: ProviderRun) -> AsyncIterator[str]:
        """The answering provider's tokens; after text went out, a retry elsewhere would duplicate it."""
        async with aclosing(tokens):
            if first is not None:
                yield first
            try:
                async for token in tokens:
                    yield token
            except Exception as exc:
                raise ProviderError(f"{run.provider} failed after {run.text_events} tokens "
                                    f"({type(exc).__name__}: {exc}); the answer is partial") from exc
# --8<-- [end:agent]


# --8<-- [start:client]
@dataclass
class Outcome:
    """What the client saw for one request."""
    scenario: str
    text: str = ""
    chunks: int = 0
    summary: Optional[dict] = None
    error: Optional[str] = None
    seconds: float = 0.0


async def ask(url: str, scenario: str, **options: Any) -> Outcome:
    """Stream one answer, printing it as it arrives; a failed stream leaves the text marked partial."""
    outcome, started = Outcome(scenario), time.monotonic()
    print(paint(f"\n== {scenario}", "cyan"))
    try:
        request = text_message(PROMPT, metadata=options)  # the options ride in the A2A message's metadata
        async for chunk in StrictStreamingClient(url, timeout=30).stream_response(request):
            if isinstance(content := chunk.get("content"), dict) and "summary" in content:
                outcome.summary = content["summary"]  # the agent's last chunk: data, not text
                continue
            outcome.text, outcome.chunks = outcome.text + chunk_text(chunk), outcome.chunks + 1
            print(chunk_text(chunk), end="", flush=True)
    except A2AStreamingError as exc:  # 4. an error event after some text: keep the text, say it is partial
        outcome.error = str(exc)
        print(paint(f"\n[partial answer: the stream ended with an error: {exc}]", "yellow"))
    outcome.seconds = time.monotonic() - started
    print()
    for attempt in (outcome.summary or {}).get("failed_attempts", []):
        print(paint(f"  (tried first, failed before any text: {attempt})", "yellow"))
    return outcome
# --8<-- [end:client]


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_checked(llm_command_line(__doc__, DEFAULT_PORT, PROVIDERS), argv)  # a --provider's SDK/key checked
    agent = lambda: LLMBridgeAgent(args.provider, Pace(0, 0) if args.fast else Pace(), args.stall_seconds)
    return run_demo(args, agent, lambda url: llm_report.scenarios(ask, url, PROVIDERS, args), own_agent_only=True)


if __name__ == "__main__":
    sys.exit(main())
