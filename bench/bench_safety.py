"""Memory of one oversized request: python-a2a's own /tasks/send, stock vs behind the kit's guard.

Each server runs in a process of its own (so its RSS is its own); a 200 MiB JSON-RPC body is sent
over a plain socket, and the server's peak (VmHWM) and resident (VmRSS) memory are read from /proc
before and after. Prints a table; measures, never asserts.

    python bench/bench_safety.py [--mib 200]
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = """
import sys, threading
sys.path.insert(0, {root!r})
import streaming_kit
from python_a2a import A2AServer
streaming_kit.quiet()

class Stock(A2AServer):
    def handle_message(self, message):  # a short answer: the memory is the request's
        return streaming_kit.text_message("ok", role=message.role)

class Guarded(streaming_kit.StreamingAgent):
    async def stream_response(self, message):
        yield "ok"

agent = Stock(url="http://127.0.0.1") if sys.argv[1] == "stock" else Guarded()
with streaming_kit.serve(agent) as url:
    print(url, flush=True)
    threading.Event().wait()
"""


def memory_mib(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {name: int(fields[name].split()[0]) / 1024 for name in ("VmHWM", "VmRSS")}


def send_big_task(url: str, mib: int) -> tuple[str, float]:
    """POST a valid tasks/send body of about `mib` MiB; returns the status line and the seconds to answer."""
    head = b'{"jsonrpc": "2.0", "id": 1, "method": "tasks/send", "params": {"id": "big", "message": ' \
           b'{"role": "user", "content": {"type": "text", "text": "'
    tail = b'"}}}}'
    filler = b"x" * (1 << 20)
    length = len(head) + mib * len(filler) + len(tail)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    started = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall(f"POST /tasks/send HTTP/1.0\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {length}\r\n\r\n".encode())
        try:
            sock.sendall(head)
            for _ in range(mib):
                sock.sendall(filler)
            sock.sendall(tail)
        except OSError:  # refused early: the server closed while we were still sending
            pass
        # Read the status line only: werkzeug keeps draining an unread body until the client closes.
        reply = sock.makefile("rb").readline()
    return reply.decode().strip() or "(no reply)", time.perf_counter() - started


def measure(kind: str, mib: int) -> list:
    process = subprocess.Popen([sys.executable, "-c", SERVER.format(root=str(ROOT)), kind],
                               stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        before = memory_mib(process.pid)
        status, seconds = send_big_task(url, mib)
        after = memory_mib(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)
    return [kind, status, f"{seconds:.2f}", f"{before['VmRSS']:.0f}",
            f"+{after['VmHWM'] - before['VmHWM']:.0f}", f"+{after['VmRSS'] - before['VmRSS']:.0f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=200, help="body size in MiB (default 200)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from examples_support import print_table
    rows = [measure(kind, args.mib) for kind in ("stock", "guarded")]
    print(f"POST /tasks/send with a {args.mib} MiB body (memory in MiB)")
    print_table(["server", "reply", "seconds", "RSS before", "peak", "RSS after"], rows)


if __name__ == "__main__":
    main()
