"""Benchmark for 02_advanced_streaming.py: what each chunking strategy costs, and what a bound saves.

Prints three tables (measures only; never passes or fails on time):
  1. chunker speed: how fast each strategy cuts 1 MB of text (pure Python, no network);
  2. per-chunk cost of the stream: the sample text x10 streamed with no simulated delay through
     streaming_kit on loopback, median of --repeat runs per strategy;
  3. memory with a slow consumer: peak traced memory of a bounded buffer against an unbounded one.

    python bench/bench_02_chunking.py [--repeat 5]
"""
import argparse
import asyncio
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import streaming_kit  # noqa: E402,F401  (before anything from python_a2a)
import examples_support  # noqa: E402
from examples_support import chunking_report  # noqa: E402
from conftest import load_script  # noqa: E402


def chunker_speed(demo) -> list[list[str]]:
    text = (demo.SAMPLE_TEXT * (1_000_000 // len(demo.SAMPLE_TEXT) + 1))[:1_000_000]
    rows = []
    for name in demo.STRATEGIES:
        started = time.perf_counter()
        pieces = demo.chunker(name)(text)
        elapsed = time.perf_counter() - started
        rows.append([name, f"{len(pieces):,}", f"{len(text) / elapsed / 1e6:.1f} M chars/s"])
    return rows


def stream_cost(demo, repeat: int) -> list[list[str]]:
    text = demo.SAMPLE_TEXT * 10
    client_rows = []
    with streaming_kit.serve(demo.ChunkingAgent(0, 0)) as url:
        client = streaming_kit.StrictStreamingClient(url, timeout=30)
        for name in demo.STRATEGIES:
            runs = [asyncio.run(demo.stream_once(client, text, name, demo.DEFAULT_CHUNK_SIZE)) for _ in range(repeat)]
            assert all(not demo.problems(run, text, demo.DEFAULT_CHUNK_SIZE) for run in runs), f"{name}: stream was wrong"
            total = statistics.median(run.client.duration for run in runs)
            chunks = len(runs[0].pieces)
            # client's first arrival minus server's first yield: request + agent start + first chunk's trip
            overhead = statistics.median(run.client.times[0] - run.server.times[0] for run in runs)
            gap = statistics.median(demo.percentile(run.client.gaps, 50) or 0 for run in runs)
            client_rows.append([name, chunks, chunking_report.ms(total), f"{chunks / total:,.0f}",
                                f"{total / chunks * 1e6:.0f} µs", f"{gap * 1e6:.0f} µs", chunking_report.ms(overhead)])
    return client_rows


async def peak_memory(demo, size: int, items: int = 20_000) -> tuple[int, int]:
    """Peak traced bytes and buffer high-water when a fast producer feeds a slow consumer."""
    async def producer():
        for n in range(items):
            yield f"{n:08d}" * 12  # ~100-character chunks, each a new object

    buffer = demo.BackpressureBuffer(size)
    tracemalloc.start()
    async for _ in demo.buffered(producer(), buffer):
        await asyncio.sleep(0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, buffer.high_water


def memory_rows(demo) -> list[list[str]]:
    rows = []
    for label, size in (("bounded, 8 items", 8), ("unbounded (maxsize 0)", 0)):
        peak, high_water = asyncio.run(peak_memory(demo, size))
        rows.append([label, f"{high_water:,}", f"{peak / 1024:,.0f} KiB"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="streams per strategy (default 5)")
    args = parser.parse_args()
    streaming_kit.quiet()
    demo = load_script("02_advanced_streaming.py")
    print("1. Chunker speed on 1 MB of text")
    examples_support.print_table(["strategy", "chunks", "speed"], chunker_speed(demo))
    print(f"\n2. Stream cost, sample text x10, no simulated delay, median of {args.repeat}")
    examples_support.print_table(["strategy", "chunks", "total", "chunks/s", "per chunk", "gap p50",
                               "1st-chunk overhead"], stream_cost(demo, args.repeat))
    print("\n3. Fast producer, slow consumer, 20,000 chunks of ~100 characters")
    examples_support.print_table(["buffer", "most items held", "peak memory"], memory_rows(demo))
    return 0


if __name__ == "__main__":
    sys.exit(main())
