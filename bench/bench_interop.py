"""A2A interop: the kit over /stream, message/stream (v0.3), SendStreamingMessage (v1.0), and an a2a-sdk agent.

    python bench/bench_interop.py --quick     # ≈ 10 s
    python bench/bench_interop.py             # ≈ 30 s
    python bench/bench_interop.py --json out.json

One run, side by side, all read with the kit's StrictStreamingClient in this process:
per-chunk latency (agent yield -> client, chunks 2 ms apart: median, p99) and the chunk rate at
zero delay (chunks/s), for the kit agent in each dialect and an a2a-sdk 1.3.0 agent under uvicorn.
Ratios are against the kit's /stream. Measures and prints; never asserts.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import streaming_kit as kit  # noqa: E402
import examples_support  # noqa: E402

PACE_SECONDS = 0.002


class StampAgent(kit.StreamingAgent):
    """Request "<count> <delay>": count chunks, each carrying the time it was yielded."""

    async def stream_response(self, message):
        count, delay = kit.message_text(message).split()
        for _ in range(int(count)):
            if float(delay):
                await asyncio.sleep(float(delay))
            yield f"{time.perf_counter():.9f} "


def official_app(url: str):
    """An a2a-sdk 1.3.0 agent that does what StampAgent does, with AgentExecutor + TaskUpdater."""
    from starlette.applications import Starlette
    from a2a.helpers.proto_helpers import new_task, new_text_part
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, TaskState

    class StampExecutor(AgentExecutor):
        async def execute(self, context, event_queue):
            count, delay = context.get_user_input().split()
            await event_queue.enqueue_event(new_task(context.task_id, context.context_id,
                                                     TaskState.TASK_STATE_SUBMITTED))
            updater = TaskUpdater(event_queue, context.task_id, context.context_id)
            await updater.start_work()
            for i in range(int(count)):
                if float(delay):
                    await asyncio.sleep(float(delay))
                await updater.add_artifact([new_text_part(f"{time.perf_counter():.9f} ")], artifact_id="stamps",
                                           append=i > 0, last_chunk=i == int(count) - 1)
            await updater.complete()

        async def cancel(self, context, event_queue):
            await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()

    card = AgentCard(name="stamps", description="a2a-sdk 1.3.0 bench agent", version="1.0.0",
                     capabilities=AgentCapabilities(streaming=True),
                     supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")],
                     default_input_modes=["text/plain"], default_output_modes=["text/plain"],
                     skills=[AgentSkill(id="stamps", name="stamps", description="time stamps", tags=["bench"])])
    handler = DefaultRequestHandler(agent_executor=StampExecutor(), task_store=InMemoryTaskStore(), agent_card=card)
    return Starlette(routes=create_agent_card_routes(card) + create_jsonrpc_routes(handler, rpc_url="/"))


@contextlib.contextmanager
def serve_official():
    """The lesson's way (07_a2a_interop.serve_official): uvicorn in a thread on a free port."""
    spec = importlib.util.spec_from_file_location("lesson07", ROOT / "07_a2a_interop.py")
    lesson = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lesson)
    lesson.official_app = lambda url, delay: official_app(url)
    with lesson.serve_official(0) as url:
        yield url


async def measure(url: str, dialect: str, count: int, delay: float) -> tuple[list[float], float]:
    """(per-chunk latencies in s, elapsed s) of one stream of `count` chunks `delay` apart."""
    client = kit.StrictStreamingClient(url, dialect=dialect)
    await client.resolve_dialect()  # the card is read once, outside the timing
    latencies, started = [], time.perf_counter()
    async for chunk in client.stream_response(f"{count} {delay}"):
        latencies.append(time.perf_counter() - float(chunk["content"]))
    return latencies, time.perf_counter() - started


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


def run(paced: int, burst: int) -> list[dict]:
    rows = []
    with kit.serve(StampAgent()) as kit_url, serve_official() as official_url:
        for name, url, dialect in (("kit /stream", kit_url, "python-a2a"), ("kit message/stream (0.3)", kit_url, "0.3"),
                                   ("kit SendStreamingMessage (1.0)", kit_url, "1.0"),
                                   ("a2a-sdk 1.3.0 agent, uvicorn (1.0)", official_url, "1.0")):
            asyncio.run(measure(url, dialect, 20, 0))  # warm up
            latencies, _ = asyncio.run(measure(url, dialect, paced, PACE_SECONDS))
            got, elapsed = asyncio.run(measure(url, dialect, burst, 0))
            rows.append({"path": name, "median_ms": statistics.median(latencies) * 1000, "p99_ms": p99(latencies) * 1000,
                         "chunks_per_s": len(got) / elapsed, "chunks": len(got)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer chunks (≈ 10 s)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    kit.quiet()
    paced, burst = (200, 1000) if args.quick else (1000, 5000)
    rows = run(paced, burst)
    base = rows[0]
    print(f"{paced} chunks {PACE_SECONDS * 1000:g} ms apart (latency), {burst} at zero delay (rate); "
          "ratios against the kit's /stream\n")
    examples_support.print_table(
        ["path", "median ms", "p99 ms", "chunks/s", "median ×", "chunks/s ×"],
        [[r["path"], f"{r['median_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['chunks_per_s']:.0f}",
          f"{r['median_ms'] / base['median_ms']:.2f}", f"{r['chunks_per_s'] / base['chunks_per_s']:.2f}"] for r in rows])
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
