"""03_streaming_llm_integration.py: adapters on hand-written provider transcripts (tests/data), the real
SDKs against local stubs, the kit's transforms as the agent uses them, fallback over A2A, and the script
as a user runs it. The transforms' own tests are in tests/kit/test_transforms.py."""
from __future__ import annotations

import asyncio
import copy
import json
import threading

import pytest

from conftest import library_noise, load_script, run_script, serve_script
from llm_stubs import LLMStub, transcript_events, transcript_frames

from streaming_kit import (StrictStreamingClient, StreamingAgent, chunk_text, redact_secrets, serve, text_message,
                           tidy_whitespace, whole_words)
from python_a2a import A2AStreamingError
from examples_support import llm_report, llm_simulators

SCRIPT = "03_streaming_llm_integration.py"
bridge = load_script(SCRIPT)
TOKENS = ["Hel", "lo", ",", " wor", "ld", "!"]  # what each transcript in tests/data streams
RECORDED = {provider: transcript_events(provider) for provider in bridge.PROVIDERS}
# Each provider's documented error, as it arrives inside a stream.
ERROR_EVENTS = {
    "openai": {"error": {"type": "server_error", "message": "The server had an error while processing your request."}},
    "anthropic": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    "bedrock": {"throttlingException": {"message": "Too many requests, please wait before trying again."}}}


def collect(adapter, events) -> tuple[str, "bridge.ProviderRun"]:
    """Run an adapter over events; the text it produced and the run it filled in."""
    run = bridge.ProviderRun("p", "m", simulated=True)

    async def go():
        return "".join([piece async for piece in adapter(as_stream(events), run)])
    return asyncio.run(go()), run


def as_stream(events):
    """A list as the async stream an SDK gives; anything else (an SDK stream) as it is."""
    if not isinstance(events, list):
        return events

    async def stream():
        for event in events:
            yield event
    return stream()


def text_positions(provider: str, events: list[dict]) -> list[int]:
    """Where the events that carry answer text are, in a provider's own shapes."""
    def carries_text(event):
        if provider == "openai":
            return any((choice.get("delta") or {}).get("content") for choice in event.get("choices") or [])
        return event.get("type") == "content_block_delta" if provider == "anthropic" else "contentBlockDelta" in event
    return [i for i, event in enumerate(events) if carries_text(event)]


# ---------------------------------------------------------------- adapters on the transcripts in tests/data
@pytest.mark.parametrize("provider", bridge.PROVIDERS)
def test_adapter_turns_a_transcript_into_text_stop_reason_and_usage(provider):
    text, run = collect(bridge.ADAPTERS[provider], RECORDED[provider])
    summary = run.summary()
    assert text == "Hello, world!"
    assert run.text_events == len(TOKENS)
    assert (summary["stop_reason"], summary["input_tokens"], summary["output_tokens"]) == ("end", 7, len(TOKENS))


def test_openai_usage_comes_from_the_usage_only_final_chunk():
    events = RECORDED["openai"]
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == len(TOKENS)
    _, run = collect(bridge.openai_text, events[:-1])  # interrupted before usage: count deltas instead
    assert run.output_tokens is None and run.summary()["output_tokens"] == len(TOKENS)


