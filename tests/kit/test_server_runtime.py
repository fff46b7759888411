"""serve() and serve_asgi() under load and abuse: 1,000 streams, the stream bound, read timeouts,
hang-ups, backpressure. A guarantee is checked on both serving paths (the `serving` fixture);
what is about werkzeug's threads or serve()'s read timeout, on serve() alone."""
import asyncio
import contextvars
import json
import resource
import select
import socket
import threading
import urllib.request

import pytest

import streaming_kit as kit
from conftest import eventually, post_json


def stream_request(text: str) -> bytes:
    body = json.dumps({"content": {"type": "text", "text": text}, "role": "user"}).encode()
    return (b"POST /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        got = sock.recv(65536)
        if not got:
            break
        data += got
    return data


def open_stream(url: str, text: str = "go") -> socket.socket:
    """A raw /stream request, read up to the first chunk."""
    sock = connect(url)
    sock.sendall(stream_request(text))
    assert b'"index": 0' in read_until(sock, b'"index": 0'), "the stream did not start"
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed this connection (whatever it answered first)."""
    while select.select([sock], [], [], 0)[0]:
        try:
            if not sock.recv(65536):
                return True
        except ConnectionError:
            return True
    return False


class GatedAgent(kit.StreamingAgent):
    """Yields chunk 0, waits at a gate the test opens, then yields `message` more chunks."""

    def __init__(self):
        super().__init__()
        self.gate = asyncio.Event()  # created outside any loop; used only on the loop the agent runs on
        self.loop = None
        self.closed = 0

    def open_gate(self):
        self.loop.call_soon_threadsafe(self.gate.set)

    async def stream_response(self, message):
        self.loop = asyncio.get_running_loop()  # serve(): the kit's agent loop; serve_asgi(): uvicorn's
        try:
            yield "c0 "
            await self.gate.wait()
            for i in range(1, int(kit.message_text(message)) + 1):
                yield f"c{i} "
        finally:
            self.closed += 1  # runs on the one agent loop: no race


@pytest.fixture
def enough_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---------------------------------------------------------------- many streams, and the bound
@pytest.mark.timeout(180)
def test_a_thousand_concurrent_streams_all_complete_and_the_threads_go_away(serving, enough_fds):
    agent, streams, outcome = GatedAgent(), 1000, {}
    threads_before = threading.active_count()

    async def one(url):
        client = kit.StrictStreamingClient(url, timeout=120)
        return [chunk["index"] async for chunk in client.stream_response("9")]

    async def all_streams(url):
        outcome["indexes"] = await asyncio.gather(*(one(url) for _ in range(streams)), return_exceptions=True)

    with serving(agent) as url:
        client = threading.Thread(target=asyncio.run, args=(all_streams(url),))
        client.start()
        all_open = eventually(lambda: agent.live_streams == streams, seconds=120)
        agent.open_gate()  # every stream is open at once before any goes on
        client.join(150)
        assert all_open, f"only {agent.live_streams} of {streams} streams were open at once"
        assert eventually(lambda: agent.live_streams == 0, seconds=30)
    complete = [indexes for indexes in outcome["indexes"] if indexes == list(range(10))]
    failures = {repr(i)[:120] for i in outcome["indexes"] if i != list(range(10))}
    assert len(complete) == streams, f"{streams - len(complete)} streams lost chunks: {failures}"
    assert agent.closed == streams
    assert eventually(lambda: threading.active_count() <= threads_before, seconds=10)


@pytest.mark.timeout(60)
def test_past_the_bound_a_stream_is_refused_at_once_and_the_card_still_answers(serving):
    agent = GatedAgent()
    threads_before = threading.active_count()
    with serving(agent, max_streams=5) as url:
        parked = [open_stream(url, "1") for _ in range(5)]
        status, headers, reply = post_json(f"{url}/stream", stream_request("1").split(b"\r\n\r\n", 1)[1])
        assert status == 503
        assert headers["Retry-After"] == str(kit.server.RETRY_AFTER_SECONDS)
        assert "max_streams" in reply["error"]
        with urllib.request.urlopen(f"{url}/agent.json", timeout=5) as card:
            assert card.status == 200
        for sock in parked:
            sock.close()  # the clients leave: hang-up closes each agent, its thread ends
        assert eventually(lambda: agent.closed == 5 and agent.live_streams == 0, seconds=10)
        assert eventually(lambda: threading.active_count() <= threads_before + 1, seconds=10)  # + the server's
        agent.open_gate()
        chunks = asyncio.run(collect(url, "2"))
        assert [c["index"] for c in chunks] == [0, 1, 2]  # room again: served
    assert eventually(lambda: threading.active_count() <= threads_before, seconds=10)


async def collect(url: str, text: str) -> list[dict]:
    return [chunk async for chunk in kit.StrictStreamingClient(url).stream_response(text)]


def test_the_default_bound_follows_the_fd_limit():
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert kit.StreamingAgent().stream_limit == kit.server.default_max_streams() < soft


# ---------------------------------------------------------------- read timeouts
@pytest.mark.timeout(60)
def test_half_sent_requests_are_closed_after_the_read_timeout(serving):
    with serving(GatedAgent(), read_timeout=0.5) as url:
        headers_cut = [connect(url) for _ in range(100)]
        body_cut = [connect(url) for _ in range(100)]
        for sock in headers_cut:
            sock.sendall(b"POST /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
        for sock in body_cut:
            sock.sendall(stream_request("1")[:-10])  # the headers promise 10 bytes more than come
        assert eventually(lambda: all(map(closed_by_server, headers_cut + body_cut)), seconds=15), \
            f"{sum(not closed_by_server(s) for s in headers_cut + body_cut)} of 200 slow requests still open"
        late = connect(url)
        late.sendall(stream_request("1")[:-10])
        assert read_until(late, b"\r\n\r\n").startswith(b"HTTP/1.1 408")  # a JSON 408, not a 500
        for sock in headers_cut + body_cut + [late]:
            sock.close()


@pytest.mark.timeout(60)
def test_a_kept_alive_connection_gets_the_read_timeout_for_its_next_request_too(serving):
    with serving(GatedAgent(), read_timeout=0.5) as url:
        sock = connect(url)
        sock.sendall(b"GET /agent.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /agent.json HTTP/1.1\r\nHost: 127.0.0.1\r\nAcc")  # the next one, cut short
        assert eventually(lambda: closed_by_server(sock), seconds=15), "a half-sent second request stays open"
        sock.close()


class PausingAgent(kit.StreamingAgent):
    keepalive_seconds = 30  # no pings: only the read timeout could cut the quiet stream

    async def stream_response(self, message):
        yield "before "
        await asyncio.sleep(float(kit.message_text(message)))
        yield "after"


def test_the_read_timeout_does_not_cut_a_quiet_stream(serving):
    with serving(PausingAgent(), read_timeout=0.2) as url:
        chunks = asyncio.run(collect(url, "1.0"))
    assert "".join(kit.chunk_text(c) for c in chunks) == "before after"


# ---------------------------------------------------------------- hang-up and backpressure
@pytest.mark.timeout(30)
@pytest.mark.parametrize("extra", [b"", b"x", b"GET / HTTP/1.1\r\n\r\n"], ids=["nothing", "one byte", "a request"])
def test_hang_up_closes_an_idle_agent_even_after_extra_bytes(serving, extra):
    agent = GatedAgent()  # parked at its gate: idle until the test opens it
    with serving(agent) as url:
        sock = open_stream(url, "1")
        sock.sendall(extra)  # after the server has read the request: these wait in the socket
        sock.close()
        assert eventually(lambda: agent.closed == 1, seconds=5), "the agent kept running after the client left"


class FloodingAgent(kit.StreamingAgent):
    """Yields 64 KiB chunks as fast as it is allowed to."""

    def __init__(self):
        super().__init__()
        self.produced = 0

    async def stream_response(self, message):
        while True:
            self.produced += 1
            yield "x" * 65536


@pytest.mark.timeout(60)
def test_a_client_that_stops_reading_pauses_the_agent(serving):
    agent = FloodingAgent()
    with serving(agent) as url:
        sock = open_stream(url)  # reads the first chunk, then nothing more
        seen = []

        def settled() -> bool:  # no new chunk since the previous look
            seen.append(agent.produced)
            return len(seen) > 1 and seen[-1] == seen[-2]

        assert eventually(settled, seconds=20, interval=0.5), f"the agent ran on: {agent.produced} chunks"
        assert agent.produced * 65536 < 64 << 20  # socket buffers + the handoff buffer, not the whole stream
        sock.close()
        assert eventually(lambda: agent.live_streams == 0, seconds=10)


USER = contextvars.ContextVar("user", default="nobody")


class ContextualAgent(kit.StreamingAgent):
    """Sets a context variable and opens a timeout before a yield; needs both after it."""

    async def stream_response(self, message):
        USER.set(kit.message_text(message))
        try:
            async with asyncio.timeout(0.3):
                yield "waiting "
                await asyncio.sleep(5)
        except TimeoutError:
            yield f"timed out for {USER.get()}"


def test_context_and_timeouts_hold_across_yields_with_streams_sharing_the_loop(serving):
    async def many(url):
        return await asyncio.gather(*(collect(url, f"user{i}") for i in range(20)))

    with serving(ContextualAgent()) as url:
        answers = asyncio.run(many(url))
    assert ["".join(kit.chunk_text(c) for c in chunks) for chunks in answers] == \
        [f"waiting timed out for user{i}" for i in range(20)]
