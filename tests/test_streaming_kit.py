"""The kit against the library: completeness, errors, disconnects, bad input, idle gaps, shutdown."""
import asyncio
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
from python_a2a import A2AConnectionError, A2AError, A2AStreamingError

import streaming_kit as kit
import examples_support
from conftest import ROOT, eventually, post_json, raw_sse_server, stock_agent_class


class CountingAgent(kit.StreamingAgent):
    """Streams 'c0 c1 ...' for the number in the message, with an optional delay per chunk."""

    def __init__(self, delay: float = 0.0):
        super().__init__(name="counting agent")
        self.delay = delay
        self.runs = 0
        self.closed = threading.Event()

    async def stream_response(self, message):
        self.runs += 1
        try:
            for i in range(int(kit.message_text(message))):
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield f"c{i} "
        finally:
            self.closed.set()


async def collect(url: str, text: str, **client_options) -> list[dict]:
    return [chunk async for chunk in kit.StrictStreamingClient(url, **client_options).stream_response(text)]


def expect_complete(url: str, n: int) -> None:
    chunks = asyncio.run(collect(url, str(n)))
    assert [c["index"] for c in chunks] == list(range(n))
    assert "".join(kit.chunk_text(c) for c in chunks) == "".join(f"c{i} " for i in range(n))


@pytest.fixture
def counting(serving):
    agent = CountingAgent()
    with serving(agent) as url:
        yield agent, url


# ---------------------------------------------------------------- completeness
@pytest.mark.timeout(120)
@pytest.mark.parametrize("n, repeats", [(1, 30), (5, 30), (100, 10), (2000, 3)])
@pytest.mark.parametrize("delay", [0.0, 0.001])
def test_kit_delivers_every_chunk_in_order_with_final_marker(serving, n, repeats, delay):
    if delay and n > 100:
        repeats = 1  # 2000 × 1 ms per repeat is enough
    with serving(CountingAgent(delay)) as url:
        for _ in range(repeats):  # repeated: a race that loses the tail shows up in some runs
            expect_complete(url, n)


@pytest.mark.timeout(60)
@pytest.mark.xfail(strict=True, raises=A2AStreamingError, reason="stock python-a2a /stream drops the tail (§1)")
@pytest.mark.parametrize("delay", [0.0, 0.02])
def test_the_same_check_fails_on_stock_python_a2a(delay):
    with kit.serve(stock_agent_class()(delay)) as url:
        for _ in range(5):
            expect_complete(url, 5)


def test_multiline_and_unicode_chunks_arrive_byte_exact(serving):
    pieces = ["line one\nline two", "\n\n", "crlf\r\n", "data: not an event\n\n", "é ✓ 漢字 \u2028 😀", ""]

    class Tricky(kit.StreamingAgent):
        async def stream_response(self, message):
            for piece in pieces:
                yield piece

    with serving(Tricky()) as url:
        assert [kit.chunk_text(c) for c in asyncio.run(collect(url, "go"))] == pieces


def test_resume_after_index_skips_what_the_client_already_has(counting):
    _, url = counting

    async def resumed():
        client = kit.StrictStreamingClient(url)
        return [c["index"] async for c in client.stream_response("10", after_index=6)]

    assert asyncio.run(resumed()) == [7, 8, 9]


def test_non_streaming_reply_equals_the_joined_stream(counting):
    _, url = counting
    reply = asyncio.run(kit.StrictStreamingClient(url).send_message_async("4"))
    assert kit.message_text(reply) == "c0 c1 c2 c3 "


# ---------------------------------------------------------------- errors
class FailingAgent(kit.StreamingAgent):
    def __init__(self):
        super().__init__()
        self.runs = 0

    async def stream_response(self, message):
        self.runs += 1
        yield "partial "
        raise RuntimeError("model exploded")


def test_agent_error_reaches_client_as_error_and_is_not_resent(serving):
    agent = FailingAgent()
    with serving(agent) as url:
        seen = []

        async def consume():
            async for chunk in kit.StrictStreamingClient(url).stream_response("hi"):
                seen.append(kit.chunk_text(chunk))

        with pytest.raises(A2AStreamingError, match="RuntimeError: model exploded"):
            asyncio.run(consume())
    assert seen == ["partial "]
    assert agent.runs == 1  # stock StreamingClient would silently POST again (§11)


def test_stock_client_resends_where_the_strict_client_raises(serving):
    """Shows the guard above can fail: python-a2a's own client hides the error and re-runs the agent."""
    from python_a2a import StreamingClient
    agent = FailingAgent()
    with serving(agent) as url:
        async def consume():
            return [kit.chunk_text(c) async for c in StreamingClient(url).stream_response(kit.text_message("hi"))]
        with pytest.raises(A2AConnectionError):  # the re-sent, non-streamed request fails too
            asyncio.run(consume())
    assert agent.runs == 2  # the agent ran a second time behind the caller's back


