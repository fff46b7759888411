"""LLM bridge (03): cost of the transform pipeline, of the SDKs, and of the A2A hop. Measures; never asserts.

    python bench/bench_03_llm_bridge.py            # ≈ 10 s

Figures: tokens/s through the default pipeline (redact -> stop -> tidy -> words) and the
A2A chunks it makes of them; time to first token and tokens/s of the real openai, anthropic and
boto3 SDKs reading a local stub (loopback, no network); time to first chunk and total time of a
zero-delay simulated answer through the whole agent over /stream.
"""
from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import load_script  # noqa: E402
from llm_stubs import LLMStub  # noqa: E402

import streaming_kit as kit  # noqa: E402
import examples_support  # noqa: E402
from examples_support import llm_simulators  # noqa: E402

bridge = load_script("03_streaming_llm_integration.py")
REPEATS = 5


async def from_list(tokens):
    for token in tokens:
        yield token


def pipeline_rate(tokens: list[str]) -> tuple[float, int]:
    """Median tokens/s through the default pipeline, and how many chunks come out."""
    async def once():
        stop = bridge.StopAt("\nUser:")
        return [p async for p in bridge.pipeline(from_list(tokens), bridge.default_transforms(stop))]
    rates, chunks = [], 0
    for _ in range(REPEATS):
        started = time.perf_counter()
        chunks = len(asyncio.run(once()))
        rates.append(len(tokens) / (time.perf_counter() - started))
    return statistics.median(rates), chunks


def sdk_figures(provider: str) -> tuple[float, float]:
    """Median time to first token (ms, including client set-up) and tokens/s of one SDK reading the
    loopback stub (whose events main() sets)."""
    async def once():
        run = bridge.ProviderRun(provider, "m", simulated=False)
        started, first = time.perf_counter(), None
        async for _ in bridge.ADAPTERS[provider](bridge.REAL_EVENTS[provider]("hi"), run):
            first = first or time.perf_counter()
        ended = time.perf_counter()
        return (first - started) * 1000, run.text_events / (ended - first)
    results = [asyncio.run(once()) for _ in range(REPEATS)]
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def a2a_figures(url: str) -> tuple[float, float, int]:
    """Median time to first A2A chunk and total (ms) for a zero-delay simulated answer."""
    async def once():
        message = kit.text_message(bridge.PROMPT, metadata={"providers": ["anthropic"]})
        started, first, chunks = time.perf_counter(), None, 0
        async for _ in kit.StrictStreamingClient(url).stream_response(message):
            first, chunks = first or time.perf_counter(), chunks + 1
        return (first - started) * 1000, (time.perf_counter() - started) * 1000, chunks
    results = [asyncio.run(once()) for _ in range(REPEATS)]
    return (statistics.median(r[0] for r in results), statistics.median(r[1] for r in results), results[0][2])


def main() -> int:
    kit.quiet()
    tokens = llm_simulators.simulated_tokens("bench", "model") * 200
    rate, chunks = pipeline_rate(tokens)
    print(f"pipeline: {len(tokens)} tokens -> {chunks} A2A chunks, median {rate:,.0f} tokens/s ({REPEATS} runs)")

    rows = []
    with LLMStub() as stub:
        os.environ.update({"OPENAI_API_KEY": "x", "OPENAI_BASE_URL": f"{stub.url}/v1", "ANTHROPIC_API_KEY": "x",
                           "ANTHROPIC_BASE_URL": stub.url, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": stub.url})
        answer = llm_simulators.simulated_tokens("bench", "model") * 5
        for provider in bridge.PROVIDERS:
            stub.events[provider] = llm_simulators.SIMULATED_EVENTS[provider]("model", answer, 5)[0]
            first_ms, per_s = sdk_figures(provider)
            rows.append([provider, len(answer), f"{first_ms:.1f} ms", f"{per_s:,.0f}"])
    print(f"\nreal SDKs reading a loopback stub (median of {REPEATS}; first token includes client set-up):")
    examples_support.print_table(["sdk", "tokens", "first token", "tokens/s"], rows)

    with kit.serve(bridge.LLMBridgeAgent(pace=llm_simulators.Pace(0, 0))) as url:
        first_ms, total_ms, chunks = a2a_figures(url)
    print(f"\nwhole agent over /stream (simulated anthropic, zero delay): {chunks} chunks, "
          f"first chunk {first_ms:.1f} ms, total {total_ms:.1f} ms (median of {REPEATS})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
