"""Shared test helpers: run a script as a user would, load it as a module, spot library noise."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Lines python-a2a, werkzeug or logging print when nobody silences them (§5 in the README).
LIBRARY_NOISE = ("Streaming request received", "Put chunk", "Set done_event", "Received chunk from agent",
                 "INFO:", "DEBUG:", " * Running on", '"POST /stream', '"GET /', "Traceback (most recent call last)")


def run_script(name: str, *args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a repo script as a user would: its own process, stdin closed, no TTY, no colour."""
    full_env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / name), *args], cwd=ROOT, env=full_env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def load_script(name: str) -> ModuleType:
    """Import a script whose file name starts with a digit (01_basic_streaming.py ...)."""
    path = ROOT / name
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def library_noise(output: str) -> list[str]:
    """The lines of output that come from libraries rather than the script."""
    return [line for line in output.splitlines() if any(mark in line for mark in LIBRARY_NOISE)]


@pytest.fixture(scope="session", autouse=True)
def _quiet_libraries():
    import streaming_kit
    streaming_kit.quiet()


def stock_agent_class():
    """A plain python-a2a A2AServer with stream_response: the library's own /stream (§1–§2)."""
    import asyncio
    import streaming_kit  # noqa: F401  (fast python_a2a import)
    from python_a2a import A2AServer

    class StockAgent(A2AServer):
        def __init__(self, delay: float = 0.0):
            super().__init__(url="http://127.0.0.1")
            self.delay = delay

        async def stream_response(self, message):
            for i in range(int(message.content.text)):
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield f"c{i} "

    return StockAgent


def eventually(condition, seconds: float = 10.0, interval: float = 0.01) -> bool:
    """Wait until condition() is true or the deadline passes; returns its last answer (no fixed sleeps)."""
    import time
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return bool(condition())
        time.sleep(interval)
    return True


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def serving(request):
    """The two serving paths of the kit, so one test checks both: serve() (werkzeug threads,
    python-a2a's Flask app) and serve_asgi() (uvicorn, one event loop). A context manager taking
    an agent and yielding its base URL."""
    import streaming_kit
    from streaming_kit.asgi import serve_asgi
    return {"wsgi": streaming_kit.serve, "asgi": serve_asgi}[request.param]


def require_program(program: str, package: str = "") -> None:
    """Skip (with the install line) when a real service is missing; fail instead under REQUIRE_REDIS=1 (CI)."""
    from examples_support.services import ServiceMissing, find_program
    try:
        find_program(program, package or program)
    except ServiceMissing as missing:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(str(missing))
        pytest.skip(str(missing))


# ---------------------------------------------------------------- shared fixtures (issue 13): a script's
# --serve, an HTTP JSON helper, an SSE reader and a raw SSE server. Kept in one block of their own.
ANNOUNCEMENT = re.compile(r"Serving (.+) at (http://\S+)\n")  # the --serve contract's first stdout line


@dataclass
class ServedScript:
    """A script running with --serve: where it serves, its agent's name, and what it printed so far."""
    url: str
    name: str
    process: subprocess.Popen
    stdout_lines: list[str]  # complete once the with block has ended
    stderr_lines: list[str]

    @property
    def stdout(self) -> str:
        return "".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)


def _collect_lines(stream, lines: list) -> threading.Thread:
    """Read a pipe into lines on a thread of its own, so a full pipe never blocks the script."""
    def read():
        for line in stream:
            lines.append(line)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


@contextlib.contextmanager
def serve_script(script: str, *args: str, env: dict | None = None, seconds: float = 60):
    """Run `python script --serve --port 0 *args` as a user would and yield a ServedScript once its first
    line names its URL. On leaving, SIGTERM must stop it with exit status 0 within 10 s."""
    full_env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.Popen([sys.executable, str(ROOT / script), "--serve", "--port", "0", *args], cwd=ROOT,
                               env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    out, err = [], []
    readers = [_collect_lines(process.stdout, out), _collect_lines(process.stderr, err)]
    try:
        eventually(lambda: out or not readers[0].is_alive(), seconds)  # stdout at its end: the script died
        announced = ANNOUNCEMENT.fullmatch(out[0]) if out else None
        if not announced:
            _stop(process)
            readers[1].join(10)  # all of stderr, for the message
            pytest.fail(f"{script} --serve printed no 'Serving NAME at URL' line (first line {out[:1]}, "
                        f"exit status {process.returncode}, waited up to {seconds} s); stderr:\n{''.join(err)}")
        yield ServedScript(announced[2], announced[1], process, out, err)
    finally:
        stopped = _stop(process)
        for reader, pipe in zip(readers, (process.stdout, process.stderr)):
            reader.join(10)  # the pipes are at their end once the script has gone
            if not reader.is_alive():
                pipe.close()
    assert stopped, f"{script} --serve was still running 10 s after SIGTERM (killed); stderr:\n{''.join(err)}"
    assert process.returncode == 0, f"{script} --serve exited {process.returncode} on SIGTERM:\n{''.join(err)}"


def _stop(process: subprocess.Popen) -> bool:
    """SIGTERM, then up to 10 s for it to end; kill it if it does not. True when SIGTERM alone did it."""
    process.terminate()
    try:
        process.wait(timeout=10)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False


def post_json(url: str, body, headers: dict | None = None) -> tuple:
    """POST body (a JSON value, or bytes sent as they are) as application/json. Error statuses are answers
    here, not exceptions: (status, response headers, the reply parsed if it is JSON, else its bytes)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            status, answer_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, error.headers, error.read()
    is_json = answer_headers.get_content_type() == "application/json"
    return status, answer_headers, json.loads(raw) if is_json else raw


def read_sse(url: str, body, headers: dict | None = None, stop_after: int | None = None) -> list:
    """POST body as JSON and read the SSE reply: [(event, id, data parsed as JSON)], read as the SSE spec
    reads it (comments skipped, an id holds until the next one). Hangs up after stop_after events."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=20) as response:
        kind = response.headers.get_content_type()
        assert response.status == 200 and kind == "text/event-stream", (response.status, kind, response.read())
        return list(islice(_sse_events(response), stop_after))


def _sse_events(lines):
    """(event, id, data) for each event in a stream of SSE lines (bytes)."""
    event, data, last_id = "message", [], None
    for line in lines:
        line = line.decode().rstrip("\r\n")
        if not line:  # a blank line ends an event; one without data is not dispatched
            if data:
                yield event, last_id, json.loads("\n".join(data))
            event, data = "message", []
        elif not line.startswith(":"):  # a leading colon marks a comment (keep-alive)
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                data.append(value)
            elif field == "event":
                event = value
            elif field == "id":
                last_id = value


@contextlib.contextmanager
def raw_sse_server(body: str, mimetype: str = "text/event-stream", status: int = 200, path: str = "/stream"):
    """A server whose `path` answers every POST with exactly this body: to fake what no real agent sends
    (a gap, a repeat, JSON or HTML instead of a stream). Yields its base URL."""
    from flask import Flask, Response
    from werkzeug.serving import make_server
    app = Flask("raw")
    app.add_url_rule(path, "answer", lambda: Response(body, status=status, mimetype=mimetype), methods=["POST"])
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
