"""Real services for the demos and tests: a private redis-server, nginx in front of replicas.

Each runs as a child process in its own temporary directory, on a free port of 127.0.0.1, and
is stopped (and the directory removed) when the `with` block ends. Not part of the kit.

    with private_redis() as redis_url, nginx_proxy([url_a, url_b]) as proxy_url:
        ...
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, Optional

NGINX_TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "06.conf"
START_SECONDS = 10.0  # a service that does not answer by then has failed to start
PORT_ATTEMPTS = 3     # a free port can be taken between choosing it and the service binding it


class ServiceMissing(RuntimeError):
    """The program is not installed; the message says what to install."""


class ServiceFailed(RuntimeError):
    """The program is installed but did not start (its own error output is in the message)."""


def find_program(name: str, package: str) -> str:
    """The program's path (sbin directories included: nginx lives in /usr/sbin); ServiceMissing if absent."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if path is None:
        raise ServiceMissing(f"{name} is not installed (on Debian/Ubuntu: apt-get install {package})")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, seconds: float = START_SECONDS,
                  process: Optional[subprocess.Popen] = None) -> None:
    """Return once host:port accepts connections; ServiceFailed after `seconds`, or at once if
    `process` (the one meant to listen there) has exited."""
    deadline = time.monotonic() + seconds
    while True:
        if process is not None and process.poll() is not None:
            raise ServiceFailed(f"{Path(str(process.args[0])).name} exited with status {process.returncode} "
                                f"before listening on {host}:{port}")
        with contextlib.suppress(OSError):
            socket.create_connection((host, port), timeout=0.5).close()
            return
        if time.monotonic() > deadline:
            raise ServiceFailed(f"nothing listens on {host}:{port} after {seconds:g} s")
        time.sleep(0.01)  # poll interval, not a wait for readiness


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM (redis-server and nginx both exit at once on it), SIGKILL if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _running(command: list[str], workdir: Path, port: int, log_name: str) -> Iterator[subprocess.Popen]:
    """Run command (output to workdir/log_name) until the block ends; ServiceFailed with its log if
    it does not listen on port."""
    with open(workdir / log_name, "wb") as log:
        process = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # Ctrl-C reaches us only
    try:
        try:
            wait_for_port("127.0.0.1", port, process=process)
        except ServiceFailed as failure:
            _stop(process)
            output = (workdir / log_name).read_text(errors="replace").strip()
            raise ServiceFailed(f"{failure}\n{output}") from None
        yield process
    finally:
        _stop(process)


def _start_on_free_port(start: Callable[[int], int]) -> int:
    """Call start(port) with a fresh free port until one binds (another process may take the port first)."""
    for attempt in range(PORT_ATTEMPTS):
        try:
            return start(free_port())
        except ServiceFailed:
            if attempt == PORT_ATTEMPTS - 1:
                raise


@contextlib.contextmanager
def private_redis(max_memory: str = "256mb") -> Iterator[str]:
    """A redis-server of our own: 127.0.0.1, a free port, no persistence; yields redis://127.0.0.1:PORT.

    max_memory with the noeviction policy: when full, writes fail loudly instead of Redis
    quietly evicting a task's events."""
    program = find_program("redis-server", "redis-server")
    with tempfile.TemporaryDirectory(prefix="a2a-redis-") as workdir, contextlib.ExitStack() as stack:
        def start(port: int) -> int:
            command = [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                       "--dir", workdir, "--maxmemory", max_memory, "--maxmemory-policy", "noeviction"]
            stack.enter_context(_running(command, Path(workdir), port, "redis.log"))
            return port
        yield f"redis://127.0.0.1:{_start_on_free_port(start)}"


def render_nginx_config(upstreams: list[str], port: int, workdir: Path) -> str:
    """deploy/nginx/06.conf with its @@NAME@@ placeholders filled in."""
    if not upstreams:
        raise ValueError("nginx_proxy needs at least one upstream")
    servers = "\n".join(f"        server {_host_port(url)} max_fails=1 fail_timeout=10s;" for url in upstreams)
    text = NGINX_TEMPLATE.read_text()
    for name, value in {"UPSTREAM_SERVERS": servers, "PORT": str(port), "WORKDIR": str(workdir)}.items():
        text = text.replace(f"@@{name}@@", value)
    return text


def _host_port(url: str) -> str:
    """http://127.0.0.1:8106/ -> 127.0.0.1:8106 (nginx's upstream servers are addresses, not URLs)."""
    address = url.split("://", 1)[-1].split("/", 1)[0]
    if ":" not in address.rsplit("]", 1)[-1]:
        raise ValueError(f"upstream {url!r} needs an explicit port")
    return address


@contextlib.contextmanager
def nginx_proxy(upstreams: list[str], port: Optional[int] = None) -> Iterator[str]:
    """nginx, configured from deploy/nginx/06.conf, in front of the upstream URLs; yields its URL.

    port: listen there (the replicas must know the proxy's Host first); default a free one."""
    program = find_program("nginx", "nginx")
    with tempfile.TemporaryDirectory(prefix="a2a-nginx-") as workdir, contextlib.ExitStack() as stack:
        os.chmod(workdir, 0o755)  # run as root, nginx's workers are another user: they need to get in

        def start(port: int) -> int:
            config = Path(workdir) / "nginx.conf"
            config.write_text(render_nginx_config(upstreams, port, Path(workdir)))
            # -e: errors before the config is read go here too, not to /var/log/nginx (needs root)
            command = [program, "-p", workdir, "-c", str(config), "-e", f"{workdir}/error.log",
                       "-g", "daemon off;"]
            stack.enter_context(_running(command, Path(workdir), port, "nginx.out"))
            return port
        url = f"http://127.0.0.1:{start(port) if port else _start_on_free_port(start)}"
        _wait_until_answers(f"{url}/proxy-health")
        yield url


def _wait_until_answers(url: str, seconds: float = START_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise ServiceFailed(f"{url} does not answer after {seconds:g} s") from None
            time.sleep(0.01)  # poll interval
