"""Advanced streaming: how the way you cut a response changes what the reader sees.

The same text is streamed once per chunking strategy (paragraph, sentence, fixed size,
word, token). The agent simulates a model that writes a few hundred characters per second:
a chunk can only leave once all of its characters exist, so coarse chunks mean a long wait
for the first text and long silences after it; fine chunks mean text appears early and often.

You will see, in order:
  1. a timeline per strategy: when each chunk reached the client;
  2. server vs client timings for each stream: what sending the request, starting the agent
     and the wire add;
  3. buffering: a client-side display buffer that never shows half a word, and a server-side
     bounded buffer that pauses a fast producer instead of piling chunks up in memory;
  4. a summary table, one row per strategy, with a verdict: every strategy must deliver the
     sent text exactly, in the expected number of chunks, or the script exits 1.

    python 02_advanced_streaming.py                  # about 10 s; --fast takes about 1 s
    python 02_advanced_streaming.py --report run.json --plot run.png
    python 02_advanced_streaming.py --serve          # only the agent, on http://127.0.0.1:8102

Copy what you need: the chunkers (by_paragraph ... by_token), StreamMetrics,
DisplayBuffer, BackpressureBuffer with buffered().
"""
import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import re
import statistics
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Optional

from tqdm import tqdm

from streaming_kit import StreamingAgent, StrictStreamingClient, chunk_text, message_text, text_message
from examples_support import demo_parser, paint, print_table, run_demo
from python_a2a import Message

DEFAULT_PORT = 8102
DEFAULT_CHUNK_SIZE = 40
SAMPLE_TEXT = (
    "Streaming lets a reader start before the writer has finished. How you cut the text decides "
    "what the reader experiences: when the first words appear, how long the silences between "
    "updates last, and whether a word is ever shown half-written.\n\n"
    "Big chunks are cheap to send but slow to start. A paragraph-sized chunk cannot leave until "
    "the whole paragraph exists! Small chunks start at once; each one costs a little framing, "
    "and a user interface redraws more often.\n\n"
    "Text is not only ASCII: a naïve café menu, an emoji like 👩‍💻, a combining accent in "
    "“cafe\u0301”, or a line of Chinese such as 流式传输让人更早看到答案。 must all arrive "
    "byte for byte.\n\n"
    "Measure on both sides of the wire. The server knows when it yielded a chunk; the client "
    "knows when it arrived. The difference is what the transport adds."
)


# ------------------------------------------------------------------ 1. chunking strategies
# Every chunker returns non-empty pieces that join back to the input exactly ("".join(pieces)
# == text), for any text: unicode, CRLF, runs of whitespace, or "" (which gives []).

PARAGRAPH_BREAK = re.compile(r"\r?\n(?:[ \t]*\r?\n)+")
SENTENCE_END = re.compile(r"[.!?…]+['\"’”)\]]*\s+|[。！？]+\s*|" + PARAGRAPH_BREAK.pattern)
WORD = re.compile(r"\s+|\S+\s*")  # leading whitespace, then each word with the spaces after it
# Roughly what a language model emits: up to 4 letters (with the space before them), up to
# 3 digits, one punctuation mark, or whitespace.
TOKEN = re.compile(r" ?[^\W\d_]{1,4}| ?\d{1,3}| ?(?:[^\w\s]|_)|\s+(?!\S)|\s+")


def _cut_after(pattern: re.Pattern, text: str) -> list[str]:
    """Split text just after every match of pattern."""
    pieces, start = [], 0
    for match in pattern.finditer(text):
        if match.end() > start:
            pieces.append(text[start:match.end()])
            start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


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


def _is_flag_letter(char: str) -> bool:
    """A regional indicator: two of them make one flag (🇫 + 🇷 = 🇫🇷)."""
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _can_cut(text: str, i: int) -> bool:
    """False if text[i] belongs to the character before it: a combining mark, an emoji joiner,
    modifier or tag (🏴 + tags = the flag of England), the second letter of a flag, the LF of a
    CRLF. Python strings hold code points, so a cut never splits a UTF-8 byte sequence; this
    keeps what the reader sees as one character together too (the common cases, not every
    rule of Unicode's grapheme clusters)."""
    before, after = text[i - 1], text[i]
    if (before, after) == ("\r", "\n") or before == "\u200d":
        return False
    if _is_flag_letter(before) and _is_flag_letter(after):
        letters_before = 1
        while letters_before < i and _is_flag_letter(text[i - 1 - letters_before]):
            letters_before += 1
        return letters_before % 2 == 0  # 🇫🇷|🇩🇪: cut between pairs, never inside one
    return not (unicodedata.category(after).startswith("M") or after == "\u200d"
                or "\ufe00" <= after <= "\ufe0f" or "\U0001f3fb" <= after <= "\U0001f3ff"
                or "\U000e0020" <= after <= "\U000e007f")


