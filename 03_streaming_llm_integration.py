"""03 - Bridge LLM provider streams (OpenAI, Anthropic, Bedrock) into one A2A stream.

What you'll see (offline, no keys needed):
  1. one clean run per provider: a simulated OpenAI, Anthropic and Bedrock stream, each in
     that provider's own event shapes, turned into plain text by a small adapter;
  2. the transform pipeline at work on every answer: an e-mail address and an API key that the
     model streamed in pieces arrive as "[redacted ...]", and stray blank lines are tidied;
  3. a fallback: the first provider fails before its first token, the second stalls, the third
     answers - the client gets that answer once, with no text from the failed attempts;
  4. a provider that fails mid-stream: the A2A stream ends with an error event and the client
     shows every word written so far, marked partial (only an unfinished word that could be the
     start of a secret is withheld, and the error says so);
  5. a per-provider table: tokens, time to first token, tokens/s, stop reason, verdict.

Real mode: `--provider openai` (or anthropic, bedrock; repeatable) sends that provider's runs to
the real API through its official SDK (OPENAI_API_KEY, ANTHROPIC_API_KEY, AWS credentials and
region; the SDKs honour OPENAI_BASE_URL / ANTHROPIC_BASE_URL). Providers you do not name stay
simulated, so the failure scenarios still run on them. Only --provider switches to real mode:
credentials in your environment alone never send a run to the network (or cost money), so the
plain command stays offline whatever keys you have set. A missing SDK, key or region is a usage
error (exit 2), and so is --provider with --url (the agent then runs elsewhere: give --provider
to its --serve).

Callers steer a request with the A2A message's metadata (all optional): "providers" (the
fallback order), "faults" (simulated providers only: {"openai": "error_mid_stream"}) and
"stall_seconds" (may only tighten the server's --stall-seconds).
"""
from __future__ import annotations

import asyncio
import importlib
import os
import random
import re
import sys
import threading
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any, AsyncIterator, Callable, Iterable, Optional

import streaming_kit  # noqa: F401  (first: keeps `import python_a2a` fast)
from python_a2a import A2AStreamingError, Message
from streaming_kit import StreamingAgent, StrictStreamingClient, chunk_text, message_text, quiet, text_message
from examples_support import demo_parser, paint, print_table, run_demo, seconds_arg

DEFAULT_PORT = 8103
PROVIDERS = ("openai", "anthropic", "bedrock")
MODELS = {  # override with OPENAI_MODEL, ANTHROPIC_MODEL, BEDROCK_MODEL_ID
    "openai": os.environ.get("OPENAI_MODEL", "gpt-4o-mini"),
    "anthropic": os.environ.get("ANTHROPIC_MODEL", "claude-3-5-haiku-latest"),
    "bedrock": os.environ.get("BEDROCK_MODEL_ID", "anthropic.claude-3-haiku-20240307-v1:0"),
}
PROMPT = "Why stream an LLM answer to another agent instead of sending it in one piece?"


class ProviderError(Exception):
    """The provider reported a failure inside its stream (an error or exception event)."""


class ProviderStalled(ProviderError):
    """The provider sent nothing for longer than the stall limit."""


