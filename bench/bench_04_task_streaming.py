"""Task streaming (tasks/sendSubscribe): kit vs. stock python-a2a. Measures and prints; never asserts.

    python bench/bench_04_task_streaming.py            # ≈ 10 s
    python bench/bench_04_task_streaming.py --json out.json

Figures: updates delivered per task (stock vs. kit, raw JSON-RPC and python-a2a's client),
per-update latency (agent yield -> client), zero-delay update rate, tasks/cancel round trip,
and updates lost or repeated over many drop-and-resubscribe cycles at random points.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import streaming_kit as kit  # noqa: E402
import examples_support  # noqa: E402
from python_a2a import A2AError, A2AServer, StreamingClient, Task  # noqa: E402


class StampAgent(kit.TaskStreamingAgent):
    """Request "<count> <delay> [stall]": count progress updates carrying their yield time."""

    async def run_task(self, message):
        count, delay, *stall = kit.message_text(message).split()
        for step in range(1, int(count) + 1):
            yield kit.TaskUpdate.progress(f"{time.perf_counter():.9f}", step, int(count))
            await asyncio.sleep(3600 if stall and step == int(count) else float(delay))


class StockViews(StampAgent):
    def setup_routes(self, app):
        A2AServer.setup_routes(self, app)  # python-a2a's own task-stream views (§16)


def task(request: str) -> Task:
    return Task(message=kit.text_message(request).to_dict())


def raw_update_count(url: str, request: str) -> int:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tasks/sendSubscribe",
            "params": {"id": f"raw-{time.monotonic_ns()}", "message": kit.text_message(request).to_dict()}}
    post = urllib.request.Request(f"{url}/tasks/stream", json.dumps(body).encode(),
                                  {"Content-Type": "application/json"})
    with urllib.request.urlopen(post, timeout=30) as response:
        return response.read().decode().count("data: ")


async def client_update_count(url: str, request: str) -> int | str:
    try:
        return len([u async for u in StreamingClient(url).tasks_send_subscribe(task(request))])
    except A2AError as exc:
        return type(exc).__name__


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def latency(url: str, count: int = 200, delay: float = 0.005) -> dict:
    gaps = []
    async for update in kit.TaskStreamingClient(url).tasks_send_subscribe(task(f"{count} {delay}")):
        if update.metadata["kind"] == "status-update" and update.status.message:
            gaps.append(time.perf_counter() - float(kit.artifact_text(update.status.message)))
    return {"median_ms": statistics.median(gaps) * 1000, "p99_ms": percentile(gaps, 0.99) * 1000}


async def rate(url: str, count: int = 2000) -> float:
    started = time.perf_counter()
    received = len([u async for u in kit.TaskStreamingClient(url).tasks_send_subscribe(task(f"{count} 0"))])
    return received / (time.perf_counter() - started)


async def cancel_round_trip(url: str, repeats: int = 20) -> dict:
    client, times = kit.TaskStreamingClient(url), []
    for _ in range(repeats):
        job = task("3 0 stall")
        async for update in client.tasks_send_subscribe(job):
            if (update.status.message or {}).get("metadata", {}).get("step") == 3:
                started = time.perf_counter()
                await client.cancel_task(job.id)
                times.append(time.perf_counter() - started)
    return {"median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000}


async def drop_and_resubscribe(url: str, tasks: int = 50, count: int = 20) -> dict:
    client, lost, repeated, rng = kit.TaskStreamingClient(url), 0, 0, random.Random(4)
    for _ in range(tasks):
        job, seqs, drop_at = task(f"{count} 0.001"), [], rng.randrange(1, count)
        first = client.tasks_send_subscribe(job)
        async for update in first:
            seqs.append(update.metadata["seq"])
            if len(seqs) > drop_at:
                break
        await first.aclose()
        seqs += [u.metadata["seq"] async for u in client.tasks_resubscribe(job.id, after=seqs[-1])]
        repeated += len(seqs) - len(set(seqs))
        lost += (max(seqs) + 1) - len(set(seqs))
    return {"tasks": tasks, "updates_each": count + 2, "lost": lost, "repeated": repeated}


def measure() -> dict:
    figures: dict = {}
    for name, agent in (("stock", StockViews), ("kit", StampAgent)):
        with kit.serve(agent()) as url:
            figures[name] = {"raw_json_rpc_updates": raw_update_count(url, "6 0"),
                             "python_a2a_client_updates": asyncio.run(client_update_count(url, "6 0"))}
    with kit.serve(StampAgent()) as url:
        figures["kit"].update(latency=asyncio.run(latency(url)), updates_per_second=asyncio.run(rate(url)),
                              cancel=asyncio.run(cancel_round_trip(url)),
                              resubscribe=asyncio.run(drop_and_resubscribe(url)))
    return figures


def print_report(figures: dict) -> None:
    stock, ours = figures["stock"], figures["kit"]
    rows = [["updates, 6-step task (expected 8), raw JSON-RPC", stock["raw_json_rpc_updates"],
             ours["raw_json_rpc_updates"]],
            ["updates, python-a2a tasks_send_subscribe", stock["python_a2a_client_updates"],
             ours["python_a2a_client_updates"]],
            ["per-update latency median / p99", "-",
             f"{ours['latency']['median_ms']:.2f} / {ours['latency']['p99_ms']:.2f} ms"],
            ["zero-delay update rate", "-", f"{ours['updates_per_second']:.0f} /s"],
            ["tasks/cancel round trip median / max", "-",
             f"{ours['cancel']['median_ms']:.1f} / {ours['cancel']['max_ms']:.1f} ms"],
            [f"drop + resubscribe x{ours['resubscribe']['tasks']}: lost / repeated", "-",
             f"{ours['resubscribe']['lost']} / {ours['resubscribe']['repeated']}"]]
    examples_support.print_table(["figure", "stock python-a2a", "kit"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    kit.quiet()
    figures = measure()
    print_report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
