"""Streaming basics: a thinking pause, natural chunks, and streamed vs. not streamed.

You will see the agent "think" for a moment, then its answer arrive clause by clause.
The same question is then asked without streaming: nothing shows until the whole answer
is ready. A table compares the two (time to first visible text, total time) and checks
that both ways returned exactly the same text.

    python 01_basic_streaming.py              # the whole demo in one process
    python 01_basic_streaming.py --fast       # no simulated delays
    python 01_basic_streaming.py --serve      # only the agent, on http://127.0.0.1:8101
"""
import asyncio
import re
import sys
import time

from tqdm import tqdm

from streaming_kit import StreamingAgent, StrictStreamingClient, chunk_text, message_text
from examples_support import demo_parser, paint, print_table, run_demo

DEFAULT_PORT = 8101
QUESTION = "How does streaming between agents work?"
ANSWER = (
    "When one agent asks another a question, the answer does not have to arrive in one piece. "
    "The serving agent writes each part as soon as it is ready, and the asking agent reads it straight away. "
    "Over HTTP this is done with server-sent events: one long response, one small event per chunk, "
    "and a final marker that says the answer is complete. "
    "The reader sees the first words after a fraction of the time the whole answer takes."
)


def clauses(text: str) -> list[str]:
    """Split text after each , ; : . ! or ? (with the spaces that follow); joining gives text back."""
    return re.findall(r".+?(?:[,;:.!?]+\s*|$)", text, flags=re.DOTALL)


class ExplainerAgent(StreamingAgent):
    """Explains streaming; pauses to think, then streams its answer one clause at a time."""

    def __init__(self, thinking_seconds: float = 0.8, chars_per_second: float = 200.0):
        super().__init__(name="Streaming explainer")
        self.thinking_seconds = thinking_seconds
        self.chars_per_second = chars_per_second

    async def stream_response(self, message):
        await asyncio.sleep(self.thinking_seconds)  # time before the first token, as with an LLM
        for clause in clauses(ANSWER):
            if self.chars_per_second:
                await asyncio.sleep(len(clause) / self.chars_per_second)  # generation time
            yield clause


async def ask_streaming(client: StrictStreamingClient, question: str) -> dict:
    """Print the answer as it streams in; return its text and timings."""
    print(paint("Streamed answer:", "cyan"))
    started = time.perf_counter()
    first_text_at, pieces = None, []
    try:
        async for chunk in client.stream_response(question):
            first_text_at = first_text_at or time.perf_counter()
            pieces.append(chunk_text(chunk))
            print(pieces[-1], end="", flush=True)
    finally:
        print("\n", flush=True)  # end the answer's line, also before an error message
    return {"text": "".join(pieces), "chunks": len(pieces),
            "first": (first_text_at or time.perf_counter()) - started, "total": time.perf_counter() - started}


async def ask_whole(client: StrictStreamingClient, question: str) -> dict:
    """Ask without streaming: nothing to show until the full answer is back."""
    print(paint("Same question, not streamed:", "cyan"))
    started = time.perf_counter()
    with tqdm(desc="waiting for the whole answer", bar_format="{desc}: {elapsed}",
              disable=not sys.stderr.isatty(), leave=False) as waiting:
        request = asyncio.ensure_future(client.send_message_async(question))
        while not request.done():
            await asyncio.wait({request}, timeout=0.1)
            waiting.refresh()
    text = message_text(request.result())
    elapsed = time.perf_counter() - started
    print(text + "\n")
    return {"text": text, "chunks": 1, "first": elapsed, "total": elapsed}


async def compare(url: str) -> int:
    client = StrictStreamingClient(url)
    print(f"Q: {QUESTION}\n")
    streamed = await ask_streaming(client, QUESTION)
    whole = await ask_whole(client, QUESTION)
    identical = streamed["text"] == whole["text"] and streamed["text"] != ""
    rows = [[name, run["chunks"], len(run["text"]), f"{run['first']:.2f} s", f"{run['total']:.2f} s"]
            for name, run in (("streamed", streamed), ("not streamed", whole))]
    print_table(["mode", "chunks", "characters", "first text after", "total"], rows)
    verdict = "identical text both ways" if identical else "the two answers differ"
    print("\n" + paint(f"Verdict: {verdict}", "green" if identical else "red"))
    return 0 if identical else 1


def main(argv=None) -> int:
    args = demo_parser("Streaming basics: thinking pause, clause chunks, streamed vs. not streamed.",
                       DEFAULT_PORT).parse_args(argv)
    make_agent = (lambda: ExplainerAgent(0, 0)) if args.fast else ExplainerAgent
    return run_demo(args, make_agent, compare)


if __name__ == "__main__":
    sys.exit(main())
