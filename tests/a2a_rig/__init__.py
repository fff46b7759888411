"""Test rig of REAL official A2A parts (a2a-sdk 1.3.0 and 0.3.26) for checking our agents/clients.

    with start_official_agent("v1-compat", chunks=5, delay=0.1) as (url, proc):
        result = run_official_client(url, sdk="1.3", protocol="0.3")
        assert result["text"] == DEFAULT_TEXT and result["final_state"] == "completed"

Agents (official_agent.py): mode v1 / v1-compat run on a2a-sdk 1.3.0 in this interpreter; v03 runs
on a2a-sdk 0.3.26 in the side venv (sdk_venv.py, built on first use); broken-no-terminal runs on
1.3.0 unless sdk="0.3" is passed. Clients (official_client.py): sdk="1.3" (protocol "1.0" or "0.3")
or sdk="0.3" (protocol "0.3"). Each runs as its own process: the two SDKs cannot share one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .sdk_venv import sdk03_python

RIG_DIR = Path(__file__).resolve().parent
AGENT_SCRIPT = RIG_DIR / "official_agent.py"
CLIENT_SCRIPT = RIG_DIR / "official_client.py"

# Keep in step with official_agent.DEFAULT_TEXT (not imported: the scripts import the SDK).
DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog, one chunk at a time."
TERMINAL_STATES = frozenset({"completed", "failed", "canceled", "rejected"})

AGENT_MODES = ("v1", "v1-compat", "v03", "broken-no-terminal")
SERVING_RE = re.compile(r"^Serving official-agent at (http://127\.0\.0\.1:\d+)$")


def python_for(sdk: str) -> str:
    """The interpreter that has a2a-sdk 1.3.0 (sdk="1.3") or 0.3.26 (sdk="0.3")."""
    if sdk in ("1.3", "1"):
        return sys.executable
    if sdk in ("0.3", "0.3.26"):
        return sdk03_python()
    raise ValueError(f"sdk must be '1.3' or '0.3', not {sdk!r}")


def _agent_sdk(mode: str, sdk: str | None) -> str:
    if mode not in AGENT_MODES:
        raise ValueError(f"unknown mode {mode!r}; one of {AGENT_MODES}")
    if sdk is not None:
        return sdk
    return "0.3" if mode == "v03" else "1.3"


def _cli_options(opts: dict) -> list[str]:
    """{'drop_after': 2, 'resubscribe': True} -> ['--drop-after', '2', '--resubscribe']."""
    args: list[str] = []
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False or value is None:
            continue
        else:
            args += [flag, str(value)]
    return args


@contextlib.contextmanager
def start_official_agent(mode: str, *, sdk: str | None = None, startup_timeout: float = 30.0,
                         **opts):
    """Run official_agent.py in `mode`; yield (url, Popen). Always terminates the process.

    opts become flags: chunks=5, text="...", delay=0.2. sdk overrides which SDK runs the agent
    (only meaningful for broken-no-terminal, which runs on either).
    """
    python = python_for(_agent_sdk(mode, sdk))
    cmd = [python, str(AGENT_SCRIPT), "--port", "0", "--mode", mode, *_cli_options(opts)]
    # stderr goes to a file, not a pipe: nobody drains it while the test runs, and a full pipe
    # would block the agent. proc.stderr_file is there for a test that wants the agent's log.
    stderr = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    proc.stderr_file = stderr
    try:
        url = _wait_for_serving_line(proc, startup_timeout)
        yield url, proc
    finally:
        _stop(proc)
        stderr.close()


def _wait_for_serving_line(proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"official agent printed no 'Serving' line in {timeout} s")
            if sel.select(timeout=left):
                line = proc.stdout.readline()
                if not line:  # EOF: it died
                    proc.wait(timeout=5)
                    raise RuntimeError(f"official agent exited {proc.returncode} before serving:"
                                       f"\n{_read_log(proc)}")
                match = SERVING_RE.match(line.rstrip("\n"))
                if not match:
                    raise RuntimeError(f"unexpected first line from the official agent: {line!r}")
                return match.group(1)


def _read_log(proc: subprocess.Popen) -> str:
    log = proc.stderr_file
    log.flush()
    log.seek(0)
    return log.read()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stdout:
        proc.stdout.close()


def run_official_client(url: str, sdk: str = "1.3", protocol: str | None = None, *,
                        timeout: float = 60.0, **opts) -> dict:
    """Run official_client.py against url and return its JSON result.

    sdk "1.3" (protocol "1.0" default, or "0.3") or "0.3" (protocol "0.3"). opts become flags:
    text="...", drop_after=2, resubscribe=True, cancel_after=2. Raises if the script does not
    exit 0 with one JSON object (a misbehaving agent is not that: it lands in result["error"]).
    """
    if protocol is None:
        protocol = "1.0" if sdk in ("1.3", "1") else "0.3"
    cmd = [python_for(sdk), str(CLIENT_SCRIPT), url, "--protocol", protocol,
           "--timeout", str(timeout), *_cli_options(opts)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30)
    if done.returncode != 0:
        raise RuntimeError(f"official client exited {done.returncode}:\n{done.stderr}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"official client printed nothing:\n{done.stderr}")
    result = json.loads(lines[-1])
    result["stderr"] = done.stderr
    return result


__all__ = [
    "AGENT_MODES", "AGENT_SCRIPT", "CLIENT_SCRIPT", "DEFAULT_TEXT", "TERMINAL_STATES", "python_for", "run_official_client",
    "sdk03_python", "start_official_agent",
]