def test_truncated_stream_raises_instead_of_looking_complete():
    with kit.serve(stock_agent_class()(0.01)) as url:
        with pytest.raises(kit.StreamTruncatedError, match="without the lastChunk marker"):
            asyncio.run(collect(url, "3"))


def test_unreachable_server_raises_connection_error(serving):
    with serving(CountingAgent()) as url:
        pass  # the port is closed again now
    with pytest.raises(A2AConnectionError):
        asyncio.run(collect(url, "1"))
    with pytest.raises(A2AConnectionError):
        asyncio.run(kit.StrictStreamingClient(url).send_message_async("1"))


# ---------------------------------------------------------------- bad input
BAD = [(b"{not json", 400), (b"[1]", 400), (b'"text"', 400), (b'{"message": 5}', 400),
       (b'{"hello": "world"}', 400), (b'{"content": {"type": "text", "text": 5}, "role": "user"}', 400),
       (b'{"content": {"type": "mystery"}, "role": "user"}', 400),
       (b'{"content": {"type": "text", "text": "1"}, "role": "emperor"}', 400),
       (b'{"content": "' + b"x" * (2 << 20) + b'"}', 413)]


@pytest.mark.parametrize("body, status", BAD, ids=[str(b[:30]) for b, _ in BAD])
def test_bad_requests_get_a_json_4xx_and_the_server_keeps_serving(counting, body, status):
    _, url = counting
    answered, _, reply = post_json(f"{url}/stream", body)
    assert answered == status
    assert "error" in reply
    expect_complete(url, 3)


def test_bad_resume_point_is_refused(counting):
    _, url = counting
    status, _, _ = post_json(f"{url}/stream", b'{"content": {"type": "text", "text": "1"}}', {"Last-Event-ID": "abc"})
    assert status == 400


# ---------------------------------------------------------------- idle gaps and long streams
class PausingAgent(kit.StreamingAgent):
    keepalive_seconds = 0.1

    async def stream_response(self, message):
        yield "before "
        await asyncio.sleep(float(kit.message_text(message)))
        yield "after"


def test_pings_keep_a_quiet_stream_alive_past_the_idle_limit(serving):
    with serving(PausingAgent()) as url:
        chunks = asyncio.run(collect(url, "1.0", timeout=0.4))
    assert "".join(kit.chunk_text(c) for c in chunks) == "before after"


def test_without_pings_the_same_gap_trips_the_idle_limit(serving):
    """Shows the test above can fail: no keepalive, same gap, the client gives up."""
    class Silent(PausingAgent):
        keepalive_seconds = 30

    with serving(Silent()) as url:
        with pytest.raises(A2AStreamingError, match="no data"):
            asyncio.run(collect(url, "1.0", timeout=0.4))


def test_client_idle_limit_is_not_a_total_cap(serving):
    """A stream far longer than the client's timeout completes while chunks keep coming (§10)."""
    with serving(CountingAgent(delay=0.05)) as url:
        chunks = asyncio.run(collect(url, "40", timeout=0.5))  # ≈ 2 s stream, 0.5 s idle limit
    assert len(chunks) == 40


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_stream_longer_than_sixty_seconds_completes(serving):
    """The stock server cuts every stream at 60 s (§3) and the stock client at 30 s (§10)."""
    with serving(CountingAgent(delay=1.0)) as url:
        chunks = asyncio.run(collect(url, "65", timeout=5))
    assert [c["index"] for c in chunks] == list(range(65))


# ---------------------------------------------------------------- disconnects and shutdown
class EndlessAgent(kit.StreamingAgent):
    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay
        self.closed = threading.Event()

    async def stream_response(self, message):
        try:
            while True:
                yield "tick "
                await asyncio.sleep(self.delay)
        finally:
            self.closed.set()


async def take(url: str, count: int) -> None:
    async for chunk in kit.StrictStreamingClient(url).stream_response("go"):
        if chunk["index"] + 1 == count:
            return


@pytest.mark.timeout(30)
@pytest.mark.parametrize("delay", [0.0, 30.0], ids=["busy agent", "idle agent"])
def test_client_disconnect_closes_the_agent_generator(serving, delay):
    agent = EndlessAgent(delay)
    threads_before = threading.active_count()
    with serving(agent) as url:
        asyncio.run(take(url, 1 if delay else 5))
        assert agent.closed.wait(10), "the agent kept running after the client left"
        assert eventually(lambda: agent.live_streams == 0, seconds=10)
    assert eventually(lambda: threading.active_count() <= threads_before, seconds=10)


