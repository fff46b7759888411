"""What the threaded path's one cross-thread handoff costs per chunk, against a bare thread wake-up.

    python bench/bench_handoff.py            # ~15 s

serve() runs every agent on one shared event loop (a thread of its own) and hands its chunks to
the request's thread; bare Flask makes and writes a chunk in the same thread. This measures, in
one process, the time from a chunk's making to the consuming thread holding it:
  kit       the kit's _AgentRun handoff (the agent on the shared loop, take() in this thread)
  wake      the floor for any two-thread design: one thread sets a threading.Event, another waits on it
  inline    made and used in the same thread (what bare Flask does)
Measures and prints; never asserts.
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from streaming_kit.server import _AgentRun  # noqa: E402

CHUNKS, GAP = 2000, 0.002


async def stamped_chunks():
    for _ in range(CHUNKS):
        await asyncio.sleep(GAP)
        yield time.perf_counter()


def kit() -> list[float]:
    run, delays = _AgentRun(stamped_chunks()), []
    try:
        while True:
            try:
                chunks = run.take(5)
            except StopAsyncIteration:
                return delays
            now = time.perf_counter()
            delays += [now - made for made in chunks]
    finally:
        run.close()


def wake() -> list[float]:
    ready, made, delays = threading.Event(), [0.0], []

    def producer() -> None:
        for _ in range(CHUNKS):
            time.sleep(GAP)
            made[0] = time.perf_counter()
            ready.set()

    threading.Thread(target=producer, daemon=True).start()
    for _ in range(CHUNKS):
        ready.wait()
        delays.append(time.perf_counter() - made[0])
        ready.clear()
    return delays


def inline() -> list[float]:
    delays = []
    for _ in range(CHUNKS):
        time.sleep(GAP)
        made = time.perf_counter()
        delays.append(time.perf_counter() - made)
    return delays


def main() -> None:
    results = {name: [] for name in ("kit", "wake", "inline")}
    for _ in range(3):  # in turns, so a busy moment of the machine hits each alike
        for name, measure in (("kit", kit), ("wake", wake), ("inline", inline)):
            results[name].append(statistics.median(measure()) * 1e6)
    print(f"{CHUNKS} chunks {GAP * 1000:g} ms apart, median per chunk (3 runs in turns, median of medians):")
    for name, medians in results.items():
        print(f"  {name:7} {statistics.median(medians):7.1f} us   runs: {', '.join(f'{m:.1f}' for m in medians)}")


if __name__ == "__main__":
    main()
