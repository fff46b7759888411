"""Advanced streaming: how the way you cut a response changes what the reader sees.

The same text is streamed once per chunking strategy (paragraph, sentence, size, word, token) by an
agent that simulates a model writing 500 characters per second: a chunk leaves only once all of its
characters exist, so coarse chunks mean a late first text and long silences; fine chunks, early text.
  1. the client sends the text, naming a strategy in the message's metadata;
  2. the agent cuts the text that way and yields each chunk once written, stamped with its own clock;
  3. the client stamps each arrival with its clock; a display buffer redraws whole words only;
  4. one more stream goes through a bounded buffer that pauses a producer faster than the stream.
You will see a timeline per strategy, server vs client timings, the buffering figures, a summary
table and one verdict: every stream delivered the text exactly, in the expected number of chunks
(or exit 1). --report writes every figure as JSON, --plot draws them.

    python 02_advanced_streaming.py                  # about 10 s; --fast takes about 1 s
    python 02_advanced_streaming.py --report run.json --plot run.png
    python 02_advanced_streaming.py --serve          # only the agent, on http://127.0.0.1:8102
"""
import asyncio
import contextlib
import dataclasses
import functools
import re
import statistics
import sys
import time
from typing import Any, AsyncIterator, Callable, Optional

from streaming_kit import StreamingAgent, StrictStreamingClient, chunk_text, message_text, text_message
from streaming_kit.buffers import BackpressureBuffer, DisplayBuffer, buffered  # steps 3 and 4 (kit code)
from examples_support import chunking_report, count_arg, demo_parser, output_file, paint, run_demo, text_file
from examples_support.text import SAMPLE_TEXT, can_cut  # the demo's text; where a cut splits no character

DEFAULT_PORT = 8102
DEFAULT_CHUNK_SIZE = 40


# --8<-- [start:chunkers]
# Every chunker returns non-empty pieces that join back to the input exactly ("".join(pieces) == text)
# for any text: unicode, CRLF, runs of whitespace, or "" (which gives []).
PARAGRAPH_BREAK = re.compile(r"\r?\n(?:[ \t]*\r?\n)+")
SENTENCE_END = re.compile(r"[.!?…]+['\"’”)\]]*\s+|[。！？]+\s*|" + PARAGRAPH_BREAK.pattern)
WORD = re.compile(r"\s+|\S+\s*")  # leading whitespace, then each word with the spaces after it
# Roughly what a language model emits: up to 4 letters (with the space before them), up to 3 digits,
# one punctuation mark, or whitespace.
TOKEN = re.compile(r" ?[^\W\d_]{1,4}| ?\d{1,3}| ?(?:[^\w\s]|_)|\s+(?!\S)|\s+")


def _cut_after(pattern: re.Pattern, text: str) -> list[str]:
    """Split text just after every match of pattern."""
    pieces, start = [], 0
    for match in pattern.finditer(text):
        if match.end() > start:
            pieces.append(text[start:match.end()])
            start = match.end()
    return pieces + [text[start:]] if start < len(text) else pieces


def by_paragraph(text: str) -> list[str]:
    """One chunk per paragraph, each ending with the blank line(s) after it."""
    return _cut_after(PARAGRAPH_BREAK, text)


def by_sentence(text: str) -> list[str]:
    """One chunk per sentence (ends at . ! ? … 。！？ plus closing quotes and spaces, or a paragraph)."""
    return _cut_after(SENTENCE_END, text)


def by_word(text: str) -> list[str]:
    """One chunk per word, with the whitespace that follows it."""
    return WORD.findall(text)


def by_token(text: str) -> list[str]:
    """Token-like pieces of about 4 characters, like a language model's output."""
    return TOKEN.findall(text)


def by_size(text: str, budget: int = DEFAULT_CHUNK_SIZE) -> list[str]:
    """Chunks of at most `budget` characters, cut before a word where possible, never inside a character."""
    if budget < 1:
        raise ValueError(f"chunk budget must be at least 1 character, got {budget}")
    pieces, start = [], 0
    while start < len(text):
        end = _size_cut(text, start, budget)
        pieces.append(text[start:end])
        start = end
    return pieces


def _size_cut(text: str, start: int, budget: int) -> int:
    """Where the chunk starting at `start` ends: the last word start within the budget, else the last
    place that does not split a character (can_cut: an accent stays with its letter, an emoji with its joiners)."""
    if start + budget >= len(text):
        return len(text)
    last_safe = None
    for i in (i for i in range(start + budget, start, -1) if can_cut(text, i)):  # from the budget backwards
        if text[i - 1].isspace() and not text[i].isspace():
            return i
        last_safe = last_safe or i
    if last_safe:
        return last_safe
    # One "character" longer than the budget (a long emoji sequence): keep it whole.
    return next((i for i in range(start + budget + 1, len(text)) if can_cut(text, i)), len(text))