def _size_cut(text: str, start: int, budget: int) -> int:
    """Where the chunk starting at `start` ends: at most `budget` characters, preferably at a word start."""
    limit = start + budget
    if limit >= len(text):
        return len(text)
    latest_safe = None
    for i in range(limit, start, -1):  # from the budget backwards to the last word start
        if _can_cut(text, i):
            if text[i - 1].isspace() and not text[i].isspace():
                return i
            latest_safe = latest_safe or i
    if latest_safe:  # no word start within the budget: cut the word, but not a character
        return latest_safe
    # One "character" longer than the budget (say, a long emoji sequence): keep it whole.
    return next((i for i in range(limit + 1, len(text)) if _can_cut(text, i)), len(text))


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


STRATEGIES: dict[str, Callable[[str], list[str]]] = {
    "paragraph": by_paragraph, "sentence": by_sentence, "size": by_size, "word": by_word, "token": by_token}


def chunker(strategy: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Callable[[str], list[str]]:
    """The chunking function for a strategy name (the size strategy uses chunk_size)."""
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if strategy == "size":
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        return functools.partial(by_size, budget=chunk_size)
    return STRATEGIES[strategy]


# ------------------------------------------------------------------ 2. metrics
def percentile(values: list[float], q: int) -> Optional[float]:
    """The q-th percentile (1-99), interpolating between ranks; None when there are no values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclasses.dataclass
class StreamMetrics:
    """Timings of one stream on one side of the wire: record each chunk, then read the figures.

    Times are seconds since the stream started (the request was sent, or the agent began).
    Lift it into your own agent or client; to_dict() gives JSON-ready figures.
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
        """The stream ended now."""
        self.total = time.perf_counter() - self.clock_start

    @property
    def first_chunk(self) -> Optional[float]:
        return self.times[0] if self.times else None

    @property
    def gaps(self) -> list[float]:
        """Silences between consecutive chunks."""
        return [later - earlier for earlier, later in zip(self.times, self.times[1:])]

    @property
    def duration(self) -> float:
        return self.total if self.total is not None else (self.times[-1] if self.times else 0.0)

    def rate(self, amount: float) -> Optional[float]:
        """amount per second of the whole stream."""
        return amount / self.duration if self.duration > 0 else None

    def to_dict(self) -> dict[str, Any]:
        gaps = self.gaps
        return {
            "chunks": len(self.sizes), "chars": sum(self.sizes),
            "first_chunk_s": self.first_chunk, "total_s": self.duration,
            "gap_mean_s": statistics.fmean(gaps) if gaps else None, "gap_p50_s": percentile(gaps, 50),
            "gap_p95_s": percentile(gaps, 95), "gap_max_s": max(gaps, default=None),
            "chunks_per_s": self.rate(len(self.sizes)), "chars_per_s": self.rate(sum(self.sizes)),
            "size_min": min(self.sizes, default=None), "size_p50": percentile(self.sizes, 50),
            "size_max": max(self.sizes, default=None),
        }


# ------------------------------------------------------------------ 3. buffering
class DisplayBuffer:
    """Client side: re-chunks arriving text into whole words (or lines) for display.

    feed() returns the text that is safe to show now; the unfinished word waits for the next
    piece. A run longer than max_hold characters with no break (a URL, Chinese text) is shown
    anyway, so the screen never stalls.
    """

    def __init__(self, unit: str = "word", max_hold: int = 80):
        if unit not in ("word", "line"):
            raise ValueError(f"unit must be 'word' or 'line', got {unit!r}")
        self.unit, self.max_hold, self.pending = unit, max_hold, ""
        self.forced_releases = 0  # times a run longer than max_hold was shown unbroken

    def feed(self, text: str) -> str:
        self.pending += text
        cut = self._last_break()
        if cut == 0 and len(self.pending) > self.max_hold:
            cut = len(self.pending)
            self.forced_releases += 1
        ready, self.pending = self.pending[:cut], self.pending[cut:]
        return ready

    def flush(self) -> str:
        """Whatever is left once the stream has ended."""
        ready, self.pending = self.pending, ""
        return ready

    def _last_break(self) -> int:
        if self.unit == "line":
            return self.pending.rfind("\n") + 1
        return re.search(r"\S*\Z", self.pending).start()  # just after the last whitespace


class BackpressureBuffer:
    """Server side: a bounded queue between a producer that pushes and a stream that pulls.

    put() waits while the buffer is full, so a fast producer is paused instead of piling up
    chunks in memory; nothing is ever dropped. Iterate over it to take items in order.
    """

    _END = object()

    def __init__(self, size: int = 8):
        self.size = size
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=size)
        self.pauses = 0      # times the producer found the buffer full and had to wait
        self.high_water = 0  # most items ever held at once
        self.produced = self.taken = 0

    async def put(self, item: Any) -> None:
        if self._queue.full():
            self.pauses += 1
        await self._queue.put((item, None))
        self.produced += 1
        self.high_water = max(self.high_water, self._queue.qsize())

    async def close(self, error: Optional[BaseException] = None) -> None:
        """No more items; the reader sees `error` (if any) after the items before it."""
        await self._queue.put((self._END, error))

    async def __aiter__(self) -> AsyncIterator[Any]:
        while True:
            item, error = await self._queue.get()
            if item is self._END:
                if error is not None:
                    raise error
                return
            self.taken += 1
            yield item


