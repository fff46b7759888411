"""A side virtualenv holding the last v0.3 release of the official A2A SDK (a2a-sdk 0.3.26).

a2a-sdk 0.3.26 and 1.3.0 both install as the import package ``a2a``, so one environment can hold
only one of them. The main interpreter has 1.3.0; this module builds (once) and finds a venv at
``<repo>/.venv-a2a-0.3`` with 0.3.26 and what its JSON-RPC client and server need.

    sdk03_python() -> str     path of that venv's python, building it on first use
    python tests/a2a_rig/sdk_venv.py      build it (CI calls this) and print the path

The build is idempotent: a marker file inside the venv records the exact requirement list and is
written last, so a half-built venv (killed mid-install) is thrown away and built again. Two
processes that race (pytest-xdist workers, CI and a developer) serialise on an fcntl lock; the
loser finds the marker and returns at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_DIR = REPO_ROOT / ".venv-a2a-0.3"

# Pinned to the versions measured to work together: a2a-sdk 0.3.26 itself needs httpx and httpx-sse
# (its client); its Starlette app needs starlette and sse-starlette (the 'http-server' extra, less
# fastapi, which the Starlette app does not import); uvicorn serves it.
REQUIREMENTS = (
    "a2a-sdk==0.3.26",
    "httpx==0.28.1",
    "httpx-sse==0.4.3",
    "starlette==1.10.0",
    "sse-starlette==3.7.0",
    "uvicorn==0.54.0",
)

MARKER_NAME = ".a2a-rig-ready"
# Generous: a cold install downloads ~30 wheels; a warm one takes ~15 s.
INSTALL_TIMEOUT_S = 900


def _python_path(venv: Path) -> Path:
    return venv / "bin" / "python"


def _marker_text() -> str:
    return "\n".join(REQUIREMENTS) + "\n"


def _is_ready(venv: Path) -> bool:
    marker = venv / MARKER_NAME
    try:
        return marker.read_text() == _marker_text() and _python_path(venv).exists()
    except OSError:
        return False


def _lock_path(venv: Path) -> Path:
    # The lock lives outside the venv (a rebuild deletes the venv) and outside the repo (nothing to
    # gitignore); its name is derived from the venv path so two checkouts do not share a lock.
    digest = hashlib.sha256(str(venv).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"a2a-rig-venv-{digest}.lock"


def _build(venv: Path, log=None) -> None:
    """Create the venv from scratch and install REQUIREMENTS into it, marker last."""
    if venv.exists():
        shutil.rmtree(venv)
    run = dict(check=True, stdout=log, stderr=subprocess.STDOUT if log else None,
               timeout=INSTALL_TIMEOUT_S)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], **run)
    subprocess.run([str(_python_path(venv)), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", *REQUIREMENTS], **run)
    # Prove the install is usable before declaring it ready.
    subprocess.run([str(_python_path(venv)), "-c",
                    "import importlib.metadata as m, a2a.client, a2a.server.apps, uvicorn;"
                    "assert m.version('a2a-sdk') == '0.3.26', m.version('a2a-sdk')"], **run)
    (venv / MARKER_NAME).write_text(_marker_text())


def sdk03_python(venv: Path | str = VENV_DIR, log=None) -> str:
    """Return the python of the a2a-sdk 0.3.26 venv, building it first if needed.

    Fast path (already built): two stat calls, no lock. ``log`` is an optional file object that
    receives the build's output (default: inherited stdout/stderr).
    """
    venv = Path(venv)
    if _is_ready(venv):
        return str(_python_path(venv))
    lock = _lock_path(venv)
    with open(lock, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # blocks while another process builds
        try:
            if not _is_ready(venv):  # the other process may have finished it meanwhile
                _build(venv, log=log)
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return str(_python_path(venv))


def main() -> int:
    started = time.monotonic()
    was_ready = _is_ready(VENV_DIR)
    python = sdk03_python()
    # "ready after": another process may have done the build while this one waited on the lock.
    how = "already built" if was_ready else f"ready after {time.monotonic() - started:.1f} s"
    print(f"a2a-sdk 0.3.26 venv {how}: {python}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