class ProviderStreamError(Exception):
    """A provider failed after its first token: the answer so far is partial.

    Transforms that held text back when the stream broke add a note saying what they did with it.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.notes: list[str] = []

    def __str__(self) -> str:
        return "; ".join([super().__str__(), *self.notes])


class AllProvidersFailed(Exception):
    """Every provider in the chain failed before its first token."""


# ---------------------------------------------------------------- 1. a common summary of a provider stream
# Each provider names its stop reasons differently; the A2A side sees one vocabulary.
COMMON_STOP_REASONS = {
    "stop": "end", "end_turn": "end",                                   # finished normally
    "length": "max_tokens", "max_tokens": "max_tokens", "model_context_window_exceeded": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_calls": "tool_use", "function_call": "tool_use", "tool_use": "tool_use",
    "content_filter": "content_filter", "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter", "refusal": "refusal",
}


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
    ended: Optional[float] = None

    def record_stop(self, raw_stop_reason: Optional[str]) -> None:
        if raw_stop_reason:
            self.raw_stop_reason = str(raw_stop_reason)

    def summary(self) -> dict:
        """The run as JSON-ready data; output_tokens falls back to counted text events."""
        tokens = self.output_tokens if self.output_tokens is not None else self.text_events
        streaming = (self.ended or time.monotonic()) - (self.first_token or self.started)
        return {"provider": self.provider, "model": self.model, "simulated": self.simulated,
                "stop_reason": COMMON_STOP_REASONS.get(self.raw_stop_reason, self.raw_stop_reason or "unknown"),
                "raw_stop_reason": self.raw_stop_reason, "input_tokens": self.input_tokens,
                "output_tokens": tokens,
                "first_token_ms": None if self.first_token is None else round((self.first_token - self.started) * 1000),
                "tokens_per_s": round(tokens / streaming, 1) if streaming > 0 else None}


def field_of(obj: Any, name: str, default: Any = None) -> Any:
    """obj[name] for dicts, obj.name for SDK objects: adapters accept both shapes."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


async def each_event(events: Any) -> AsyncIterator[Any]:
    """Iterate an async stream, a list, or a blocking iterator (boto3) without blocking the loop."""
    if hasattr(events, "__aiter__"):
        async for event in events:
            yield event
    elif isinstance(events, (list, tuple)):
        for event in events:
            yield event
    else:
        iterator, done = iter(events), object()
        while (event := await asyncio.to_thread(next, iterator, done)) is not done:
            yield event


# ---------------------------------------------------------------- 2. one adapter per provider
async def openai_text(chunks: Any, run: ProviderRun) -> AsyncIterator[str]:
    """OpenAI Chat Completions chunks -> text. Usage comes in a last chunk with `choices: []`.

    A model that declines streams its explanation in `delta.refusal` instead of `delta.content`
    (and still finishes with "stop"): we forward that text and report the stop reason "refusal".
    """
    refused = False
    async for chunk in each_event(chunks):
        if field_of(chunk, "error"):  # the SDK raises on this itself; raw dicts carry it
            error = field_of(chunk, "error")
            raise ProviderError(f"{field_of(error, 'type', 'error')}: {field_of(error, 'message', error)}")
        if usage := field_of(chunk, "usage"):
            run.input_tokens = field_of(usage, "prompt_tokens")
            run.output_tokens = field_of(usage, "completion_tokens")
        for choice in field_of(chunk, "choices") or []:
            if field_of(choice, "index", 0) != 0:  # n > 1: stream the first choice only
                continue
            delta = field_of(choice, "delta")
            if refusal := field_of(delta, "refusal"):
                refused = True
                run.text_events += 1
                yield refusal
            if text := field_of(delta, "content"):
                run.text_events += 1
                yield text
            run.record_stop(field_of(choice, "finish_reason"))
    if not run.raw_stop_reason:
        raise ProviderError("OpenAI stream ended without a finish_reason: it was cut off")
    if refused:
        run.record_stop("refusal")


async def anthropic_text(events: Any, run: ProviderRun) -> AsyncIterator[str]:
    """Anthropic Messages events -> text. Only `text_delta` carries answer text."""
    finished = False
    async for event in each_event(events):
        kind = field_of(event, "type")
        if kind == "message_start":
            usage = field_of(field_of(event, "message"), "usage")
            run.input_tokens = field_of(usage, "input_tokens")
        elif kind == "content_block_delta":
            delta = field_of(event, "delta")
            if field_of(delta, "type") == "text_delta":  # not input_json / thinking / signature
                run.text_events += 1
                yield field_of(delta, "text")
        elif kind == "message_delta":
            run.record_stop(field_of(field_of(event, "delta"), "stop_reason"))
            run.output_tokens = field_of(field_of(event, "usage"), "output_tokens", run.output_tokens)
        elif kind == "message_stop":
            finished = True
        elif kind == "error":  # the SDK raises on this itself; raw dicts carry it
            error = field_of(event, "error")
            raise ProviderError(f"{field_of(error, 'type')}: {field_of(error, 'message')}")
        # ping, content_block_start, content_block_stop: nothing to forward
    if not finished:
        raise ProviderError("Anthropic stream ended without message_stop: it was cut off")


