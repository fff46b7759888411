"""Benchmark for 06_distributed_streaming.py on a private redis-server and nginx (measures; never passes or fails).

Prints three tables:
  1. failover: the replica relaying a stream is SIGKILLed right after chunk k; ms from the kill to
     the next event, read through nginx from another replica with Last-Event-ID (the log, no re-run),
     for k = 0 .. 22 (the agent writes 24 chunks). It should be flat in k.
  2. per-chunk cost: (time of a 24-chunk stream - the agent's own pacing) / 24, median of N streams,
     for a replica on its memory log (direct), on the Redis log (direct), and on the Redis log via nginx.
  3. Redis memory per 1,000 finished tasks (INFO used_memory before/after), with the kit's bounds:
     max_events per task, a TTL (keep_seconds=600 in 06) on each finished task's keys.

    python bench/bench_06_distributed.py [--streams 10] [--tasks 1000]
"""
import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import streaming_kit  # noqa: E402,F401  (before anything from python_a2a)
from conftest import load_script  # noqa: E402
from examples_support import cluster, print_table  # noqa: E402
from examples_support.services import free_port, nginx_proxy, private_redis  # noqa: E402

demo = load_script("06_distributed_streaming.py")
SCRIPT = str(ROOT / "06_distributed_streaming.py")


@contextlib.contextmanager
def trio(redis_url, count=3):
    port = free_port()
    with cluster.replica_processes(SCRIPT, redis_url, True, f"127.0.0.1:{port}", count) as replicas:
        with nginx_proxy([r.url for r in replicas], port) as proxy:
            yield replicas, proxy


def session():
    import aiohttp
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=30))


async def kill_relay_ms(replicas, proxy, kill_after: int) -> float:
    """ms from SIGKILL of the relaying replica (after chunk kill_after) to the next event."""
    marks = {}

    def kill(answer):
        if "kill" in marks and "next" not in marks:
            marks["next"] = time.perf_counter()
        if "kill" not in marks and answer.text.count("\n") == kill_after + 1:
            next(r for r in replicas if r.address == answer.relays[-1]).kill()
            marks["kill"] = time.perf_counter()

    async with session() as s:
        first = demo.Answer()
        starting = asyncio.create_task(demo.follow_task(s, [proxy], first, demo.user_message("bench")))
        while not first.task_id:
            await asyncio.sleep(0.002)
        second = demo.Answer(task_id=first.task_id, seqs=[0], relays=first.relays[:1], on_event=kill)
        await demo.follow_task(s, [proxy], second)
        await starting
    return (marks["next"] - marks["kill"]) * 1000


async def per_chunk_ms(url: str, streams: int) -> float:
    costs = []
    async with session() as s:
        for _ in range(streams):
            start = time.perf_counter()
            await demo.follow_task(s, [url], demo.Answer(), demo.user_message("bench"))
            costs.append(((time.perf_counter() - start) - demo.CHUNKS * demo.FAST_CHUNK_DELAY) / demo.CHUNKS * 1000)
    return statistics.median(costs)


async def run_tasks(urls, count: int, at_once: int = 30) -> None:
    async with session() as s:
        for start in range(0, count, at_once):
            await asyncio.gather(*(demo.follow_task(s, [urls[i % len(urls)]], demo.Answer(), demo.user_message("m"))
                                   for i in range(start, min(count, start + at_once))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    streaming_kit.quiet()
    import redis
    with private_redis() as redis_url:
        rows = []
        for k in (0, 6, 12, 18, 22):
            with trio(redis_url) as (replicas, proxy):
                rows.append([k, f"{asyncio.run(kill_relay_ms(replicas, proxy, k)):.1f}"])
        print("1. kill the relaying replica after chunk k -> next event (through nginx, from the log)")
        print_table(["k", "ms"], rows)

        with cluster.replica_processes(SCRIPT, None, True, count=1) as (memory_only,), trio(redis_url) as (replicas, proxy):
            rows = [[name, f"{asyncio.run(per_chunk_ms(url, args.streams)):.2f}"]
                    for name, url in (("direct, memory log", memory_only.url), ("direct, Redis log", replicas[0].url),
                                      ("via nginx, Redis log", proxy))]
            print(f"\n2. per-chunk cost beyond the agent's pacing, median of {args.streams} streams")
            print_table(["path", "ms per chunk"], rows)

            client = redis.Redis.from_url(redis_url)
            before = client.info("memory")["used_memory"]
            start = time.perf_counter()
            asyncio.run(run_tasks([r.url for r in replicas], args.tasks))
            after = client.info("memory")["used_memory"]
            keys = client.dbsize()
            print(f"\n3. Redis memory after {args.tasks} finished tasks ({time.perf_counter() - start:.1f} s)")
            print_table(["bytes per task", "per 1,000 tasks", "keys"],
                        [[round((after - before) / args.tasks), f"{(after - before) / args.tasks * 1000 / 1e6:.2f} MB",
                          keys]])


if __name__ == "__main__":
    main()
