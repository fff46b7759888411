"""Kit vs. stock python-a2a /stream, side by side in one run. Measures and prints; never asserts.

    python bench/bench_streaming.py            # ≈ 1 minute
    python bench/bench_streaming.py --json out.json

Figures: per-chunk latency (agent yield → client receipt), zero-delay throughput and loss,
1/10/100 concurrent streams, and cold start of `basic_streaming.py --fast`. Each server runs
in its own process (as in real use), so server and client do not share one GIL; both sides
stamp time with the system-wide monotonic clock.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import streaming_kit as kit  # noqa: E402
import examples_support  # noqa: E402
from python_a2a import A2AError, A2AServer  # noqa: E402


async def timestamped_chunks(count: int, delay: float):
    """Chunks that carry the moment they were yielded (same process, same clock as the client)."""
    for _ in range(count):
        if delay:
            await asyncio.sleep(delay)
        yield f"{time.monotonic():.9f}"


class KitAgent(kit.StreamingAgent):
    async def stream_response(self, message):
        count, delay = kit.message_text(message).split()
        async for chunk in timestamped_chunks(int(count), float(delay)):
            yield chunk


class StockAgent(A2AServer):
    def __init__(self):
        super().__init__(url="http://127.0.0.1")

    async def stream_response(self, message):
        count, delay = message.content.text.split()
        async for chunk in timestamped_chunks(int(count), float(delay)):
            yield chunk


async def one_stream(url: str, count: int, delay: float) -> list[float]:
    """Latencies (s) of the chunks that arrived; a truncated stream keeps what it got."""
    latencies = []
    try:
        async for chunk in kit.StrictStreamingClient(url).stream_response(f"{count} {delay}"):
            latencies.append(time.monotonic() - float(kit.chunk_text(chunk)))
    except A2AError:
        pass  # stock: the tail (and the end marker) never came
    return latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def latency(url: str) -> dict:
    got = await one_stream(url, 300, 0.002)
    return {"chunks": f"{len(got)}/300", "median_ms": statistics.median(got) * 1000 if got else None,
            "p99_ms": percentile(got, 0.99) * 1000}


async def throughput(url: str, count: int = 5000) -> dict:
    started = time.perf_counter()
    got = await one_stream(url, count, 0.0)
    seconds = time.perf_counter() - started
    return {"chunks": f"{len(got)}/{count}", "lost": count - len(got), "chunks_per_s": len(got) / seconds}


async def concurrent(url: str, streams: int, count: int = 50) -> dict:
    results = await asyncio.gather(*(one_stream(url, count, 0.002) for _ in range(streams)))
    received = [latency for stream in results for latency in stream]
    complete = sum(len(stream) == count for stream in results)
    return {"complete": f"{complete}/{streams}", "lost": streams * count - len(received),
            "median_ms": percentile(received, 0.5) * 1000, "p99_ms": percentile(received, 0.99) * 1000}


def measure_server(kind: str) -> dict:
    """Start the kind's server in a process of its own, measure it, stop it."""
    server = subprocess.Popen([sys.executable, __file__, "--serve", kind], stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().rsplit(" at ", 1)[1].strip()  # "Serving ... at URL"
        return {"latency": asyncio.run(latency(url)), "throughput": asyncio.run(throughput(url)),
                **{f"concurrent_{n}": asyncio.run(concurrent(url, n)) for n in (1, 10, 100)}}
    finally:
        server.terminate()
        server.wait(10)


def wall(command: list[str], env: dict | None = None, repeats: int = 3) -> float:
    """Best-of wall time of a command (seconds)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def cold_start() -> dict:
    python = sys.executable
    interpreter = wall([python, "-c", "pass"])
    kit_import = wall([python, "-c", "import streaming_kit"]) - interpreter
    full_import = wall([python, "-c", "import streaming_kit"], {"STREAMING_KIT_FULL_IMPORT": "1"}) - interpreter
    demo = wall([python, "basic_streaming.py", "--fast"])
    return {"interpreter_s": interpreter, "imports_s": kit_import, "demo_s": demo - interpreter - kit_import,
            "total_s": demo, "imports_without_kit_shortcut_s": full_import}


def print_report(kit_figures: dict, stock_figures: dict, start: dict) -> None:
    rows = []
    for name in kit_figures:
        for key in kit_figures[name]:
            rows.append([name, key, _fmt(kit_figures[name][key]), _fmt(stock_figures[name][key])])
    examples_support.print_table(["measure", "figure", "kit", "stock python-a2a"], rows)
    ratio = stock_figures["latency"]["median_ms"] / kit_figures["latency"]["median_ms"]
    print(f"\nmedian latency: kit is {ratio:.1f}× lower than stock")
    print("\ncold start of `python basic_streaming.py --fast` (best of 3):")
    examples_support.print_table(["part", "seconds"], [[k, f"{v:.2f}"] for k, v in start.items()])


def _fmt(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--serve", choices=["kit", "stock"], help=argparse.SUPPRESS)  # the server process
    args = parser.parse_args()
    kit.quiet()
    if args.serve:
        return examples_support.serve_until_interrupted(KitAgent() if args.serve == "kit" else StockAgent(), "127.0.0.1", 0)
    kit_figures, stock_figures = measure_server("kit"), measure_server("stock")
    start = cold_start()
    print_report(kit_figures, stock_figures, start)
    if args.json:
        Path(args.json).write_text(json.dumps({"kit": kit_figures, "stock": stock_figures, "cold_start": start},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