def test_anthropic_adapter_streams_only_text_deltas():
    noise = [{"type": "ping"},
             {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"a'}},
             {"type": "content_block_delta", "index": 2, "delta": {"type": "thinking_delta", "thinking": "hmm"}}]
    events = RECORDED["anthropic"][:3] + noise + RECORDED["anthropic"][3:]
    assert collect(bridge.anthropic_text, events)[0] == "Hello, world!"


def test_bedrock_adapter_reads_usage_from_metadata_after_message_stop():
    events = RECORDED["bedrock"]
    assert list(events[-2]) == ["messageStop"] and list(events[-1]) == ["metadata"]
    _, run = collect(bridge.bedrock_text, events)
    assert (run.raw_stop_reason, run.input_tokens, run.output_tokens) == ("end_turn", 7, len(TOKENS))


@pytest.mark.parametrize("provider, error_text", [
    ("openai", "server_error"), ("anthropic", "overloaded_error: Overloaded"), ("bedrock", "throttlingException")])
def test_adapter_raises_on_the_providers_error_event_after_the_text_so_far(provider, error_text):
    events = RECORDED[provider]
    cut = text_positions(provider, events)[2]
    got: list[str] = []
    run = bridge.ProviderRun(provider, "m", simulated=True)

    async def go():
        async for piece in bridge.ADAPTERS[provider](as_stream(events[:cut] + [ERROR_EVENTS[provider]] + events[cut:]), run):
            got.append(piece)
    with pytest.raises(bridge.ProviderError, match=error_text):
        asyncio.run(go())
    assert got == TOKENS[:2]


@pytest.mark.parametrize("provider", bridge.PROVIDERS)
def test_adapter_treats_a_stream_without_its_terminator_as_cut_off(provider):
    events = RECORDED[provider]
    last_text = text_positions(provider, events)[-1]
    with pytest.raises(bridge.ProviderError, match="cut off"):
        collect(bridge.ADAPTERS[provider], events[:last_text + 1])


def with_stop_reason(provider: str, reason: str) -> list[dict]:
    """A provider's transcript, ending with its own name for `reason` instead of a normal end."""
    events = copy.deepcopy(RECORDED[provider])
    for event in events:
        for choice in event.get("choices") or []:
            if choice["finish_reason"]:
                choice["finish_reason"] = reason
        if event.get("type") == "message_delta":
            event["delta"]["stop_reason"] = reason
        if "messageStop" in event:
            event["messageStop"]["stopReason"] = reason
    return events


@pytest.mark.parametrize("common, native", [
    ("max_tokens", {"openai": "length", "anthropic": "max_tokens", "bedrock": "max_tokens"}),
    ("content_filter", {"openai": "content_filter", "anthropic": "refusal", "bedrock": "content_filtered"}),
    ("tool_use", {"openai": "tool_calls", "anthropic": "tool_use", "bedrock": "tool_use"})])
def test_each_providers_own_stop_reason_reaches_the_summary_in_one_vocabulary(common, native):
    for provider, reason in native.items():
        _, run = collect(bridge.ADAPTERS[provider], with_stop_reason(provider, reason))
        expected = "refusal" if reason == "refusal" else common  # Anthropic's refusal is its own kind
        assert (run.raw_stop_reason, run.summary()["stop_reason"]) == (reason, expected), provider


def openai_refusal(pieces: list[str]) -> list[dict]:
    """An OpenAI stream in which the model declines: `delta.refusal` pieces, no content, finish "stop"."""
    role, *_, finish, usage = copy.deepcopy(RECORDED["openai"])
    refusals = [{**role, "choices": [{"index": 0, "delta": {"refusal": piece}, "finish_reason": None,
                                      "logprobs": None}]} for piece in pieces]
    return [role, *refusals, finish, usage]


REFUSAL = ["I can", "'t help", " with that."]


def test_openai_refusal_is_forwarded_with_stop_reason_refusal():
    text, run = collect(bridge.openai_text, openai_refusal(REFUSAL))
    assert text == "I can't help with that."
    assert run.summary()["stop_reason"] == "refusal" and run.text_events == 3


# ---------------------------------------------------------------- the real SDKs against local stubs
@pytest.fixture
def stub(monkeypatch):
    """Stub endpoints for all three providers sending the transcripts verbatim, the SDKs pointed at them."""
    with LLMStub() as server:
        for provider in bridge.PROVIDERS:
            server.frames[provider] = transcript_frames(provider)
        for name, value in stub_environment(server.url).items():
            monkeypatch.setenv(name, value)
        yield server


def stub_environment(url: str) -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": f"{url}/v1",
            "ANTHROPIC_API_KEY": "test", "ANTHROPIC_BASE_URL": url,
            "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": url}


