"""Streaming basics: a thinking pause, natural chunks, and streamed vs. not streamed.

You will see the agent "think" for a moment, then its answer arrive clause by clause. The same
question is then asked without streaming: nothing shows until the whole answer is ready. A table
compares the two (time to first visible text, total time); the verdict checks both ways returned
exactly the same text.
1. the agent pauses before its first chunk, as an LLM does before its first token;
2. it streams its answer one clause at a time (clauses() splits after , ; : . ! ?);
3. the client prints each clause as it arrives;
4. the client asks again without streaming: one request, one whole answer;
5. both answers must be identical (exit 1 if not).

    python 01_basic_streaming.py              # the whole demo in one process
    python 01_basic_streaming.py --fast       # no simulated delays
    python 01_basic_streaming.py --serve      # only the agent, on http://127.0.0.1:8101
"""
import asyncio
import re
import sys
import time

from streaming_kit import StreamingAgent, StrictStreamingClient, chunk_text, message_text
from examples_support import demo_parser, paint, print_table, run_demo, spinner

DEFAULT_PORT = 8101
QUESTION = "How does streaming between agents work?"
ANSWER = (
    "When one agent asks another a question, the answer does not have to arrive in one piece. "
    "The serving agent writes each part as soon as it is ready, and the asking agent reads it straight away. "
    "Over HTTP this is done with server-sent events: one long response, one small event per chunk, "
    "and a final marker that says the answer is complete. "
    "The reader sees the first words after a fraction of the time the whole answer takes."
)


# --8<-- [start:agent]
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
        await asyncio.sleep(self.thinking_seconds)  # 1. time before the first token, as with an LLM
        for clause in clauses(ANSWER):  # 2. one chunk per clause
            if self.chars_per_second:
                await asyncio.sleep(len(clause) / self.chars_per_second)  # generation time
            yield clause
# --8<-- [end:agent]


# --8<-- [start:client]
async def ask_streaming(client: StrictStreamingClient, question: str) -> dict:
    """Print the answer as it streams in; return its text and timings."""
    print(paint("Streamed answer:", "cyan"))
    started, first_text_at, pieces = time.perf_counter(), None, []
    try:
        async for chunk in client.stream_response(question):  # 3. each clause, as soon as it is sent
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
    async with spinner("waiting for the whole answer"):  # ticks on a terminal, so the wait is visible
        reply = await client.send_message_async(question)  # 4. one request, one whole answer
    elapsed = time.perf_counter() - started
    print(message_text(reply) + "\n")
    return {"text": message_text(reply), "chunks": 1, "first": elapsed, "total": elapsed}
# --8<-- [end:client]


async def compare(url: str) -> int:
    client = StrictStreamingClient(url)
    print(f"Q: {QUESTION}\n")
    streamed = await ask_streaming(client, QUESTION)
    whole = await ask_whole(client, QUESTION)
    rows = [[name, run["chunks"], len(run["text"]), f"{run['first']:.2f} s", f"{run['total']:.2f} s"]
            for name, run in (("streamed", streamed), ("not streamed", whole))]
    print_table(["mode", "chunks", "characters", "first text after", "total"], rows)
    identical = streamed["text"] == whole["text"] != ""  # 5. the one check
    verdict = "identical text both ways" if identical else "the two answers differ"
    print("\n" + paint(f"Verdict: {verdict}", "green" if identical else "red"))
    return 0 if identical else 1


def main(argv=None) -> int:
    args = demo_parser(__doc__, DEFAULT_PORT).parse_args(argv)
    make_agent = (lambda: ExplainerAgent(0, 0)) if args.fast else ExplainerAgent
    return run_demo(args, make_agent, compare, own_agent_only=True)


if __name__ == "__main__":
    sys.exit(main())
