"""Shared test helpers: run a script as a user would, load it as a module, spot library noise."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
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