async def bedrock_text(events: Any, run: ProviderRun) -> AsyncIterator[str]:
    """Bedrock ConverseStream events (dicts with one key each) -> text."""
    finished = False
    async for event in each_event(events):
        for kind, body in event.items():
            if kind.endswith("Exception"):  # throttlingException, modelStreamErrorException, ...
                raise ProviderError(f"{kind}: {field_of(body, 'message', body)}")
            if kind == "contentBlockDelta":
                if text := field_of(field_of(body, "delta"), "text"):  # not toolUse / reasoningContent
                    run.text_events += 1
                    yield text
            elif kind == "messageStop":
                run.record_stop(field_of(body, "stopReason"))
                finished = True
            elif kind == "metadata":  # arrives after messageStop
                usage = field_of(body, "usage")
                run.input_tokens = field_of(usage, "inputTokens")
                run.output_tokens = field_of(usage, "outputTokens")
    if not finished:
        raise ProviderError("Bedrock stream ended without messageStop: it was cut off")


ADAPTERS = {"openai": openai_text, "anthropic": anthropic_text, "bedrock": bedrock_text}


# ---------------------------------------------------------------- 3. simulated providers (offline default)
@dataclass
class Pace:
    """Simulated latency: time to first token, then per token (both 0 with --fast)."""
    first_token: float = 0.4
    per_token: float = 0.03

    async def wait(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds * random.uniform(0.6, 1.4))


FAULTS = ("error_before_first_token", "stall", "error_mid_stream")


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
    return bool(field_of(field_of(event, "delta"), "text") or "contentBlockDelta" in event
                or any(field_of(field_of(c, "delta"), "content") for c in event.get("choices") or []))


async def simulate(provider: str, prompt: str, pace: Pace, fault: Optional[str] = None) -> AsyncIterator[dict]:
    """Play a provider's event sequence with realistic pacing, optionally failing on purpose."""
    tokens = simulated_tokens(prompt, MODELS[provider])
    events, error_event = SIMULATED_EVENTS[provider](MODELS[provider], tokens, len(prompt.split()))
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