STRATEGIES: dict[str, Callable[[str], list[str]]] = {
    "paragraph": by_paragraph, "sentence": by_sentence, "size": by_size, "word": by_word, "token": by_token}


def chunker(strategy: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Callable[[str], list[str]]:
    """The chunking function for a strategy name (the size strategy uses chunk_size)."""
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if strategy != "size":
        return STRATEGIES[strategy]
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return functools.partial(by_size, budget=chunk_size)
# --8<-- [end:chunkers]


# --8<-- [start:metrics]
def percentile(values: list[float], q: int) -> Optional[float]:
    """The q-th percentile (1-99), interpolating between ranks; None when there are no values."""
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclasses.dataclass
class StreamMetrics:
    """Timings of one stream on one side of the wire: record each chunk, then read the figures.

    Times are seconds since the stream started (the request was sent, or the agent began).
    """
    times: list[float] = dataclasses.field(default_factory=list)
    sizes: list[int] = dataclasses.field(default_factory=list)
    total: Optional[float] = None  # when the stream ended; None = at the last chunk
    clock_start: float = dataclasses.field(default_factory=time.perf_counter, repr=False)

    def record(self, text: str, at: Optional[float] = None) -> None:
        """A chunk of `text` happened now (or `at` seconds after the start)."""
        self.times.append(time.perf_counter() - self.clock_start if at is None else at)
        self.sizes.append(len(text))

    def finish(self) -> None:
        self.total = time.perf_counter() - self.clock_start

    @property
    def gaps(self) -> list[float]:
        """Silences between consecutive chunks."""
        return [later - earlier for earlier, later in zip(self.times, self.times[1:])]

    @property
    def duration(self) -> float:
        return self.total if self.total is not None else (self.times[-1] if self.times else 0.0)

    def to_dict(self) -> dict[str, Any]:
        gaps, chars, seconds = self.gaps, sum(self.sizes), self.duration
        return {"chunks": len(self.sizes), "chars": chars, "first_chunk_s": self.times[0] if self.times else None,
                "total_s": seconds, "gap_mean_s": statistics.fmean(gaps) if gaps else None,
                "gap_p50_s": percentile(gaps, 50), "gap_p95_s": percentile(gaps, 95),
                "gap_max_s": max(gaps, default=None),
                "chunks_per_s": len(self.sizes) / seconds if seconds > 0 else None,
                "chars_per_s": chars / seconds if seconds > 0 else None, "size_min": min(self.sizes, default=None),
                "size_p50": percentile(self.sizes, 50), "size_max": max(self.sizes, default=None)}
# --8<-- [end:metrics]




# --8<-- [start:agent]
class ChunkingAgent(StreamingAgent):
    """Streams your message back, cut by the strategy its metadata names (default: word).

    Metadata: {"strategy": "paragraph|sentence|size|word|token", "chunk_size": 40, "backpressure": false}.
    Each chunk is {"text": ..., "yielded_at": seconds since the agent started} (+ "buffer" figures).
    """

    def __init__(self, chars_per_second: float = 500.0, paced_chunks_per_second: float = 150.0,
                 buffer_size: int = 8):
        super().__init__(name="Chunking agent")
        self.chars_per_second, self.paced_chunks_per_second = chars_per_second, paced_chunks_per_second
        self.buffer_size = buffer_size

    async def stream_response(self, message) -> AsyncIterator[dict]:
        options = getattr(message.metadata, "custom_fields", None) or {}  # 1. what the client asked for
        pieces = chunker(options.get("strategy", "word"), options.get("chunk_size", DEFAULT_CHUNK_SIZE))(
            message_text(message))  # 2. cut the whole text the chosen way
        started = time.perf_counter()
        stream = self._paced_from_buffer(pieces) if options.get("backpressure") else self._as_written(pieces)
        async with contextlib.aclosing(stream):
            async for piece, extra in stream:  # 2. stamped with the agent's clock
                yield {"text": piece, "yielded_at": time.perf_counter() - started, **extra}

    async def _as_written(self, pieces: list[str]) -> AsyncIterator[tuple[str, dict]]:
        """A chunk leaves once the simulated model has written all of its characters."""
        for piece in pieces:
            if self.chars_per_second:
                await asyncio.sleep(len(piece) / self.chars_per_second)
            yield piece, {}

    async def _burst(self, pieces: list[str]) -> AsyncIterator[str]:
        """A producer with no pacing of its own, like a model that outruns its reader."""
        for piece in pieces:
            yield piece

    async def _paced_from_buffer(self, pieces: list[str]) -> AsyncIterator[tuple[str, dict]]:
        """4. The fast producer fills a bounded buffer; the stream takes from it at a steady pace."""
        buffer = BackpressureBuffer(self.buffer_size)
        async with contextlib.aclosing(buffered(self._burst(pieces), buffer)) as stream:
            async for piece in stream:
                if self.paced_chunks_per_second:
                    await asyncio.sleep(1 / self.paced_chunks_per_second)
                yield piece, {"buffer": {"size": buffer.size, "high_water": buffer.high_water,
                                         "pauses": buffer.pauses}}
# --8<-- [end:agent]


# --8<-- [start:client]
@dataclasses.dataclass
class Run:
    """One stream as the client saw it."""
    strategy: str
    pieces: list[str] = dataclasses.field(default_factory=list)
    client: StreamMetrics = dataclasses.field(default_factory=StreamMetrics)  # its clock starts now
    server: StreamMetrics = dataclasses.field(default_factory=StreamMetrics)
    display: DisplayBuffer = dataclasses.field(default_factory=DisplayBuffer)
    shown: list[str] = dataclasses.field(default_factory=list)  # what the display drew, update by update
    buffer: Optional[dict] = None  # the agent's BackpressureBuffer figures, if it used one

    @property
    def received(self) -> str:
        return "".join(self.pieces)


async def stream_once(client: StrictStreamingClient, text: str, strategy: str,
                      chunk_size: int = DEFAULT_CHUNK_SIZE, backpressure: bool = False) -> Run:
    """Stream `text` cut one way: time each chunk on both clocks, redraw whole words only."""
    run = Run(strategy)
    options = {"strategy": strategy, "chunk_size": chunk_size, "backpressure": backpressure}
    async for chunk in client.stream_response(text_message(text, metadata=options)):  # 1. ask
        piece, content = chunk_text(chunk), chunk.get("content")
        run.pieces.append(piece)
        run.client.record(piece)  # 3. the arrival, on the client's clock
        if isinstance(content, dict) and "yielded_at" in content:
            run.server.record(piece, at=content["yielded_at"])  # ... and the yield, on the agent's
            run.buffer = content.get("buffer", run.buffer)
        if ready := run.display.feed(piece):  # 3. a display that never shows half a word
            run.shown.append(ready)
    run.client.finish()
    run.shown += [rest] if (rest := run.display.flush()) else []
    return run
# --8<-- [end:client]


def problems(run: Run, text: str, chunk_size: int) -> list[str]:
    """What is wrong with a stream of `text` (empty when it arrived exactly, in the expected chunks)."""
    expected = len(chunker(run.strategy, chunk_size)(text))
    return ([] if run.received == text else ["received text differs from sent text"]) + (
        [] if len(run.pieces) == expected else [f"{len(run.pieces)} of {expected} chunks"])


async def compare(url: str, text: str, chunk_size: int = DEFAULT_CHUNK_SIZE, report_path=None, plot_path=None) -> int:
    """Stream the text once per strategy, once more through the bounded buffer; show it all; one verdict."""
    client = StrictStreamingClient(url, timeout=30)
    print(f"Streaming {len(text)} characters from {url}, once per strategy.\n")
    runs = [await stream_once(client, text, name, chunk_size) for name in STRATEGIES]
    paced = await stream_once(client, text, "word", chunk_size, backpressure=True)
    found = {run.strategy: problems(run, text, chunk_size) for run in runs}
    found["backpressure"] = problems(paced, text, chunk_size)
    chunking_report.show(runs, paced, text)
    chunking_report.save(runs, paced, text, found, {"url": url, "chunk_size": chunk_size}, report_path, plot_path)
    failures = [f"{name}: {', '.join(wrong)}" for name, wrong in found.items() if wrong]
    verdict = "FAILED - " + "; ".join(failures) if failures else "every strategy delivered the text exactly"
    print("\n" + paint(f"Verdict: {verdict}", "red" if failures else "green"))
    return 1 if failures else 0


def command_line():
    parser = demo_parser(__doc__, DEFAULT_PORT)
    parser.client_option("--chunk-size", type=count_arg, default=DEFAULT_CHUNK_SIZE, metavar="N",
                         help=f"character budget of the 'size' strategy (default {DEFAULT_CHUNK_SIZE})")
    parser.client_option("--text", type=text_file, default=SAMPLE_TEXT, metavar="FILE",
                         help="stream this UTF-8 file instead of the built-in text")
    parser.client_option("--report", type=output_file(), metavar="FILE.json", help="write every figure as JSON")
    parser.client_option("--plot", type=chunking_report.png_file, metavar="FILE.png",
                         help="draw the comparison as a PNG (needs matplotlib)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = command_line().parse_args(argv)
    make_agent = (lambda: ChunkingAgent(0, 0)) if args.fast else ChunkingAgent
    return run_demo(args, make_agent, lambda url: compare(url, args.text, args.chunk_size, args.report, args.plot),
                    own_agent_only=True)


if __name__ == "__main__":
    sys.exit(main())