def scripted(stub: LLMStub, provider: str, events: list[dict], complete: bool = True) -> None:
    """Have the stub send these event dicts (in the provider's framing) instead of the transcript."""
    stub.frames.pop(provider)
    stub.events[provider], stub.complete = events, complete


@pytest.mark.timeout(30)
@pytest.mark.parametrize("provider", bridge.PROVIDERS)
def test_real_sdk_stream_through_the_adapter(stub, provider):
    text, run = collect(bridge.ADAPTERS[provider], bridge.REAL_EVENTS[provider]("hi"))
    assert text == "Hello, world!"
    assert (run.summary()["stop_reason"], run.input_tokens, run.output_tokens) == ("end", 7, len(TOKENS))
    assert stub.requests[-1][0] == provider  # the SDK really went over HTTP to the stub


@pytest.mark.timeout(30)
def test_real_openai_request_asks_for_usage(stub):
    collect(bridge.openai_text, bridge.REAL_EVENTS["openai"]("hi"))
    _, _, body = stub.requests[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("provider", bridge.PROVIDERS)
def test_real_sdk_error_mid_stream_raises_after_the_text_so_far(stub, provider):
    events = RECORDED[provider]
    scripted(stub, provider, events[:text_positions(provider, events)[3]] + [ERROR_EVENTS[provider]])
    got: list[str] = []
    run = bridge.ProviderRun(provider, "m", simulated=False)

    async def go():
        async for piece in bridge.ADAPTERS[provider](bridge.REAL_EVENTS[provider]("hi"), run):
            got.append(piece)
    with pytest.raises(Exception) as raised:
        asyncio.run(go())
    assert got == TOKENS[:3]
    assert any(word in str(raised.value) for word in ("server had an error", "Overloaded", "throttling"))


@pytest.mark.timeout(30)
def test_real_openai_sdk_refusal_is_forwarded(stub):
    scripted(stub, "openai", openai_refusal(REFUSAL))
    text, run = collect(bridge.openai_text, bridge.REAL_EVENTS["openai"]("hi"))
    assert text == "I can't help with that." and run.summary()["stop_reason"] == "refusal"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("provider", bridge.PROVIDERS)
def test_real_sdk_that_stalls_counts_as_failed_and_the_next_provider_answers(stub, provider):
    # Headers and one event without text, then silence on an open connection. Bedrock's SDK reads in
    # a thread: before the fix, closing its stream froze the agent until botocore's 60 s read timeout.
    stub.stall_after = 1
    backup = next(p for p in bridge.PROVIDERS if p != provider)
    with serve(bridge.LLMBridgeAgent(real=[provider], pace=llm_simulators.Pace(0, 0), stall_seconds=1)) as url:
        text, summary, error = ask(url, providers=[provider, backup])
    assert error is None and text and summary["provider"] == backup
    assert summary["failed_attempts"] == [f"{provider}: ProviderStalled: {provider} sent nothing for 1 s"]


@pytest.mark.timeout(30)
def test_real_openai_stream_cut_before_finish_is_an_error(stub):
    scripted(stub, "openai", RECORDED["openai"][:4], complete=False)
    with pytest.raises(bridge.ProviderError, match="cut off"):
        collect(bridge.openai_text, bridge.REAL_EVENTS["openai"]("hi"))


# ---------------------------------------------------------------- the kit's transforms in this script
# (their own tests, every token split and every broken stream, are in tests/kit/test_transforms.py)
def test_default_transforms_redact_first_then_cut_tidy_and_group_words():
    stop = bridge.StopAt("\nUser:")
    assert bridge.default_transforms(stop) == [redact_secrets, stop, tidy_whitespace, whole_words]


def test_provider_error_shows_what_the_redaction_withheld():
    async def source():
        yield "the key is sk-abcdefghij"
        raise bridge.ProviderError("openai failed after 1 tokens; the answer is partial")

    async def go():
        return [piece async for piece in redact_secrets(source())]
    with pytest.raises(bridge.ProviderError) as raised:
        asyncio.run(go())
    assert str(raised.value) == ("openai failed after 1 tokens; the answer is partial; its last 13 characters "
                                 "were withheld: they could be the start of a secret")


# ---------------------------------------------------------------- the agent over A2A: fallback, partial, hang-up
def ask(url: str, **options) -> tuple[str, dict | None, Exception | None]:
    """The text, summary and error a strict client sees for one request."""
    message = text_message(bridge.PROMPT, metadata=options)
    text, summary, error = "", None, None

    async def go():
        nonlocal text, summary, error
        try:
            async for chunk in StrictStreamingClient(url, timeout=20).stream_response(message):
                content = chunk.get("content")
                if isinstance(content, dict) and "summary" in content:
                    summary = content["summary"]
                else:
                    text += chunk_text(chunk)
        except A2AStreamingError as exc:
            error = exc
    asyncio.run(go())
    return text, summary, error


@pytest.fixture(scope="module")
def agent_url():
    with serve(bridge.LLMBridgeAgent(pace=llm_simulators.Pace(0, 0), stall_seconds=5)) as url:
        yield url


@pytest.mark.timeout(30)
def test_fallback_gives_the_answer_once_with_no_text_from_failed_providers(agent_url):
    clean, _, _ = ask(agent_url, providers=["bedrock"])
    text, summary, error = ask(agent_url, providers=["openai", "anthropic", "bedrock"],
                               faults={"openai": "error_before_first_token", "anthropic": "stall"}, stall_seconds=1)
    assert error is None and text == clean
    assert summary["provider"] == "bedrock"
    assert [a.split(":")[0] for a in summary["failed_attempts"]] == ["openai", "anthropic"]
    assert "ProviderStalled" in summary["failed_attempts"][1]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("provider", bridge.PROVIDERS)
def test_mid_stream_failure_ends_with_an_error_and_a_strict_prefix(agent_url, provider):
    clean, _, _ = ask(agent_url, providers=[provider])
    text, summary, error = ask(agent_url, providers=[provider, "bedrock" if provider != "bedrock" else "openai"],
                               faults={provider: "error_mid_stream"})
    assert isinstance(error, A2AStreamingError) and "partial" in str(error) and provider in str(error)
    assert summary is None  # no fallback after text went out: nothing duplicated
    assert text and clean.startswith(text) and text != clean


@pytest.mark.timeout(30)
def test_all_providers_failing_is_an_error_naming_each(agent_url):
    text, _, error = ask(agent_url, providers=["openai", "bedrock"],
                         faults={"openai": "stall", "bedrock": "error_before_first_token"}, stall_seconds=1)
    assert text == "" and "no provider answered" in str(error)
    assert "openai" in str(error) and "throttlingException" in str(error)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("options, complaint", [
    ({"providers": ["mistral"]}, "unknown provider"), ({"faults": {"openai": "explode"}}, "unknown fault"),
    ({"providers": "openai"}, "must be a list"), ({"stall_seconds": -1}, "positive number"),
    ({"stall_seconds": 0}, "positive number"), ({"stall_seconds": True}, "positive number")])
def test_bad_request_options_are_an_error_event(agent_url, options, complaint):
    _, _, error = ask(agent_url, **options)
    assert complaint in str(error)


def test_non_streaming_answer_is_the_joined_stream_without_the_summary(agent_url):
    clean, _, _ = ask(agent_url, providers=["openai"])
    message = text_message(bridge.PROMPT, metadata={"providers": ["openai"]})
    reply = asyncio.run(StrictStreamingClient(agent_url).send_message_async(message))
    assert reply.content.text == clean


@pytest.mark.timeout(30)
def test_stop_sequence_ends_the_answer_and_is_reported_as_the_stop_reason():
    with serve(bridge.LLMBridgeAgent(pace=llm_simulators.Pace(0, 0), stop_sequences=[" was rotated"])) as url:
        text, summary, error = ask(url, providers=["anthropic"])
    assert error is None and text.endswith("the old key [redacted key]")
    assert summary["stop_reason"] == "stop_sequence"


@pytest.mark.timeout(30)
def test_client_hang_up_closes_the_provider_stream(monkeypatch):
    closed = threading.Event()

    async def endless_provider(prompt, stall_seconds):
        try:
            while True:
                yield {"choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": None}]}
                await asyncio.sleep(0.01)
        finally:
            closed.set()
    monkeypatch.setitem(bridge.REAL_EVENTS, "openai", endless_provider)

    async def read_two_chunks_then_leave(url):
        message = text_message("go", metadata={"providers": ["openai"]})
        count = 0
        async for _ in StrictStreamingClient(url).stream_response(message):
            count += 1
            if count == 2:
                break
    with serve(bridge.LLMBridgeAgent(real=["openai"])) as url:
        asyncio.run(read_two_chunks_then_leave(url))
        assert closed.wait(10), "the provider stream kept running after the client left"


