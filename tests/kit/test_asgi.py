"""The asyncio serving path's own parts (streaming_kit/asgi.py): hang-ups uvicorn alone misses,
the server's resources, an agent cancelled from inside, and python-a2a's other routes, which
serve_asgi answers through the agent's own Flask app. The guarantees both paths share are checked
on both in test_streaming_kit.py, test_server_runtime.py, test_a2a_server.py, test_guard.py and
test_metrics.py."""
import asyncio
import json
import os
import select
import socket
import threading
import urllib.error
import urllib.request

import pytest

import streaming_kit as kit
from streaming_kit.asgi import asgi_app, h11_watching_hangups
from conftest import eventually
from test_server_runtime import GatedAgent, open_stream

linux_only = pytest.mark.skipif(not hasattr(select, "EPOLLRDHUP"), reason="the hang-up watch needs EPOLLRDHUP")


def own_uvicorn(app, protocol):
    """An agent's ASGI app under a uvicorn the user runs (not serve_asgi), in a background thread."""
    import uvicorn
    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_config=None, log_level="warning", http=protocol)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[listener]),), daemon=True)
    thread.start()
    assert eventually(lambda: server.started, seconds=10)
    return server, thread, f"http://127.0.0.1:{listener.getsockname()[1]}"


@linux_only
@pytest.mark.timeout(30)
def test_under_ones_own_uvicorn_the_protocol_notices_a_hang_up_after_a_stray_byte():
    agent = GatedAgent()  # parked at its gate: idle until the client leaves
    server, thread, url = own_uvicorn(asgi_app(agent), h11_watching_hangups())
    try:
        sock = open_stream(url, "1")
        sock.sendall(b"x")  # uvicorn stops reading this connection: only the watch sees the close
        sock.close()
        assert eventually(lambda: agent.closed == 1, seconds=5), "the agent kept running after the client left"
    finally:
        server.should_exit = True
        thread.join(10)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@linux_only
def test_serving_again_and_again_leaves_no_descriptor_behind():
    with kit.serve_asgi(kit.StreamingAgent()):
        pass  # the first run imports uvicorn and sets up what stays for the process
    before = open_fds()
    for _ in range(5):
        with kit.serve_asgi(kit.StreamingAgent()):  # an agent's tasks adopt one loop: a new agent each time
            pass
    assert eventually(lambda: open_fds() <= before, seconds=5), f"{open_fds() - before} descriptors left open"


class CancelledInside(kit.StreamingAgent):
    """Awaits a task that gets cancelled: the agent ends with CancelledError though nobody stopped the stream."""

    async def stream_response(self, message):
        yield "first "
        helper = asyncio.ensure_future(asyncio.sleep(30))
        asyncio.get_running_loop().call_later(0.05, helper.cancel)
        await helper
        yield "never"


async def stream_outcome(url: str) -> dict:
    texts = []
    try:
        async for chunk in kit.StrictStreamingClient(url).stream_response("go"):
            texts.append(kit.chunk_text(chunk))
    except kit.A2AStreamingError as exc:
        return {"texts": texts, "error": str(exc)}
    return {"texts": texts, "error": None}


@pytest.mark.timeout(30)
def test_an_agent_cancelled_from_inside_ends_with_an_error_not_as_complete(serving):
    with serving(CancelledInside()) as url:
        outcome = asyncio.run(stream_outcome(url))
    assert outcome["texts"] == ["first "]
    assert outcome["error"] and "cancelled" in outcome["error"]


# ---------------------------------------------------------------- every route of the agent's Flask app
class WithOwnRoutes(kit.StreamingAgent):
    """Adds a GET and a POST route of its own; notes the loop each of its runs is on."""

    def __init__(self):
        super().__init__()
        self.loops = set()

    async def stream_response(self, message):
        self.loops.add(asyncio.get_running_loop())
        yield "one "
        yield "two"

    def setup_routes(self, app) -> None:
        super().setup_routes(app)
        from flask import request
        app.add_url_rule("/hello", "hello", lambda: {"hello": "from setup_routes"})
        app.add_url_rule("/echo", "echo", lambda: {"echo": request.get_json()}, methods=["POST"])