# ---------------------------------------------------------------- 4. real providers (optional SDKs, lazy imports)
# Each takes the stall limit too: an SDK that reads in a thread (boto3) cannot be interrupted by
# asyncio, so its own socket timeout must be no longer than our stall limit.
async def real_openai_events(prompt: str, stall_seconds: float = 10.0) -> AsyncIterator[Any]:
    """ChatCompletionChunk objects from the real API (or any OPENAI_BASE_URL)."""
    import openai  # imported here: the offline demo never pays for it
    async with openai.AsyncOpenAI(max_retries=0) as client:  # the fallback chain is our retry policy
        stream = await client.chat.completions.create(
            model=MODELS["openai"], messages=[{"role": "user", "content": prompt}],
            stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            yield chunk


async def real_anthropic_events(prompt: str, stall_seconds: float = 10.0) -> AsyncIterator[Any]:
    """RawMessageStreamEvent objects from the real API (or any ANTHROPIC_BASE_URL)."""
    import anthropic
    async with anthropic.AsyncAnthropic(max_retries=0) as client:
        stream = await client.messages.create(model=MODELS["anthropic"], max_tokens=512, stream=True,
                                              messages=[{"role": "user", "content": prompt}])
        async for event in stream:
            yield event


async def real_bedrock_events(prompt: str, stall_seconds: float = 10.0) -> AsyncIterator[Any]:
    """The event dicts of boto3's converse_stream (a blocking iterator, read in a worker thread)."""
    import boto3
    from botocore.config import Config
    # read_timeout: the worker thread's socket read gives up once we have given up on it (botocore's
    # default is 60 s). total_max_attempts=1: no retries, like max_retries=0 above.
    config = Config(read_timeout=stall_seconds, retries={"total_max_attempts": 1})
    client = boto3.client("bedrock-runtime", config=config)
    response = await asyncio.to_thread(client.converse_stream, modelId=MODELS["bedrock"],
                                       messages=[{"role": "user", "content": [{"text": prompt}]}])
    stream = response["stream"]
    try:
        async for event in each_event(stream):
            yield event
    finally:
        # A hang-up or stall stops the download too. close() waits for the worker thread's pending
        # read, so it must not run on the event loop: that would freeze the fallback until the read ends.
        threading.Thread(target=stream.close, name="close bedrock stream", daemon=True).start()


SDK_MODULES = {"openai": "openai", "anthropic": "anthropic", "bedrock": "boto3"}
REAL_EVENTS = {"openai": real_openai_events, "anthropic": real_anthropic_events, "bedrock": real_bedrock_events}


def cannot_use_real(provider: str) -> Optional[str]:
    """Why real mode cannot run for this provider (SDK, credentials, region), or None when it can.

    Checked when the arguments are parsed, so a missing piece is a clear usage error (exit 2)
    instead of a traceback in the middle of the demo.
    """
    if find_spec(SDK_MODULES[provider]) is None:
        return f"the {SDK_MODULES[provider]} SDK is not installed: pip install {SDK_MODULES[provider]}"
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


# ---------------------------------------------------------------- 5. the transform pipeline
# Each transform takes the token stream and returns a new one. Tokens split text anywhere, so a
# transform that looks for a pattern holds back the tail that could still become a match.
# When the provider fails mid-stream, each transform releases what it holds before passing the
# error on: the client gets every word the model wrote (the redactor's exception is explained below).
SECRET_CHARS = "A-Za-z0-9_.+@-"  # every secret below is made of these ASCII characters only
SECRETS = (
    # No word boundaries: a key glued to a word ("tokensk-...") must not slip through;
    # redacting a harmless look-alike is the cheaper mistake.
    (re.compile(r"sk-[A-Za-z0-9_-]{16,}"), "[redacted key]"),          # OpenAI/Anthropic-style keys
    (re.compile(r"AKIA[0-9A-Z]{16}"), "[redacted key]"),               # AWS access key ids
    (re.compile(r"[A-Za-z0-9_.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), "[redacted email]"),
)
LAST_NON_SECRET_CHAR = re.compile(f"[^{SECRET_CHARS}][{SECRET_CHARS}]*\\Z")
SECRET_START = re.compile(r"sk-|AKIA|@")  # an unfinished word with one of these may be a secret's first half
MAX_HELD_CHARS = 400  # a run of secret characters longer than this is released (secrets are shorter)
MAX_WORD_CHARS = 24   # whole_words releases a longer run without spaces (Chinese, Japanese, a URL)


def redact(text: str) -> str:
    for pattern, replacement in SECRETS:
        text = pattern.sub(replacement, text)
    return text


async def redact_secrets(tokens: AsyncIterator[str]) -> AsyncIterator[str]:
    """Replace keys and e-mail addresses, even when the model streams them in pieces.

    A secret cannot contain a space, a bracket, a Chinese character ... (anything outside
    SECRET_CHARS), so text up to the last such character is final; the run after it is held
    back until it is complete. If the provider fails mid-stream, that held run is released
    redacted - unless it contains the start of a secret ("sk-", "AKIA", "@"): half a key is
    still a leak, so it is withheld and the error says so.
    """
    held = ""
    async with aclosing(tokens):
        try:
            async for token in tokens:
                held += token
                tail = LAST_NON_SECRET_CHAR.search(held)
                cut = tail.start() + 1 if tail else 0
                if cut == 0 and len(held) > MAX_HELD_CHARS:
                    cut = len(held)
                if cut:
                    yield redact(held[:cut])
                    held = held[cut:]
        except Exception as exc:
            unfinished, held = redact(held), ""
            if not SECRET_START.search(unfinished):
                yield unfinished
            elif isinstance(exc, ProviderStreamError):
                exc.notes.append(f"its last {len(unfinished)} characters were withheld: they could be the "
                                 "start of a secret")
            raise
    if held:
        yield redact(held)


class StopAt:
    """Cut the answer at the first stop sequence and stop reading the provider (saves tokens)."""

    def __init__(self, *sequences: str):
        self.sequences = [s for s in sequences if s]
        self.hit = False

    def _held_tail(self, text: str) -> int:
        """Length of the longest tail of text that could still grow into a stop sequence."""
        return max((n for s in self.sequences for n in range(1, len(s)) if text.endswith(s[:n])), default=0)

    async def __call__(self, tokens: AsyncIterator[str]) -> AsyncIterator[str]:
        held = ""
        async with aclosing(tokens):
            try:
                async for token in tokens:
                    held += token
                    found = [i for i in (held.find(s) for s in self.sequences) if i >= 0]
                    if found:
                        self.hit = True
                        if held[:min(found)]:
                            yield held[:min(found)]
                        return  # aclosing closes the provider stream
                    keep = self._held_tail(held)
                    if len(held) > keep:
                        yield held[:len(held) - keep]
                        held = held[len(held) - keep:]
            except Exception:
                if held:  # the stream broke: what we held never became a stop sequence
                    yield held
                raise
        if held:
            yield held


def squeeze_whitespace(text: str) -> str:
    """No trailing spaces on lines, at most one blank line in a row."""
    text = re.sub(r"\r\n?", "\n", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text)


async def tidy_whitespace(tokens: AsyncIterator[str]) -> AsyncIterator[str]:
    """squeeze_whitespace on a stream; leading and trailing whitespace of the answer is dropped.

    It only ever holds whitespace, so nothing is lost when the stream breaks: the broken answer
    ends there, and its trailing whitespace is dropped like that of a complete one.
    """
    held, started = "", False
    async with aclosing(tokens):
        async for token in tokens:
            held += token
            body_end = len(held.rstrip())  # trailing whitespace waits: we cannot squeeze it yet
            if body_end:
                text = squeeze_whitespace(held[:body_end])
                yield text if started else text.lstrip()
                started, held = True, held[body_end:]


async def whole_words(tokens: AsyncIterator[str]) -> AsyncIterator[str]:
    """Coalesce word pieces into whole words: fewer, more readable A2A chunks.

    Text without spaces (Chinese, Japanese, a long URL) is released every MAX_WORD_CHARS
    characters, so it still streams instead of arriving in one piece at the end.
    """
    held = ""
    async with aclosing(tokens):
        try:
            async for token in tokens:
                held += token
                cut = len(held) - len(re.split(r"\s", held)[-1])
                if cut == 0 and len(held) > MAX_WORD_CHARS:
                    cut = len(held)
                if cut:
                    yield held[:cut]
                    held = held[cut:]
        except Exception:
            if held:  # the stream broke mid-word: the half word is still text the model wrote
                yield held
            raise
    if held:
        yield held


Transform = Callable[[AsyncIterator[str]], AsyncIterator[str]]


def pipeline(tokens: AsyncIterator[str], transforms: Iterable[Transform]) -> AsyncIterator[str]:
    """Apply transforms left to right: the first one sees the provider's tokens."""
    for transform in transforms:
        tokens = transform(tokens)
    return tokens


def default_transforms(stop: StopAt) -> list[Transform]:
    """Redact first (nothing downstream ever sees a secret), then cut, tidy, and group into words."""
    return [redact_secrets, stop, tidy_whitespace, whole_words]


# ---------------------------------------------------------------- 6. fallback and stall limit
async def within_stall_limit(events: AsyncIterator[Any], seconds: float, provider: str) -> AsyncIterator[Any]:
    """Pass events through; a provider silent for `seconds` counts as failed."""
    async with aclosing(events):
        while True:
            try:
                event = await asyncio.wait_for(anext(events), seconds)
            except StopAsyncIteration:
                return
            except asyncio.TimeoutError:
                raise ProviderStalled(f"{provider} sent nothing for {seconds:g} s") from None
            yield event


@dataclass
class Request:
    """What the caller asked for, from the message's metadata (all optional)."""
    providers: list[str]
    faults: dict[str, str]
    stall_seconds: float

    @classmethod
    def from_message(cls, message: Message, server_stall_seconds: float) -> "Request":
        """Validate the options; a ValueError here reaches the caller as the stream's error event."""
        options = message.metadata.custom_fields if message.metadata else {}
        providers, faults = options.get("providers") or list(PROVIDERS), options.get("faults") or {}
        stall = options.get("stall_seconds", server_stall_seconds)  # 0 is a bad value, not "unset"
        if not isinstance(providers, list) or not isinstance(faults, dict):
            raise ValueError('"providers" must be a list of names and "faults" an object')
        if unknown := [p for p in providers + list(faults) if p not in PROVIDERS]:
            raise ValueError(f"unknown provider {unknown[0]!r}; choose from {', '.join(PROVIDERS)}")
        if bad := [f for f in faults.values() if f not in FAULTS]:
            raise ValueError(f"unknown fault {bad[0]!r}; choose from {', '.join(FAULTS)}")
        if isinstance(stall, bool) or not isinstance(stall, (int, float)) or stall <= 0:
            raise ValueError('"stall_seconds" must be a positive number')
        stall = min(stall, server_stall_seconds)
        return cls(providers, faults, stall)


@dataclass
class Answer:
    """The provider that answered, the attempts that failed before it, and its token stream."""
    run: ProviderRun
    failed_attempts: list[str]
    tokens: AsyncIterator[str]


class LLMBridgeAgent(StreamingAgent):
    """Streams an LLM answer through a transform pipeline, falling back across providers."""

    def __init__(self, real: Iterable[str] = (), pace: Optional[Pace] = None, stall_seconds: float = 10.0,
                 stop_sequences: Iterable[str] = ("\nUser:", "\nHuman:")):
        super().__init__()
        self.real, self.pace, self.stall_seconds = set(real), pace or Pace(), stall_seconds
        self.stop_sequences = tuple(stop_sequences)
        for provider in self.real:  # import the SDKs now, so their ~1 s import never counts as a stall
            importlib.import_module(SDK_MODULES[provider])

    async def stream_response(self, message: Message) -> AsyncIterator[Any]:
        request = Request.from_message(message, self.stall_seconds)
        if faulty_real := [p for p in request.faults if p in self.real]:
            raise ValueError(f"faults are simulated: {faulty_real[0]} is running against the real API")
        stop = StopAt(*self.stop_sequences)
        answer = await self.first_answering(message_text(message), request)
        async for piece in pipeline(answer.tokens, default_transforms(stop)):
            yield piece
        summary = answer.run.summary()
        if stop.hit:
            summary["stop_reason"] = "stop_sequence"
        yield {"summary": {**summary, "failed_attempts": answer.failed_attempts}}  # data: chunk_text() gives ""

    async def first_answering(self, prompt: str, request: Request) -> Answer:
        """Try the providers in order; the first one that produces a token (or ends cleanly) answers."""
        failed_attempts: list[str] = []
        for provider in request.providers:
            run = ProviderRun(provider, MODELS[provider], simulated=provider not in self.real)
            tokens = self.provider_tokens(provider, prompt, request, run)
            try:
                first = await anext(tokens, None)  # None: an empty answer, which is still an answer
            except Exception as exc:  # any failure before the first token: try the next provider
                await tokens.aclose()
                failed_attempts.append(f"{provider}: {type(exc).__name__}: {exc}")
                continue
            return Answer(run, failed_attempts, self.rest_of_answer(first, tokens, run))
        raise AllProvidersFailed("no provider answered: " + "; ".join(failed_attempts))

    @staticmethod
    async def rest_of_answer(first: Optional[str], tokens: AsyncIterator[str], run: ProviderRun) -> AsyncIterator[str]:
        """The answering provider's tokens; a failure from here on ends the stream as partial."""
        async with aclosing(tokens):
            if first is not None:
                yield first
            try:
                async for token in tokens:
                    yield token
            except Exception as exc:  # after text went out, retrying elsewhere would duplicate it
                raise ProviderStreamError(f"{run.provider} failed after {run.text_events} tokens "
                                          f"({type(exc).__name__}: {exc}); the answer is partial") from exc

    async def provider_tokens(self, provider: str, prompt: str, request: Request,
                              run: ProviderRun) -> AsyncIterator[str]:
        """One provider's text tokens, guarded by the stall limit, with timing recorded on run."""
        if provider in self.real:
            events = REAL_EVENTS[provider](prompt, request.stall_seconds)
        else:
            events = simulate(provider, prompt, self.pace, request.faults.get(provider))
        guarded = within_stall_limit(events, request.stall_seconds, provider)
        async with aclosing(ADAPTERS[provider](guarded, run)) as text:
            async for token in text:
                run.first_token = run.first_token or time.monotonic()
                yield token
        run.ended = time.monotonic()


# ---------------------------------------------------------------- 7. the client: scenarios and checks
SECRET_LEFT = re.compile("|".join(pattern.pattern for pattern, _ in SECRETS))


@dataclass
class Outcome:
    """What the client saw for one request."""
    scenario: str
    text: str = ""
    chunks: int = 0
    summary: Optional[dict] = None
    error: Optional[str] = None
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


async def ask(url: str, scenario: str, **options: Any) -> Outcome:
    """Stream one answer, printing it as it arrives; a failed stream leaves the text marked partial."""
    message = text_message(PROMPT, metadata=options)
    outcome, started = Outcome(scenario), time.monotonic()
    print(paint(f"\n== {scenario}", "cyan"))
    try:
        async for chunk in StrictStreamingClient(url, timeout=30).stream_response(message):
            content = chunk.get("content")
            if isinstance(content, dict) and "summary" in content:
                outcome.summary = content["summary"]
                continue
            outcome.text += chunk_text(chunk)
            outcome.chunks += 1
            print(chunk_text(chunk), end="", flush=True)
    except A2AStreamingError as exc:
        outcome.error = str(exc)
        print(paint(f"\n[partial answer: the stream ended with an error: {exc}]", "yellow"))
    outcome.seconds = time.monotonic() - started
    print()
    for attempt in (outcome.summary or {}).get("failed_attempts", []):
        print(paint(f"  (tried first, failed before any text: {attempt})", "yellow"))
    return outcome


def check_clean(outcome: Outcome, provider: str) -> None:
    if outcome.error or not outcome.summary:
        outcome.problems.append(f"stream failed: {outcome.error or 'no summary'}")
    elif outcome.summary["provider"] != provider:
        outcome.problems.append(f"answered by {outcome.summary['provider']}, not {provider}")
    if not outcome.text.strip():
        outcome.problems.append("no text")
    if SECRET_LEFT.search(outcome.text):
        outcome.problems.append("a secret reached the client")


def check_fallback(outcome: Outcome, answerer: str, failing: int, clean: Outcome) -> None:
    check_clean(outcome, answerer)
    if outcome.summary and len(outcome.summary["failed_attempts"]) != failing:
        outcome.problems.append(f"expected {failing} failed attempts, got {outcome.summary['failed_attempts']}")
    if outcome.summary and outcome.summary["simulated"] and outcome.text != clean.text:
        outcome.problems.append("text differs from the provider's clean run (duplicated or lost text)")


def check_partial(outcome: Outcome, clean: Outcome) -> None:
    if not outcome.error or outcome.summary:
        outcome.problems.append("a mid-stream failure did not end the stream with an error")
    if not outcome.text or not clean.text.startswith(outcome.text) or outcome.text == clean.text:
        outcome.problems.append("partial text is not a strict prefix of the clean answer")


def table_row(outcome: Outcome) -> list[Any]:
    s = outcome.summary or {}
    verdict = paint("ok", "green") if not outcome.problems else paint("FAIL: " + "; ".join(outcome.problems), "red")
    answered = s.get("provider", "-") + ("" if s.get("simulated", True) else " (real)")
    first = f"{s['first_token_ms']} ms" if s.get("first_token_ms") is not None else "-"
    stop = s.get("stop_reason") or "-"
    if outcome.error:
        stop = "error (partial)" if outcome.text else "error (no text)"
    return [outcome.scenario, answered, outcome.chunks, s.get("output_tokens", "-"), first,
            s.get("tokens_per_s") or "-", stop, f"{outcome.seconds:.2f} s", verdict]


def make_client(short_stall_seconds: float) -> Callable[[str], Any]:
    """The demo client; short_stall_seconds keeps the stall scenario brief when only simulators run."""
    async def client(url: str) -> int:
        """Clean run per provider, then fallback and mid-stream failure on simulated providers."""
        clean = {p: await ask(url, f"{p} clean", providers=[p]) for p in PROVIDERS}
        for provider, outcome in clean.items():
            check_clean(outcome, provider)
        outcomes = list(clean.values())
        simulated = [p for p, o in clean.items() if (o.summary or {}).get("simulated")]
        if simulated:
            failing = simulated[:2]  # faults can only be injected into simulated providers
            answerer = next(p for p in PROVIDERS if p not in failing)  # 3 providers, at most 2 failing
            faults = dict(zip(failing, ("error_before_first_token", "stall")))
            # A real API may take seconds to its first token: only an all-simulated chain gets the short limit.
            stall = {"stall_seconds": short_stall_seconds} if answerer in simulated else {}
            fallback = await ask(url, "fallback", providers=failing + [answerer], faults=faults, **stall)
            check_fallback(fallback, answerer, len(failing), clean[answerer])
            partial = await ask(url, f"{simulated[0]} fails mid-stream", providers=[simulated[0]],
                                faults={simulated[0]: "error_mid_stream"})
            check_partial(partial, clean[simulated[0]])
            outcomes += [fallback, partial]
        else:
            print(paint("\n(no simulated provider: the failure scenarios need one)", "yellow"))
        print()
        print_table(["scenario", "answered by", "chunks", "tokens", "first token", "tokens/s", "stop", "total",
                     "verdict"], [table_row(o) for o in outcomes])
        return 0 if all(not o.problems for o in outcomes) else 1
    return client


def main(argv: Optional[list[str]] = None) -> int:
    parser = demo_parser("Bridge OpenAI / Anthropic / Bedrock streams into A2A: adapters, a transform "
                         "pipeline, fallback and partial answers.", DEFAULT_PORT)
    parser.add_argument("--provider", action="append", choices=PROVIDERS, default=[],
                        help="use this provider's real API via its SDK (repeatable); the others stay simulated")
    parser.add_argument("--stall-seconds", type=seconds_arg(), default=10.0,
                        help="a provider silent this long counts as failed (default 10)")
    args = parser.parse_args(argv)
    if not args.verbose:
        quiet()  # before the checks below: boto3 logs "Found credentials ..." at INFO otherwise
    if args.provider and args.url:
        parser.error("--provider chooses the providers of the agent this script starts; with --url the "
                     "agent runs elsewhere: pass --provider to its --serve instead")
    for provider in args.provider:
        if reason := cannot_use_real(provider):
            parser.error(f"--provider {provider}: {reason}")
    pace = Pace(0, 0) if args.fast else Pace()
    # The fallback scenario's stall limit, when only simulated providers take part: short, so the demo
    # does not sit waiting (a simulated provider with --fast sends its whole answer in milliseconds).
    short_stall = min(args.stall_seconds, 0.2 if args.fast else 2.0)
    return run_demo(args, lambda: LLMBridgeAgent(args.provider, pace, args.stall_seconds), make_client(short_stall))


if __name__ == "__main__":
    sys.exit(main())
