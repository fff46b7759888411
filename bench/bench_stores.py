"""The task event log: MemoryTaskLog vs RedisTaskLog. Measures and prints; never asserts.

    python bench/bench_stores.py                 # ≈ 30 s, on a private redis-server
    python bench/bench_stores.py --redis redis://127.0.0.1:6379 --json out.json

Figures: per-event append latency; append -> a waiting reader has it (live relay); a backlog
read of a whole task; Redis memory per 1,000 finished tasks of 24 chunks (INFO memory, with the
final-event TTL and max_events in place), and how soon finished tasks leave once their TTL passes.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples_support import print_table  # noqa: E402
from examples_support.services import ServiceMissing, private_redis  # noqa: E402
from streaming_kit.stores import MemoryTaskLog, RedisTaskLog  # noqa: E402

CHUNKS = 24  # an answer of 06's length


def task_event(task_id: str, seq: int, final: bool = False) -> tuple[dict, dict]:
    """An event and the snapshot after it, shaped like the kit's task events (artifact chunks)."""
    status = {"state": "completed" if final else "working", "timestamp": "2025-01-01T00:00:00.000000"}
    chunk = {"artifactId": "answer", "name": "answer", "parts": [{"type": "text", "text": f"word{seq:03d} "}],
             "append": seq > 0, "lastChunk": final}
    event = {"id": task_id, "sessionId": task_id, "status": status, "artifacts": [chunk],
             "metadata": {"seq": seq, "kind": "artifact-update"}}
    text = "".join(f"word{i:03d} " for i in range(seq + 1))
    snapshot = {**event, "artifacts": [{**chunk, "parts": [{"type": "text", "text": text}]}]}
    return event, snapshot


async def write_task(log, task_id: str, chunks: int = CHUNKS) -> None:
    await log.start(task_id, *task_event(task_id, 0))
    for seq in range(1, chunks + 1):
        await log.append(task_id, seq, *task_event(task_id, seq, seq == chunks), final=seq == chunks)


def ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    return f"{statistics.median(ordered) * 1e3:.3f} / {ordered[int(len(ordered) * 0.95)] * 1e3:.3f}"


async def latencies(log, events: int) -> dict:
    """Append cost and append -> waiting reader, over tasks of 06's length; a whole task's backlog read."""
    appends, relays, backlogs = [], [], []
    for _ in range(max(1, events // CHUNKS)):
        task_id = uuid.uuid4().hex
        delivered, stamps = asyncio.Event(), {}

        async def reader():
            after = 0
            while after < CHUNKS:
                for event in await log.read(task_id, after, timeout=5):
                    after = event["metadata"]["seq"]
                    relays.append(time.perf_counter() - stamps[after])
                    delivered.set()

        await log.start(task_id, *task_event(task_id, 0))
        reading = asyncio.create_task(reader())
        for seq in range(1, CHUNKS + 1):  # one event in flight at a time: each lands on a waiting reader
            delivered.clear()
            stamps[seq] = time.perf_counter()
            await log.append(task_id, seq, *task_event(task_id, seq, seq == CHUNKS), final=seq == CHUNKS)
            appends.append(time.perf_counter() - stamps[seq])
            await delivered.wait()
        await reading
        start = time.perf_counter()
        await log.read(task_id, -1, timeout=0)
        backlogs.append(time.perf_counter() - start)
    return {"append": appends, "relay": relays, "backlog": backlogs}


async def redis_memory(url: str, tasks: int, ttl_tasks: int = 50) -> dict:
    """used_memory before/after `tasks` finished tasks (default TTL, an hour, still running); then
    how long `ttl_tasks` finished tasks with a 1 s TTL take to leave Redis."""
    import redis.asyncio
    prefix = f"bench:{uuid.uuid4().hex}:"
    async with redis.asyncio.from_url(url) as admin, RedisTaskLog(url, prefix=prefix) as log:
        async def count_keys() -> int:
            return len([key async for key in admin.scan_iter(match=f"{prefix}*", count=1000)])
        before = (await admin.info("memory"))["used_memory"]
        for first in range(0, tasks, 20):  # 20 writers at once, as 20 streams would be
            await asyncio.gather(*(write_task(log, f"task-{n:05d}") for n in range(first, min(first + 20, tasks))))
        after, keys = (await admin.info("memory"))["used_memory"], await count_keys()
        ttls = {await admin.ttl(f"{prefix}task-00000:events"), await admin.ttl(f"{prefix}task-00000:snapshot")}
        async for key in admin.scan_iter(match=f"{prefix}*", count=1000):
            await admin.unlink(key)
    async with RedisTaskLog(url, prefix=prefix, keep_seconds=1) as log:
        await asyncio.gather(*(write_task(log, f"short-{n}") for n in range(ttl_tasks)))
        finished = time.monotonic()
        while await count_keys() and time.monotonic() - finished < 30:
            await asyncio.sleep(0.05)  # Redis drops expired keys in the background: poll, with a deadline
        gone_after = time.monotonic() - finished
    return {"before": before, "after": after, "keys": keys, "ttls": sorted(ttls), "ttl_tasks": ttl_tasks,
            "gone_after": gone_after}


async def measure(url: str, events: int, tasks: int) -> dict:
    results = {}
    async with MemoryTaskLog() as memory:
        results["memory"] = await latencies(memory, events)
    async with RedisTaskLog(url, prefix=f"bench:{uuid.uuid4().hex}:") as shared:
        results["redis"] = await latencies(shared, events)
    results["redis_memory"] = await redis_memory(url, tasks)
    return results


def report(results: dict, tasks: int) -> None:
    rows = [[name, ms(r["append"]), ms(r["relay"]), ms(r["backlog"])]
            for name, r in ((n, results[n]) for n in ("memory", "redis"))]
    print(f"{len(results['memory']['append'])} appends, in tasks of {CHUNKS + 1} events (06's answer length)")
    print_table(["log", "append ms p50 / p95", "append -> reader ms p50 / p95",
                 f"read {CHUNKS + 1}-event backlog ms p50 / p95"], rows)
    ratio = statistics.median(results["redis"]["relay"]) / statistics.median(results["memory"]["relay"])
    print(f"\nRedis relay / memory relay (median): {ratio:.1f}x")
    mem = results["redis_memory"]
    grown = mem["after"] - mem["before"]
    print(f"Redis memory for {tasks} finished tasks of {CHUNKS + 1} events (TTL {mem['ttls']} s still to run): "
          f"{grown / 1024:.0f} KiB, {grown / tasks:.0f} bytes a task, {mem['keys']} keys")
    print(f"{mem['ttl_tasks']} finished tasks with keep_seconds=1 were gone from Redis "
          f"{mem['gone_after']:.1f} s after the last final event")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", metavar="URL", help="an existing Redis (default: start a private one)")
    parser.add_argument("--events", type=int, default=2000, help="events for the latency runs (default 2000)")
    parser.add_argument("--tasks", type=int, default=1000, help="finished tasks for the memory figure")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures here")
    args = parser.parse_args()
    try:
        with (private_redis() if args.redis is None else contextlib.nullcontext(args.redis)) as url:
            results = asyncio.run(measure(url, args.events, args.tasks))
    except ServiceMissing as missing:
        print(f"skipped: {missing}", file=sys.stderr)
        return 1
    report(results, args.tasks)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0



if __name__ == "__main__":
    sys.exit(main())