def listen_in_background(url: str, text: str) -> tuple[threading.Thread, dict]:
    """Stream in a thread; the dict ends up with {"chunks": [...]} or {"error": "..."}."""
    outcome = {}

    def listen():
        try:
            outcome["chunks"] = asyncio.run(collect(url, text))
        except A2AStreamingError as error:
            outcome["error"] = str(error)

    listener = threading.Thread(target=listen)
    listener.start()
    return listener, outcome


@pytest.mark.timeout(30)
def test_shutdown_ends_in_flight_streams_with_an_error(serving):
    agent = EndlessAgent(0.05)
    with serving(agent) as url:
        listener, outcome = listen_in_background(url, "go")
        assert eventually(lambda: agent.live_streams == 1, seconds=10)
    listener.join(10)
    assert outcome == {"error": "server shutting down"}
    assert agent.closed.is_set() and agent.live_streams == 0


# ---------------------------------------------------------------- helpers and noise
@pytest.mark.parametrize("chunk, text", [
    ("plain", "plain"), ({"content": "a", "index": 0}, "a"), ({"text": "b"}, "b"),
    ({"content": {"type": "text", "text": "c"}}, "c"), ({"parts": [{"type": "text", "text": "d"}, {"text": "e"}]}, "de"),
    ({"content": "", "lastChunk": True}, ""), ({"lastChunk": True}, ""), (None, ""), (42, "")])
def test_chunk_text_reads_every_shape(chunk, text):
    assert kit.chunk_text(chunk) == text


NOISE_PROBE = """
import asyncio, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
import streaming_kit as kit
from conftest import stock_agent_class
if sys.argv[1] == "quiet":
    kit.quiet()
with kit.serve(stock_agent_class()(0.01)) as url:
    try:
        asyncio.run(kit.StrictStreamingClient(url).stream_response("3").__anext__())
    except Exception:
        pass
print("own line")
"""


@pytest.mark.parametrize("mode", ["quiet", "loud"])
def test_quiet_silences_the_library_but_not_the_script(mode):
    probe = NOISE_PROBE.format(root=str(ROOT), tests=str(ROOT / "tests"))
    result = subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, timeout=60)
    assert "own line" in result.stdout
    noisy = "Streaming request received" in result.stdout
    assert noisy == (mode == "loud")  # loud shows the probe detects the noise quiet() removes


def test_importing_the_kit_skips_optional_heavy_imports_but_allows_them_later():
    probe = ("import sys; sys.path.insert(0, %r); import streaming_kit, python_a2a; "
             "print('openai' in sys.modules, 'langchain' in sys.modules); import openai; print('ok')") % str(ROOT)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "False", "ok"], result.stderr


# ---------------------------------------------------------------- the agent runs as one task
CURRENT_USER = __import__("contextvars").ContextVar("current_user", default="unset")


class ContextualAgent(kit.StreamingAgent):
    """Sets a context variable and opens a timeout before its first yield, relies on both after."""

    async def stream_response(self, message):
        CURRENT_USER.set("alice")
        yield "set "
        yield CURRENT_USER.get()
        try:
            async with asyncio.timeout(0.2):  # spans a yield: only works if one task runs the agent
                yield " waiting"
                await asyncio.sleep(5)
                yield " overslept"
        except TimeoutError:
            yield " timed out"


def test_context_variables_and_timeouts_survive_a_yield(serving):
    with serving(ContextualAgent()) as url:
        text = "".join(kit.chunk_text(c) for c in asyncio.run(collect(url, "go")))
    assert text == "set alice waiting timed out"


class ProducerAgent(kit.StreamingAgent):
    """Feeds its stream from a background task, the way many LLM bridges do."""

    def __init__(self):
        super().__init__()
        self.producer_finished = threading.Event()

    async def stream_response(self, message):
        queue = asyncio.Queue()

        async def produce():
            try:
                while True:
                    await queue.put("tick ")
                    await asyncio.sleep(0.01)
            finally:
                self.producer_finished.set()

        asyncio.get_running_loop().create_task(produce())
        while True:
            yield await queue.get()


@pytest.mark.timeout(30)
def test_hang_up_also_ends_the_agents_background_tasks(serving, capfd):
    agent = ProducerAgent()
    with serving(agent) as url:
        asyncio.run(take(url, 3))
        assert agent.producer_finished.wait(10), "the producer task was left pending"
        assert eventually(lambda: agent.live_streams == 0, seconds=10)
    assert "Task was destroyed but it is pending" not in capfd.readouterr().err


class StubbornAgent(kit.StreamingAgent):
    """Catches its cancellation and returns quietly, as careless agent code does."""

    async def stream_response(self, message):
        yield "first "
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return
        yield "never"