# ---------------------------------------------------------------- the script as a user runs it
def run_with_report(tmp_path, *args: str, env: dict | None = None) -> tuple:
    """Run the script with --report; its result and the report it wrote (None if it wrote none)."""
    report_file = tmp_path / "outcomes.json"
    result = run_script(SCRIPT, *args, "--report", str(report_file), env=env)
    return result, json.loads(report_file.read_text(encoding="utf-8")) if report_file.exists() else None


@pytest.mark.timeout(120)
def test_script_fast_run_offline(tmp_path):
    result, report = run_with_report(tmp_path, "--fast")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert library_noise(out + result.stderr) == [] and result.stderr == ""
    assert out.strip().splitlines()[-1] == "Verdict: every scenario behaved as promised"
    assert report["ok"] and report["problems"] == []
    outcomes = {o["scenario"]: o for o in report["scenarios"]}
    assert list(outcomes) == ["openai clean", "anthropic clean", "bedrock clean", "fallback", "openai fails mid-stream"]
    for provider in bridge.PROVIDERS:
        clean = outcomes[f"{provider} clean"]
        assert clean["error"] is None and clean["summary"]["provider"] == provider and clean["summary"]["simulated"]
        assert "[redacted email]" in clean["text"] and "[redacted key]" in clean["text"]
        assert "ops-team@example.com" not in clean["text"] and "sk-demo" not in clean["text"]
    fallback, partial = outcomes["fallback"], outcomes["openai fails mid-stream"]
    assert fallback["summary"]["provider"] == "bedrock" and len(fallback["summary"]["failed_attempts"]) == 2
    assert fallback["text"] == outcomes["bedrock clean"]["text"]  # once, nothing from the failed attempts
    assert "the answer is partial" in partial["error"] and partial["summary"] is None
    assert outcomes["openai clean"]["text"].startswith(partial["text"]) and partial["text"]
    assert "[partial answer: the stream ended with an error" in out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("real", [("openai", "anthropic"), ("bedrock",)], ids=["openai+anthropic", "bedrock"])
