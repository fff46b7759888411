"""The smallest complete A2A streaming example: one agent, one client, one process.

You will see the agent's answer appear word by word as it streams, then one summary line:
1. the client POSTs its question to the agent's /stream endpoint;
2. the agent yields its answer one word at a time, each word sent as a server-sent event;
3. the client prints each chunk the moment it arrives and stops at the end marker.

    python basic_streaming.py                 # server + client in one process
    python basic_streaming.py --serve         # only the agent, on http://127.0.0.1:8100
    python basic_streaming.py --url http://127.0.0.1:8100   # only the client
"""
import asyncio
import sys
import time

from streaming_kit import StreamingAgent, StrictStreamingClient, chunk_text
from examples_support import demo_parser, run_demo

QUESTION = "What is streaming?"
ANSWER = ("Streaming sends an answer in pieces as soon as each piece is ready, "
          "so the reader starts reading before the agent has finished writing.")
DEFAULT_PORT = 8100


# --8<-- [start:agent]
class WordStreamer(StreamingAgent):
    """Answers any question with a short explanation, one word at a time."""

    def __init__(self, delay: float = 0.05):
        super().__init__(name="Basic streaming agent")
        self.delay = delay

    async def stream_response(self, message):
        for word in ANSWER.split(" "):
            await asyncio.sleep(self.delay)  # stands in for an LLM producing tokens
            yield word + " "  # 2. each yield becomes one event on the wire
# --8<-- [end:agent]


# --8<-- [start:client]
async def ask(url: str) -> int:
    client = StrictStreamingClient(url)
    print(f"Q: {QUESTION}\nA: ", end="", flush=True)
    started, first_at, received = time.perf_counter(), None, []
    try:
        async for chunk in client.stream_response(QUESTION):  # 1. POST /stream; raises if the stream breaks
            first_at = first_at or time.perf_counter()
            received.append(chunk_text(chunk))
            print(received[-1], end="", flush=True)  # 3. show each chunk as it arrives
    finally:
        print(flush=True)  # end the answer's line, also before an error message
    total, first, text = time.perf_counter() - started, (first_at or started) - started, "".join(received)
    intact = text.strip() == ANSWER  # the kit already raised on any loss
    verdict = "every word arrived, in order" if intact else "the answer arrived changed"
    print(f"\n{len(received)} chunks, {len(text)} characters, first after {first:.2f} s, "
          f"all in {total:.2f} s: {verdict}")
    return 0 if intact else 1
# --8<-- [end:client]


def main(argv=None) -> int:
    args = demo_parser(__doc__, DEFAULT_PORT).parse_args(argv)
    return run_demo(args, lambda: WordStreamer(delay=0 if args.fast else 0.05), ask, own_agent_only=True)


if __name__ == "__main__":
    sys.exit(main())
