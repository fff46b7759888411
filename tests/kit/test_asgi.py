"""The asyncio serving path's own parts (streaming_kit/asgi.py): hang-ups uvicorn alone misses,
the server's resources, and an agent cancelled from inside. The guarantees both paths share are
checked on both in test_streaming_kit.py, test_server_runtime.py and test_a2a_server.py."""
import asyncio
import os
import select
import socket
import threading

import pytest

import streaming_kit as kit
from streaming_kit.asgi import asgi_app, h11_watching_hangups
from conftest import eventually
from test_server_runtime import GatedAgent, open_stream

linux_only = pytest.mark.skipif(not hasattr(select, "EPOLLRDHUP"), reason="the hang-up watch needs EPOLLRDHUP")


def own_uvicorn(agent, protocol):
    """The agent's ASGI app under a uvicorn the user runs (not serve_asgi), in a background thread."""
    import uvicorn
    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(asgi_app(agent), log_config=None, log_level="warning", http=protocol)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[listener]),), daemon=True)
    thread.start()
    assert eventually(lambda: server.started, seconds=10)
    return server, thread, f"http://127.0.0.1:{listener.getsockname()[1]}"


@linux_only
@pytest.mark.timeout(30)
def test_under_ones_own_uvicorn_the_protocol_notices_a_hang_up_after_a_stray_byte():
    agent = GatedAgent()  # parked at its gate: idle until the client leaves
    server, thread, url = own_uvicorn(agent, h11_watching_hangups())
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