async def buffered(source: AsyncIterator[Any], buffer: BackpressureBuffer) -> AsyncIterator[Any]:
    """Run `source` in its own task, filling `buffer`; yield from the buffer.

    The producer task is cancelled, and `source` closed, when this generator is closed (the
    client hung up), so neither outlives the stream. Use it inside `contextlib.aclosing(...)`.
    """
    async def produce() -> None:
        try:
            async with contextlib.aclosing(source):  # an interrupted `async for` would leave it open
                async for item in source:
                    await buffer.put(item)
        except Exception as exc:  # hand the error to the reader, in order
            await buffer.close(exc)
        else:
            await buffer.close()

    producer = asyncio.ensure_future(produce())
    try:
        async for item in buffer:
            yield item
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer


# ------------------------------------------------------------------ 4. the agent
class ChunkingAgent(StreamingAgent):
    """Streams your message back, cut by the strategy named in its metadata (default: word).

    Metadata: {"strategy": "paragraph|sentence|size|word|token", "chunk_size": 40,
    "backpressure": false}. Each chunk is {"text": ..., "yielded_at": seconds since the agent
    started}, so the client can compare server and client timings.
    """

    def __init__(self, chars_per_second: float = 500.0, paced_chunks_per_second: float = 150.0,
                 buffer_size: int = 8):
        super().__init__(name="Chunking agent")
        self.chars_per_second = chars_per_second
        self.paced_chunks_per_second = paced_chunks_per_second
        self.buffer_size = buffer_size

    async def stream_response(self, message: Message) -> AsyncIterator[dict]:
        options = getattr(message.metadata, "custom_fields", None) or {}
        pieces = chunker(options.get("strategy", "word"), options.get("chunk_size", DEFAULT_CHUNK_SIZE))(
            message_text(message))
        started = time.perf_counter()
        if options.get("backpressure"):
            stream = self._paced_from_buffer(pieces)
        else:
            stream = self._as_written(pieces)
        async with contextlib.aclosing(stream):
            async for piece, extra in stream:
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
        """The fast producer fills a bounded buffer; the stream takes from it at a steady pace."""
        buffer = BackpressureBuffer(self.buffer_size)
        async with contextlib.aclosing(buffered(self._burst(pieces), buffer)) as stream:
            async for piece in stream:
                if self.paced_chunks_per_second:
                    await asyncio.sleep(1 / self.paced_chunks_per_second)
                yield piece, {"buffer": {"size": buffer.size, "high_water": buffer.high_water,
                                         "pauses": buffer.pauses}}