@pytest.mark.timeout(30)
def test_a_stopped_stream_never_looks_complete_even_if_the_agent_swallows_the_cancel(serving):
    agent = StubbornAgent()
    with serving(agent) as url:
        listener, outcome = listen_in_background(url, "go")
        assert eventually(lambda: agent.live_streams == 1, seconds=10)
        agent.close_streams("maintenance")
        listener.join(10)
    assert outcome == {"error": "maintenance"}


def test_streams_arriving_during_shutdown_are_refused_with_an_error(serving):
    agent = CountingAgent()
    with serving(agent) as url:
        agent.close_streams("server shutting down", refuse_new=True)
        with pytest.raises(A2AStreamingError, match="server shutting down"):
            asyncio.run(collect(url, "3"))
        agent.close_streams(refuse_new=False)
        expect_complete(url, 3)


# ---------------------------------------------------------------- the client checks what it receives
@pytest.mark.parametrize("mimetype, status, path, client_path, message", [
    ("application/json", 200, "/stream", "", r"answered application/json, not text/event-stream"),
    ("text/html", 501, "/stream", "", r"HTTP 501 .*an HTML page, not an A2A answer$"),
    ("text/html", 404, "/a2a/stream", "/a2a", r"HTTP 404 .*without a path"),
], ids=["JSON instead of a stream", "HTML at the base URL", "HTML under a path"])
def test_a_server_that_does_not_stream_is_named_as_such_not_as_a_lost_tail(mimetype, status, path, client_path,
                                                                             message):
    with raw_sse_server('{"hello": "world"}', mimetype, status, path) as url:
        with pytest.raises(A2AError, match=message):
            asyncio.run(collect(f"{url}{client_path}", "hi"))


def test_serve_on_an_ipv6_address_gives_a_usable_url():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        context = kit.serve(CountingAgent(), host="::1")
        url = context.__enter__()
    except OSError as exc:
        pytest.skip(f"cannot bind ::1 here: {exc}")
    try:
        assert url.startswith("http://[::1]:")
        expect_complete(url, 3)
    finally:
        context.__exit__(None, None, None)


def events(*chunks: dict) -> str:
    return "".join(f"data: {__import__('json').dumps(chunk)}\n\n" for chunk in chunks)


@pytest.mark.parametrize("body, outcome", [
    (events({"content": "Hello ", "index": 0}, {"content": "world", "index": 1, "lastChunk": True}), "Hello world"),
    (events({"content": "a", "index": 0}, {"content": "c", "index": 2}, {"content": "", "index": 3, "lastChunk": True}),
     "chunk #2 arrived where #1 was due: chunk #1 lost"),
    (events({"content": "a", "index": 0}, {"content": "a", "index": 0}), "chunk #0 arrived where #1 was due: a chunk repeated"),
    (events({"text": "unnumbered "}, {"lastChunk": True}), "unnumbered "),
], ids=["final event with text", "gap", "repeat", "unnumbered chunks"])
def test_client_keeps_final_text_and_refuses_gaps_and_repeats(body, outcome):
    with raw_sse_server(body) as url:
        try:
            text = "".join(kit.chunk_text(c) for c in asyncio.run(collect(url, "go")))
        except A2AStreamingError as error:
            text = str(error)
        assert text == outcome


@pytest.mark.parametrize("last_id", ["--3", "-1", "\u00b9", "1.5", "0x10"])
def test_odd_resume_points_get_400(counting, last_id):
    _, url = counting
    status, _, _ = post_json(f"{url}/stream", b'{"content": {"type": "text", "text": "1"}}',
                             {"Last-Event-ID": last_id.encode().decode("latin-1")})
    assert status == 400


def test_oversized_body_without_a_length_gets_413(counting):
    _, url = counting

    def body():
        yield b'{"content": {"type": "text", "text": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}}'

    request = urllib.request.Request(f"{url}/stream", data=body(), headers={"Content-Type": "application/json",
                                                                             "Transfer-Encoding": "chunked"})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=10)
    assert answer.value.code == 413


def test_a2a_parts_messages_reach_the_agent_whole():
    parsed = kit.parse_stream_request({"message": {"role": "user", "parts": [
        {"kind": "text", "text": "first"}, {"kind": "text", "text": "second"}]}})
    assert kit.message_text(parsed) == "first\nsecond"
    with pytest.raises(kit.RequestProblem):
        kit.parse_stream_request({"role": "user", "parts": [{"kind": "text", "text": 7}]})


class _Terminal:
    def isatty(self):
        return True


@pytest.mark.parametrize("no_color, coloured", [(None, True), ("1", False), ("", True)],
                         ids=["unset", "set", "set but empty"])
def test_colour_follows_no_color_org(monkeypatch, no_color, coloured):
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    assert examples_support.use_colour(_Terminal()) is coloured
    assert (examples_support.paint("x", "red", _Terminal()) != "x") is coloured
