"""Benchmark for 06_distributed_streaming.py: what failover costs, and how many streams a server holds.

Prints two tables (measures only; never passes or fails on time):
  1. failover: a replica process is SIGKILLed right after chunk k; time from the kill to the
     next chunk from another replica, for several k. The kit resumes by re-running the agent
     and skipping what the client holds, so the replay of chunks 0..k is part of the cost.
  2. concurrent streams: N streams at once (24 chunks, 20 ms apart: 0.5 s each when nothing
     waits) through one werkzeug replica and through gunicorn -k gthread with few and many
     threads. Every open stream holds a thread for its whole length.

    python bench/bench_06_distributed.py [--repeat 3]
"""
import argparse
import asyncio
import re
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import streaming_kit  # noqa: E402,F401  (before anything from python_a2a)
import examples_support  # noqa: E402
from conftest import load_script  # noqa: E402


demo = load_script("06_distributed_streaming.py")


def failover_ms(kill_after: int) -> float:
    """ms from SIGKILL of the serving replica (after chunk kill_after) to the next chunk."""
    with demo.replica_processes(2, fast=True) as processes:
        balancer = demo.Balancer([demo.Replica(f"r{i}", p.url, p) for i, p in enumerate(processes)])
        balancer.log = lambda line: None
        marks = []

        def hook(replica, chunk):
            if marks and len(marks) == 1:
                marks.append(time.perf_counter())
            if chunk["index"] == kill_after and not marks:
                replica.process.kill()
                marks.append(time.perf_counter())

        result = asyncio.run(demo.stream_with_failover(balancer, "bench", hook))
        assert result.lost == 0 and result.duplicated == 0 and result.complete
        return (marks[1] - marks[0]) * 1000


def concurrent_seconds(url: str, streams: int) -> tuple[float, float]:
    """Wall time for `streams` concurrent streams, and the p95 gap between chunks (ms)."""
    replica = demo.Replica("server", url)
    balancer = demo.Balancer([replica])
    started = time.perf_counter()
    results = asyncio.run(demo.spread(balancer, "bench", streams))
    assert all(r.complete and r.lost == 0 and r.duplicated == 0 for r in results)
    return time.perf_counter() - started, demo.percentile(replica.chunk_gap_ms, 95)


def start_gunicorn(threads: int, workers: int) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", str(threads), "-w", str(workers),
               "-b", "127.0.0.1:0", "--chdir", str(ROOT), "06_distributed_streaming:create_wsgi_app(fast=True)"]
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if select.select([server.stderr], [], [], 1)[0]:
            match = re.search(r"Listening at: (http://\S+)", server.stderr.readline())
            if match:
                return server, match.group(1)
    server.kill()
    raise RuntimeError("gunicorn did not start")


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=30)
    server.stderr.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the median is shown")
    repeat = parser.parse_args().repeat
    streaming_kit.quiet()

    rows = []
    for kill_after in (0, 7, 15, 22):
        times = [failover_ms(kill_after) for _ in range(repeat)]
        rows.append([kill_after, f"{statistics.median(times):.0f}", f"{(kill_after + 2) * 20}"])
    print("1. failover: kill after chunk k -> next chunk from another replica (fast pacing, 20 ms/chunk)")
    examples_support.print_table(["k", "median ms", "replay floor ms ((k+2) x 20)"], rows)

    rows = []
    with demo.replica_processes(2, fast=True) as processes:
        rows += concurrency_rows("werkzeug threaded (--serve)", processes[0].url, repeat)
    for threads, workers in ((4, 1), (16, 2)):
        server, url = start_gunicorn(threads, workers)
        try:
            rows += concurrency_rows(f"gunicorn gthread {workers}x{threads}", url, repeat)
        finally:
            stop(server)
    print("\n2. concurrent streams (24 chunks x 20 ms = 0.48 s each when nothing waits)")
    examples_support.print_table(["server", "streams", "median wall s", "gap p95 ms"], rows)
    return 0


def concurrency_rows(label: str, url: str, repeat: int) -> list:
    rows = []
    for streams in (1, 8, 32):
        runs = [concurrent_seconds(url, streams) for _ in range(repeat)]
        rows.append([label, streams, f"{statistics.median(r[0] for r in runs):.2f}",
                     f"{statistics.median(r[1] for r in runs):.1f}"])
    return rows


if __name__ == "__main__":
    sys.exit(main())