# ------------------------------------------------------------------ 5. the client
@dataclasses.dataclass
class Run:
    """One stream as the client saw it, plus what it should have been."""

    strategy: str
    sent: str
    expected_chunks: int
    pieces: list[str] = dataclasses.field(default_factory=list)
    indices: list[int] = dataclasses.field(default_factory=list)
    client: StreamMetrics = dataclasses.field(default_factory=StreamMetrics)  # clock starts now
    server: StreamMetrics = dataclasses.field(default_factory=StreamMetrics)
    display_updates: int = 0  # redraws a word-buffered UI would make
    shown_chars: int = 0
    half_words_shown: int = 0
    buffer: Optional[dict] = None  # the server's BackpressureBuffer figures, if it used one

    @property
    def received(self) -> str:
        return "".join(self.pieces)

    def problems(self) -> list[str]:
        """Why this stream is wrong; empty when it is right."""
        found = []
        if self.received != self.sent:
            found.append("received text differs from sent text")
        if len(self.pieces) != self.expected_chunks:
            found.append(f"{len(self.pieces)} of {self.expected_chunks} chunks")
        if self.indices != list(range(len(self.indices))):
            found.append("chunk indices out of order")
        if self.half_words_shown:
            found.append(f"display showed {self.half_words_shown} half words")
        return found


def request_for(text: str, strategy: str, chunk_size: int, backpressure: bool = False) -> Message:
    """A message carrying the text, with the chunking options in its metadata."""
    return text_message(text, metadata={"strategy": strategy, "chunk_size": chunk_size,
                                        "backpressure": backpressure})


def mid_word(text: str, position: int) -> bool:
    """True if a cut at `position` falls inside a word of `text`."""
    return 0 < position < len(text) and not text[position - 1].isspace() and not text[position].isspace()


async def stream_once(client: StrictStreamingClient, text: str, strategy: str, chunk_size: int,
                      backpressure: bool = False) -> Run:
    """Stream `text` with one strategy; measure arrivals and what a word-buffered UI would show."""
    run = Run(strategy, text, expected_chunks=len(chunker(strategy, chunk_size)(text)))
    display = DisplayBuffer("word")
    async for chunk in client.stream_response(request_for(text, strategy, chunk_size, backpressure)):
        piece = chunk_text(chunk)
        run.client.record(piece)
        run.pieces.append(piece)
        run.indices.append(chunk.get("index"))
        content = chunk.get("content")
        if isinstance(content, dict) and "yielded_at" in content:  # the server's own clock
            run.server.record(piece, at=content["yielded_at"])
            run.buffer = content.get("buffer", run.buffer)
        draw(run, display, piece)
    run.client.finish()
    if display.flush():
        run.display_updates += 1
    return run


def draw(run: Run, display: DisplayBuffer, piece: str) -> None:
    """What a word-buffered UI would draw for this piece: count the redraw, and any half word."""
    forced_before = display.forced_releases
    ready = display.feed(piece)
    if ready:
        run.shown_chars += len(ready)
        run.display_updates += 1
        if mid_word(run.sent, run.shown_chars) and display.forced_releases == forced_before:
            run.half_words_shown += 1


def timeline(run: Run, span: float, width: int = 50) -> str:
    """One line: '|' where chunks arrived, '-' silence after the first chunk, ' ' before it."""
    columns = [" "] * width
    for at in run.client.times:
        columns[min(width - 1, int(at / span * width))] = "|"
    first = columns.index("|") if "|" in columns else width
    line = "".join(columns[:first]) + "".join("-" if c == " " else c for c in columns[first:])
    return re.sub(r"\|+", lambda m: paint(m.group(), "green"), line)


def ms(seconds: Optional[float]) -> str:
    """A duration for people: milliseconds below a second, seconds above."""
    if seconds is None:
        return "-"
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def show_timelines(runs: list[Run]) -> None:
    span = max(run.client.duration for run in runs) or 1e-9
    print(paint(f"1. When chunks reached the client (one column = {ms(span / 50)}):", "cyan"))
    for run in runs:
        print(f"  {run.strategy:<9} [{timeline(run, span)}] {len(run.pieces)} chunks")
    print()


