"""examples_support/services.py and deploy/nginx/06.conf: a real redis-server and a real nginx in
front of real SSE upstreams (skipped with the reason when not installed, unless REQUIRE_REDIS=1)."""
import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from flask import Flask, Response
from werkzeug.serving import WSGIRequestHandler, make_server

import streaming_kit as kit
from examples_support.services import (ServiceFailed, ServiceMissing, find_program, free_port,
                                       nginx_proxy, private_redis, render_nginx_config, wait_for_port)
from conftest import eventually, post_json, require_program


@pytest.fixture
def nginx_installed():
    require_program("nginx", "nginx")


# ---------------------------------------------------------------- redis-server
def test_private_redis_is_loopback_only_without_persistence_and_gone_after():
    require_program("redis-server", "redis-server")
    import redis
    with private_redis() as url:
        client = redis.Redis.from_url(url, decode_responses=True)
        assert client.ping()
        config = {key: client.config_get(key)[key] for key in ("bind", "save", "appendonly", "dir")}
        assert config["bind"] == "127.0.0.1" and config["save"] == "" and config["appendonly"] == "no"
        workdir = Path(config["dir"])
        assert workdir.is_dir()
        client.close()
    assert not workdir.exists()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()


def test_a_missing_program_names_the_package_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # redis-server lives in /usr/bin: not found now
    with pytest.raises(ServiceMissing, match="apt-get install redis-server"):
        with private_redis():
            pass
    with pytest.raises(ServiceMissing, match="apt-get install nginx"):
        find_program("nginx-that-is-not-there", "nginx")


def test_wait_for_port_returns_once_listening_and_fails_fast_on_an_exited_process():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        wait_for_port("127.0.0.1", listener.getsockname()[1], seconds=5)
    quitter = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(ServiceFailed, match="exited with status 3"):
        wait_for_port("127.0.0.1", free_port(), seconds=60, process=quitter)
    with pytest.raises(ServiceFailed, match="nothing listens"):
        wait_for_port("127.0.0.1", free_port(), seconds=0.1)


# ---------------------------------------------------------------- upstreams of our own
class GatedAgent(kit.StreamingAgent):
    """Streams n chunks, but holds chunk 1 until the client says it has chunk 0 (or 10 s pass)."""

    def __init__(self):
        super().__init__(name="gated agent")
        self.client_has_first = threading.Event()
        self.first_arrived_before_the_rest = None
        self.streams = 0

    async def stream_response(self, message):
        self.streams += 1
        yield "c0 "
        self.first_arrived_before_the_rest = await asyncio.to_thread(self.client_has_first.wait, 10)
        for i in range(1, int(kit.message_text(message))):
            yield f"c{i} "


class Http10Handler(WSGIRequestHandler):
    protocol_version = "HTTP/1.0"


@contextlib.contextmanager
def plain_sse_upstream(gate: threading.Event, result: dict):
    """A bare Flask SSE view without the kit's X-Accel-Buffering header, answering in HTTP/1.0 (the
    body ends when the connection closes): only nginx's own proxy_buffering off keeps it unbuffered
    (buffered, nginx holds such a body to its end)."""
    app = Flask("plain")

    @app.route("/events")
    def events():
        def frames():
            yield "data: 0\n\n"
            result["first_arrived_before_the_rest"] = gate.wait(10)
            for i in range(1, 5):
                yield f"data: {i}\n\n"
        return Response(frames(), mimetype="text/event-stream")

    server = make_server("127.0.0.1", 0, app, request_handler=Http10Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


async def stream_through(url: str, n: int, agent: GatedAgent, **options) -> list[dict]:
    chunks = []
    async for chunk in kit.StrictStreamingClient(url).stream_response(str(n), **options):
        chunks.append(chunk)
        agent.client_has_first.set()
    return chunks


# ---------------------------------------------------------------- nginx
def test_the_config_listens_on_loopback_only(tmp_path):
    text = render_nginx_config(["http://127.0.0.1:8106", "http://127.0.0.1:8107"], 9999, tmp_path)
    listens = [line.split("#")[0].split() for line in text.splitlines() if line.strip().startswith("listen")]
    assert listens == [["listen", "127.0.0.1:9999;"]]
    assert "@@" not in text and "server 127.0.0.1:8107 max_fails=1 fail_timeout=10s;" in text


def test_every_chunk_passes_through_nginx_unbuffered(nginx_installed):
    agent = GatedAgent()
    with kit.serve(agent) as upstream, nginx_proxy([upstream]) as proxy:
        chunks = asyncio.run(stream_through(proxy, 300, agent))
    assert [c["index"] for c in chunks] == list(range(300))
    assert "".join(kit.chunk_text(c) for c in chunks) == "".join(f"c{i} " for i in range(300))
    assert agent.first_arrived_before_the_rest  # chunk 0 reached the client while chunk 1 was held


def test_nginx_itself_does_not_buffer_an_event_stream(nginx_installed):
    gate, result = threading.Event(), {}

    async def read_events(url: str) -> list[str]:
        received = []
        async with aiohttp.ClientSession() as session, session.get(f"{url}/events") as response:
            async for line in response.content:
                if line.startswith(b"data: "):
                    received.append(line.decode().strip())
                    gate.set()
        return received

    with plain_sse_upstream(gate, result) as upstream, nginx_proxy([upstream]) as proxy:
        assert asyncio.run(read_events(proxy)) == [f"data: {i}" for i in range(5)]
    assert result["first_arrived_before_the_rest"]


def test_last_event_id_reaches_the_replica_through_nginx(nginx_installed):
    agent = GatedAgent()
    agent.client_has_first.set()
    with kit.serve(agent) as upstream, nginx_proxy([upstream]) as proxy:
        chunks = asyncio.run(stream_through(proxy, 10, agent, after_index=6))
    assert [c["index"] for c in chunks] == [7, 8, 9]


def test_a_dead_replica_is_skipped(nginx_installed):
    agent = GatedAgent()
    agent.client_has_first.set()
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connections are refused
    with kit.serve(agent) as live, nginx_proxy([dead, live, dead]) as proxy:
        for _ in range(6):  # least_conn spreads new connections over the three; every one must land
            chunks = asyncio.run(stream_through(proxy, 5, agent))
            assert [c["index"] for c in chunks] == list(range(5))
    assert agent.streams == 6


def test_with_every_replica_down_nginx_answers_json(nginx_installed):
    with nginx_proxy([f"http://127.0.0.1:{free_port()}"]) as proxy:
        status, headers, reply = post_json(f"{proxy}/stream", b'{"content": {"type": "text", "text": "1"}}')
    assert status == 502
    assert headers.get_content_type() == "application/json"
    assert "error" in reply


def test_nginx_answers_its_health_check_and_is_stopped_on_exit(nginx_installed):
    with nginx_proxy(["http://127.0.0.1:1"]) as proxy:
        port = int(proxy.rsplit(":", 1)[1])
        with urllib.request.urlopen(f"{proxy}/proxy-health", timeout=5) as answer:
            assert answer.read() == b"ok\n"

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return False
        except OSError:
            return True
    assert eventually(refused)