def call(url: str, path: str, body=None) -> tuple[int, str, dict]:
    """GET (or POST JSON) path: (status, content type, JSON reply)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data, {"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.loads(error.read())


USER_MESSAGE = {"role": "user", "content": {"type": "text", "text": "hi"}}


def test_python_a2a_routes_and_setup_routes_own_are_answered_on_both_paths(serving):
    """serve_asgi used to answer 404 to all of these; a conversation on POST / was a 500."""
    with serving(WithOwnRoutes()) as url:
        assert call(url, "/a2a/health") == (200, "application/json", {"status": "ok"})
        assert call(url, "/a2a/metadata")[2]["agent_name"] == "WithOwnRoutes"
        for path in ("/tasks/send", "/a2a/tasks/send"):
            task_id = f"t{path.count('/')}"
            send = {"jsonrpc": "2.0", "id": 1, "method": "tasks/send", "params": {"id": task_id, "message": USER_MESSAGE}}
            status, _, reply = call(url, path, send)
            assert status == 200 and reply["result"]["artifacts"][0]["parts"][0]["text"] == "one two", reply
            get = {"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"id": task_id}}  # python-a2a's own task
            assert call(url, "/tasks/get", get)[2]["result"]["status"]["state"] == "completed"
        status, _, reply = call(url, "/", {"messages": [USER_MESSAGE], "conversation_id": "c1"})
        assert status == 200 and reply["messages"][-1]["parts"][0]["text"] == "one two", reply
        assert call(url, "/hello") == (200, "application/json", {"hello": "from setup_routes"})
        assert call(url, "/echo", {"a": [1, 2]}) == (200, "application/json", {"echo": {"a": [1, 2]}})
        status, kind, reply = call(url, "/echo", {"a": 1, "padding": "x" * (2 << 20)})  # the same guard
        assert (status, kind) == (413, "application/json") and "over" in reply["error"]


class HoldingRoute(kit.StreamingAgent):
    """A Flask route of its own that holds its thread until the test lets it go."""

    def __init__(self):
        super().__init__()
        self.release, self.holding = threading.Event(), 0

    async def stream_response(self, message):
        yield "unused"

    def setup_routes(self, app) -> None:
        super().setup_routes(app)

        def hold():
            self.holding += 1
            self.release.wait(20)
            return {"held": True}
        app.add_url_rule("/hold", "hold", hold)


@pytest.mark.timeout(60)
def test_bridged_requests_past_the_bound_get_503_at_once_not_an_endless_queue(monkeypatch):
    monkeypatch.setattr(kit.asgi, "FALLBACK_LIMIT", 4)
    agent = HoldingRoute()
    with kit.serve_asgi(agent) as url:
        answers = []
        held = [threading.Thread(target=lambda: answers.append(call(url, "/hold"))) for _ in range(4)]
        for thread in held:
            thread.start()
        assert eventually(lambda: agent.holding == 4), "the four requests did not reach the Flask app"
        request = urllib.request.Request(url + "/hold")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "1"
        assert "server busy" in json.loads(refused.value.read())["error"]
        agent.release.set()
        for thread in held:
            thread.join(20)
        assert answers == [(200, "application/json", {"held": True})] * 4
        # the bound is free again once the four have finished (just after their answers were sent)
        assert eventually(lambda: call(url, "/hold") == (200, "application/json", {"held": True}))


def test_a_non_streaming_answer_runs_on_the_loop_that_runs_the_agents_streams(serving):
    """So a client the agent keeps (made on first use, bound to its loop) serves both; under ASGI
    python-a2a's /tasks/send ran the agent on the kit's other loop."""
    agent = WithOwnRoutes()
    with serving(agent) as url:
        asyncio.run(stream_outcome(url))
        send = {"jsonrpc": "2.0", "id": 1, "method": "tasks/send", "params": {"id": "t1", "message": USER_MESSAGE}}
        assert call(url, "/tasks/send", send)[0] == 200
    assert len(agent.loops) == 1


def test_what_the_guard_refuses_never_reaches_the_flask_app():
    """The ASGI app's checks come first: a refused request costs none of the bridge's threads
    (the bridge to the Flask app is made for the first request handed to it)."""
    from test_guard import TASK, exchange, post
    app = asgi_app(WithOwnRoutes())
    server, thread, url = own_uvicorn(app, h11_watching_hangups())
    try:
        assert post(url, "/tasks/send", TASK, extra="Origin: http://evil.example")[0] == 403
        assert exchange(url, "GET /a2a/health HTTP/1.0", host="rebound.example")[0] == 421
        assert post(url, "/tasks/send", TASK, "text/plain")[0] == 415
        assert exchange(url, f"POST /tasks/send HTTP/1.0\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {200 << 20}")[0] == 413
        assert exchange(url, f"GET /{'a' * 70_000} HTTP/1.0")[0] == 414
        assert app._bridge is None, "a refused request was handed to the Flask app"
        assert exchange(url, "GET /a2a/health HTTP/1.0")[0] == 200
        assert app._bridge is not None  # what the check above relies on
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize("make_listener", ["serve_asgi's", "socket.create_server"])
def test_serve_asgis_connections_send_without_nagles_delay(make_listener):
    """asyncio sets TCP_NODELAY only on connections of an IPPROTO_TCP socket; serve_asgi used
    socket.create_server's (protocol 0), and each response on a kept-alive connection waited ~40 ms."""
    from streaming_kit.asgi import _tcp_listener
    listener = _tcp_listener("127.0.0.1", 0, 8) if make_listener == "serve_asgi's" else socket.create_server(("127.0.0.1", 0))

    async def nodelay_of_one_connection() -> int:
        accepted = asyncio.get_running_loop().create_future()

        class Note(asyncio.Protocol):
            def connection_made(self, transport):
                accepted.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()
        server = await asyncio.get_running_loop().create_server(Note, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname())
            try:
                return await asyncio.wait_for(accepted, 10)
            finally:
                writer.close()
    nodelay = asyncio.run(nodelay_of_one_connection())
    assert bool(nodelay) == (make_listener == "serve_asgi's")  # the other case shows what the check sees