def show_server_vs_client(runs: list[Run]) -> None:
    print(paint("2. Server (yielded) vs client (received)", "cyan"))
    print("  overhead = 1st received - 1st yielded: the client's clock starts before it sends the request and\n"
          "  the server's when the agent starts, so this is sending the request + starting the agent + carrying\n"
          "  the first chunk back, not the wire alone. Gaps and end times show what the wire adds per chunk.")
    rows = []
    for run in runs:
        server, client = run.server.to_dict(), run.client.to_dict()
        overhead = (None if server["first_chunk_s"] is None or client["first_chunk_s"] is None
                    else client["first_chunk_s"] - server["first_chunk_s"])
        rows.append([run.strategy, ms(server["first_chunk_s"]), ms(client["first_chunk_s"]), ms(overhead),
                     ms(server["gap_p95_s"]), ms(client["gap_p95_s"]), ms(server["total_s"]), ms(client["total_s"])])
    print_table(["strategy", "1st yielded", "1st received", "overhead", "gap p95 srv", "gap p95 cli",
                 "end srv", "end cli"], rows)
    print()


def show_buffering(token_run: Run, paced: Run) -> None:
    print(paint("3. Buffering", "cyan"))
    cut_words = sum(mid_word(token_run.sent, end) for end in _ends(token_run.pieces))
    print(f"  client display buffer, token stream: {len(token_run.pieces)} pieces in "
          f"({cut_words} end mid-word), {token_run.display_updates} whole-word updates out, "
          f"{token_run.half_words_shown} half words shown")
    stats = paced.buffer
    if stats is None:  # the figures ride on the chunks: an empty text has none
        print(f"  server bounded buffer: no chunks, nothing to buffer ({len(paced.pieces)} chunks delivered)")
    else:
        print(f"  server bounded buffer, fast producer / paced stream: producer paused {stats['pauses']} times, "
              f"max buffer {stats['high_water']}/{stats['size']}, "
              f"{len(paced.pieces)}/{paced.expected_chunks} chunks delivered")
    print()


def _ends(pieces: list[str]) -> list[int]:
    """Position in the text where each piece ends."""
    ends, position = [], 0
    for piece in pieces:
        position += len(piece)
        ends.append(position)
    return ends


def buffer_problems(paced: Run) -> list[str]:
    stats = paced.buffer
    if not stats and paced.expected_chunks:  # the figures ride on the chunks: no chunks, no figures
        return ["the server sent no buffer figures"]
    if not stats:
        return paced.problems()
    if stats["high_water"] > stats["size"]:
        return [f"buffer held {stats['high_water']} items, over its bound {stats['size']}"]
    return paced.problems()


def summary_rows(runs: list[Run]) -> list[list[Any]]:
    rows = []
    for run in runs:
        m = run.client.to_dict()
        verdict = "; ".join(run.problems()) or "ok"
        rows.append([run.strategy, m["chunks"], m["chars"], ms(m["first_chunk_s"]), ms(m["gap_p50_s"]),
                     ms(m["gap_p95_s"]), ms(m["gap_max_s"]), f"{m['chars_per_s'] or 0:,.0f}", ms(m["total_s"]),
                     f"{m['size_p50']:.0f}/{m['size_max']}" if m["chunks"] else "-", run.display_updates, verdict])
    return rows


def report(runs: list[Run], paced: Run, settings: dict) -> dict:
    """Every figure of the run, JSON-ready."""
    def entry(run: Run) -> dict:
        return {"ok": not run.problems(), "problems": run.problems(), "expected_chunks": run.expected_chunks,
                "display_updates": run.display_updates, "half_words_shown": run.half_words_shown,
                "client": run.client.to_dict(), "server": run.server.to_dict()}
    return {"settings": settings, "strategies": {run.strategy: entry(run) for run in runs},
            "backpressure": {**entry(paced), "buffer": paced.buffer, "problems": buffer_problems(paced)}}