def test_script_real_mode_uses_the_sdks_against_stubs(real, tmp_path):
    with LLMStub() as stub:
        for provider in bridge.PROVIDERS:
            stub.frames[provider] = transcript_frames(provider)
        # --stall-seconds 2: with a real answerer the fallback's simulated stall waits the full limit
        args = ["--fast", "--stall-seconds", "2"] + [arg for provider in real for arg in ("--provider", provider)]
        result, report = run_with_report(tmp_path, *args, env=stub_environment(stub.url))
        called = {provider for provider, _, _ in stub.requests}
    assert result.returncode == 0, result.stdout + result.stderr
    assert library_noise(result.stdout + result.stderr) == []  # boto3's "INFO:botocore.credentials" included
    assert called == set(real)  # the providers not named stayed simulated
    clean = {o["summary"]["provider"]: o for o in report["scenarios"] if o["scenario"].endswith(" clean")}
    assert {p for p, o in clean.items() if not o["summary"]["simulated"]} == set(real)
    assert all(clean[p]["text"] == "Hello, world!" for p in real)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args, env, complaint", [
    (["--provider", "mistral"], {}, "invalid choice"),
    (["--provider", "openai"], {"OPENAI_API_KEY": ""}, "set OPENAI_API_KEY"),
    (["--stall-seconds", "0"], {}, "above 0, got '0': it must be positive"),
    (["--stall-seconds", "nan"], {}, "got 'nan': not a number"),  # float() takes it; a wait of nan never ends
    (["--stall-seconds", "-1"], {}, "got '-1': a duration cannot be negative"),
    (["--provider", "bedrock"], {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "",
                                 "AWS_DEFAULT_REGION": "", "AWS_CONFIG_FILE": "/nonexistent"}, "set AWS_REGION"),
    (["--provider", "openai", "--url", "http://127.0.0.1:1"], {"OPENAI_API_KEY": "sk-test"}, "pass --provider to its"),
    (["--port", "8103"], {}, "--port goes with --serve"),
    (["--serve", "--report", "x.json"], {}, "--report belongs to the client run"),
])
def test_script_rejects_bad_arguments(args, env, complaint):
    result = run_script(SCRIPT, *args, env=env)
    assert result.returncode == 2 and complaint in result.stderr, result.stderr
    assert library_noise(result.stderr) == []


