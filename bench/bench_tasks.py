"""Task memory, threads and a flood: what unread streams cost the server, and how fast it recovers.
Measures and prints; never asserts.

    python bench/bench_tasks.py                 # ≈ 40 s
    python bench/bench_tasks.py --tasks 2000 --streams 100 1000 --flood 5200

Figures (the server in its own process, read from /proc): RSS after N finished tasks with 64 KB
prompts; threads and fds with S task streams (message/stream) open and unread; a flood of /stream
requests past the server's bound (how many were refused with 503, how long /agent.json took
meanwhile); seconds until threads are back to the baseline after the clients leave.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = """
import asyncio, sys
sys.path.insert(0, {root!r})
import streaming_kit as kit
from examples_support import serve_until_interrupted
kit.quiet()

class Stalls(kit.TaskStreamingAgent):
    async def run_task(self, message):
        if kit.message_text(message).startswith("stall"):
            yield kit.TaskUpdate.progress("waiting", 1, 2)
            await asyncio.sleep(600)
        yield kit.TaskUpdate.chunk("out", "done", last_chunk=True)

agent = Stalls()
agent.max_running_tasks = None
serve_until_interrupted(agent, "127.0.0.1", 0)
"""


def proc_figures(pid: int) -> dict:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss_mib": int(status["VmRSS"].split()[0]) / 1024, "threads": int(status["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def message(text: str) -> dict:
    return {"kind": "message", "messageId": "m", "role": "user", "parts": [{"kind": "text", "text": text}]}


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def open_stream(port: int, path: str = "/") -> socket.socket:
    """A task stream (message/stream on /) or a plain /stream, requested and never read."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message/stream", "params": {"message": message("stall")}}
                      if path == "/" else {"role": "user", "content": {"type": "text", "text": "stall"}}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (path.encode(), port, len(body), body))
    return sock  # never read: an unread stream


def wait_threads(pid: int, at_most: int, seconds: float = 60) -> float:
    started = time.monotonic()
    while proc_figures(pid)["threads"] > at_most and time.monotonic() - started < seconds:
        time.sleep(0.05)
    return time.monotonic() - started


def flood(url: str, port: int, pid: int, count: int, baseline_threads: int) -> None:
    sockets = [open_stream(port, "/stream") for _ in range(count)]
    refused = 0
    for sock in sockets:
        sock.settimeout(10)
        with contextlib.suppress(OSError):
            refused += sock.recv(12).startswith(b"HTTP/1.1 503")
    held = proc_figures(pid)
    started = time.monotonic()
    with urllib.request.urlopen(f"{url}/agent.json", timeout=30):
        card_seconds = time.monotonic() - started
    for sock in sockets:
        sock.close()
    recovered = wait_threads(pid, baseline_threads + 1)
    print(f"flood of {count} unread /stream requests: {refused} refused with 503 at once, {held['threads']} threads, "
          f"{held['fds']} fds; /agent.json answered in {card_seconds * 1000:.0f} ms meanwhile; "
          f"threads back to baseline {recovered:.2f} s after they left")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--streams", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--flood", type=int, default=5200, help="unread /stream requests at once (0: none)")
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER.format(root=str(ROOT))], stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().rsplit(" at ", 1)[1].strip()
        port = int(url.rsplit(":", 1)[1])
        post(url, {"jsonrpc": "2.0", "id": 0, "method": "message/send", "params": {"message": message("warm up")}})
        base = proc_figures(server.pid)
        print(f"baseline: RSS {base['rss_mib']:.1f} MiB, {base['threads']} threads, {base['fds']} fds")
        prompt = "p" * 65536
        started = time.monotonic()
        for i in range(args.tasks):
            post(url, {"jsonrpc": "2.0", "id": i, "method": "message/send", "params": {"message": message(prompt)}})
        after = proc_figures(server.pid)
        print(f"{args.tasks} finished tasks, 64 KB prompts: RSS +{after['rss_mib'] - base['rss_mib']:.1f} MiB "
              f"({args.tasks / (time.monotonic() - started):.0f} tasks/s)")
        for count in args.streams:
            sockets = [open_stream(port) for _ in range(count)]
            time.sleep(1)  # let the server take them all (a measurement, not a readiness wait)
            held = proc_figures(server.pid)
            for sock in sockets:
                sock.close()
            recovered = wait_threads(server.pid, base["threads"] + 1)
            print(f"{count} unread task streams: {held['threads']} threads, {held['fds']} fds, RSS "
                  f"+{held['rss_mib'] - base['rss_mib']:.1f} MiB; threads back to baseline {recovered:.2f} s after they left")
        if args.flood:
            flood(url, port, server.pid, args.flood, base["threads"])
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