def plot(runs: list[Run], path: Path) -> None:
    """Draw the timelines and the gap distributions to a PNG (needs matplotlib)."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no window
    from matplotlib import pyplot

    figure, (arrivals, gaps) = pyplot.subplots(1, 2, figsize=(12, 4))
    names = [run.strategy for run in runs]
    arrivals.eventplot([[t * 1000 for t in run.client.times] for run in runs], lineoffsets=range(len(runs)),
                    linelengths=0.8)
    arrivals.set(yticks=range(len(runs)), yticklabels=names, xlabel="ms since request", title="chunk arrivals")
    gaps.boxplot([[g * 1000 for g in run.client.gaps] or [0] for run in runs], tick_labels=names)
    gaps.set(ylabel="ms", title="gaps between chunks")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def matplotlib_missing() -> Optional[str]:
    """Why --plot cannot work here, or None if it can."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "--plot needs matplotlib, which is not installed: pip install matplotlib"
    return None


async def compare(url: str, text: str, chunk_size: int, report_path: Optional[Path] = None,
                  plot_path: Optional[Path] = None) -> int:
    """Stream the text once per strategy, once more through the bounded buffer; show and check it all."""
    client = StrictStreamingClient(url, timeout=30)
    print(f"Streaming {len(text)} characters from {url}, once per strategy.\n")
    runs = [await stream_once(client, text, name, chunk_size)
            for name in tqdm(STRATEGIES, desc="strategies", disable=None, leave=False)]
    paced = await stream_once(client, text, "word", chunk_size, backpressure=True)
    show_timelines(runs)
    show_server_vs_client(runs)
    show_buffering(runs[list(STRATEGIES).index("token")], paced)
    print(paint("4. Summary (client side)", "cyan"))
    print_table(["strategy", "chunks", "chars", "first chunk", "gap p50", "gap p95", "gap max", "chars/s",
                 "total", "size p50/max", "UI updates", "verdict"], summary_rows(runs))
    figures = report(runs, paced, {"url": url, "chunk_size": chunk_size, "text_chars": len(text)})
    if report_path:
        report_path.write_text(json.dumps(figures, indent=2), encoding="utf-8")
        print(f"\nFigures written to {report_path}")
    if plot_path:
        plot(runs, plot_path)
        print(f"Chart written to {plot_path}")
    failures = [f"{run.strategy}: {p}" for run in runs for p in run.problems()]
    failures += [f"backpressure: {p}" for p in buffer_problems(paced)]
    ok = not failures
    print("\n" + paint("Verdict: every strategy delivered the text exactly" if ok
                       else "Verdict: FAILED - " + "; ".join(failures), "green" if ok else "red"))
    return 0 if ok else 1


def _chunk_size(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of characters, got {value!r}")
    return int(value)


def _output_file(value: str, suffix: Optional[str] = None) -> Path:
    """argparse type for a file the run writes at its end: checked now, not after the whole run."""
    path = Path(value)
    if suffix and path.suffix.lower() != suffix:
        raise argparse.ArgumentTypeError(f"{value!r} must end in {suffix}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is a folder; name a file in it")
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {value!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {value!r}: folder {str(folder)!r} is not writable")
    return path


def main(argv: Optional[list[str]] = None) -> int:
    parser = demo_parser("Chunking strategies, streaming metrics, buffering: one text, every strategy.",
                         DEFAULT_PORT)
    parser.add_argument("--chunk-size", type=_chunk_size, default=DEFAULT_CHUNK_SIZE, metavar="N",
                        help=f"character budget of the 'size' strategy (default {DEFAULT_CHUNK_SIZE})")
    parser.add_argument("--text", type=Path, metavar="FILE", help="stream this UTF-8 file instead of the built-in text")
    parser.add_argument("--report", type=_output_file, metavar="FILE.json", help="write every figure as JSON")
    parser.add_argument("--plot", type=functools.partial(_output_file, suffix=".png"), metavar="FILE.png",
                        help="draw the comparison as a PNG (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.serve and (args.report or args.plot):
        parser.error("--report and --plot describe a client run: drop --serve, or use them with --url")
    if args.plot and matplotlib_missing():
        parser.error(matplotlib_missing())
    text = SAMPLE_TEXT
    if args.text:
        try:
            with args.text.open(encoding="utf-8", newline="") as file:  # newline="": keep CRLF as it is
                text = file.read()
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"cannot read --text {args.text}: {exc}")

    def make_agent() -> ChunkingAgent:
        return ChunkingAgent(0, 0) if args.fast else ChunkingAgent()

    return run_demo(args, make_agent, lambda url: compare(url, text, args.chunk_size, args.report, args.plot))


if __name__ == "__main__":
    sys.exit(main())