def test_provider_without_its_sdk_installed_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setattr(llm_simulators, "find_spec", lambda name: None)  # as if `pip install openai` never ran
    with pytest.raises(SystemExit) as exit_info:
        bridge.main(["--fast", "--provider", "openai"])
    assert exit_info.value.code == 2
    assert "the openai SDK is not installed: pip install openai" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_url_of_another_examples_agent_is_refused_in_one_line():
    with serve(load_script("basic_streaming.py").WordStreamer(delay=0)) as url:
        result = run_script(SCRIPT, "--url", url, "--fast")
    assert (result.returncode, result.stdout) == (1, "")  # it used to print a table of "stream failed: no summary"
    line, = result.stderr.splitlines()
    assert f'{url} serves "Basic streaming agent", not "LLMBridgeAgent"' in line and len(line) < 160


def test_a_dead_url_is_one_line_saying_cannot_connect():
    with serve(bridge.LLMBridgeAgent(pace=llm_simulators.Pace(0, 0))) as url:
        pass  # closed again: nothing answers there now
    result = run_script(SCRIPT, "--url", url, "--fast")
    assert (result.returncode, result.stdout) == (1, "")
    line, = result.stderr.splitlines()
    assert line.startswith(f"error: cannot connect to {url}: is the server running?")


@pytest.mark.timeout(60)
def test_an_answer_without_the_summary_chunk_says_what_happened(capsys):
    class NoSummary(StreamingAgent):  # streams text, ends cleanly, never sends the summary
        async def stream_response(self, message):
            yield "an answer "

    with serve(NoSummary()) as url:
        assert asyncio.run(llm_report.scenarios(bridge.ask, url, bridge.PROVIDERS,
                                                llm_simulators.llm_command_line(bridge.__doc__, bridge.DEFAULT_PORT, bridge.PROVIDERS).parse_args(["--fast"]))) == 1
    verdict = capsys.readouterr().out.strip().splitlines()[-1]
    assert "no summary" not in verdict
    assert verdict.startswith("Verdict: FAILED - openai clean: the stream ended without the summary chunk "
                              "(provider, tokens, stop reason) that this demo's agent sends last")


@pytest.mark.timeout(120)
def test_serve_and_url_split_across_two_processes():
    with serve_script(SCRIPT, "--fast") as server:  # the contract: its first line names the real address
        assert server.name == "LLMBridgeAgent" and server.url.startswith("http://127.0.0.1:"), server.url
        result = run_script(SCRIPT, "--url", server.url, "--fast")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "fallback" in result.stdout and "[redacted key]" in result.stdout
    assert library_noise(server.stderr) == []
