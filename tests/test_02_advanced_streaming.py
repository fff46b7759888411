"""02_advanced_streaming.py: lossless chunkers, metrics arithmetic, buffers, and the demo as users run it."""
import asyncio
import contextlib
import json
import sys
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from conftest import ROOT, eventually, library_noise, load_script, run_script, serve_script
from examples_support import chunking_report, text as text_rules
from streaming_kit import A2AStreamingError, StrictStreamingClient, serve, text_message

demo = load_script("02_advanced_streaming.py")
SCRIPT = "02_advanced_streaming.py"

# Text that stresses the cutters: CRLF, runs of whitespace, combining marks, emoji joiners
# and modifiers, variation selectors, sentence and CJK punctuation.
TRICKY = st.text(alphabet=st.sampled_from(list("ab é.!?。\r\n\t") + ["\u0301", "\u200d", "👩", "💻", "\ufe0f",
                                                                       "\U0001f3fd", "”", "_", "7", "🇫", "🇷",
                                                                       "🏴", "\U000e0067", "\U000e007f"]))
ANY_TEXT = st.one_of(st.text(), TRICKY)
CHUNKERS = [demo.by_paragraph, demo.by_sentence, demo.by_word, demo.by_token, demo.by_size,
            lambda text: demo.by_size(text, 1), lambda text: demo.by_size(text, 7)]


# ---------------------------------------------------------------- chunkers
@pytest.mark.parametrize("cut", CHUNKERS, ids=["paragraph", "sentence", "word", "token", "size40", "size1", "size7"])
@settings(max_examples=150, deadline=None)
@given(text=ANY_TEXT)
def test_every_chunker_is_lossless(cut, text):
    pieces = cut(text)
    assert "".join(pieces) == text
    assert all(pieces), "no empty chunks"


@settings(max_examples=150, deadline=None)
@given(text=ANY_TEXT, budget=st.integers(1, 12))
def test_size_chunks_never_cut_inside_a_character(text, budget):
    ends = text_rules.ends(demo.by_size(text, budget))
    assert all(text_rules.can_cut(text, end) for end in ends[:-1])


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet="abc \t\n.,", max_size=200), budget=st.integers(1, 12))
def test_size_chunks_keep_to_their_budget(text, budget):
    assert all(len(piece) <= budget for piece in demo.by_size(text, budget))


@settings(max_examples=100, deadline=None)
@given(words=st.lists(st.text(alphabet="abcdé", min_size=1, max_size=9), min_size=1, max_size=30))
def test_size_chunks_do_not_split_words_that_fit(words):
    text = " ".join(words)
    assert not any(text_rules.mid_word(text, end) for end in text_rules.ends(demo.by_size(text, 10)))


def test_size_chunks_keep_flags_and_tag_sequences_whole():
    france_germany = "🇫🇷🇩🇪"
    assert demo.by_size(france_germany, 1) == ["🇫🇷", "🇩🇪"]  # never 🇫 | 🇷🇩 | 🇪
    england = "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
    assert demo.by_size(england + "ab", 2) == [england, "ab"]


def test_chunkers_on_known_text():
    text = "One. Two!\r\n\r\nThree? 四。五"
    assert demo.by_paragraph(text) == ["One. Two!\r\n\r\n", "Three? 四。五"]
    assert demo.by_sentence(text) == ["One. ", "Two!\r\n\r\n", "Three? ", "四。", "五"]
    assert demo.by_word("  hi  there ") == ["  ", "hi  ", "there "]
    assert demo.by_token(" streaming 2024!") == [" stre", "amin", "g", " 202", "4", "!"]
    assert demo.by_size("cafe\u0301 bar", 6) == ["cafe\u0301 ", "bar"]
    assert demo.by_size("cafe\u0301 bar", 4) == ["caf", "e\u0301 ", "bar"]  # the accent stays with its e
    assert demo.by_size("ab 👩\u200d💻 c", 4) == ["ab ", "👩\u200d💻 ", "c"]
    assert all(cut("") == [] for cut in CHUNKERS)


def test_chunker_rejects_bad_options():
    with pytest.raises(ValueError, match="unknown strategy 'lines'"):
        demo.chunker("lines")
    with pytest.raises(ValueError, match="positive integer"):
        demo.chunker("size", 0)


# ---------------------------------------------------------------- metrics
def test_metrics_arithmetic_on_hand_made_timings():
    metrics = demo.StreamMetrics(times=[0.1, 0.2, 0.4, 0.8], sizes=[1, 2, 3, 4], total=1.0)
    figures = metrics.to_dict()
    assert metrics.gaps == pytest.approx([0.1, 0.2, 0.4])
    assert figures["first_chunk_s"] == 0.1
    assert figures["gap_mean_s"] == pytest.approx(0.7 / 3)
    assert figures["gap_p50_s"] == pytest.approx(0.2)
    assert figures["gap_p95_s"] == pytest.approx(0.38)  # 0.2 + 0.9 * (0.4 - 0.2)
    assert figures["gap_max_s"] == pytest.approx(0.4)
    assert figures["chunks_per_s"] == pytest.approx(4.0)
    assert figures["chars_per_s"] == pytest.approx(10.0)
    assert (figures["chunks"], figures["chars"], figures["total_s"]) == (4, 10, 1.0)
    assert (figures["size_min"], figures["size_p50"], figures["size_max"]) == (1, 2.5, 4)
    json.dumps(figures)


def test_metrics_of_short_streams():
    empty = demo.StreamMetrics().to_dict()
    assert empty["chunks"] == 0 and empty["first_chunk_s"] is None and empty["gap_p95_s"] is None
    one = demo.StreamMetrics(times=[0.5], sizes=[3])
    assert one.to_dict()["total_s"] == 0.5 and one.to_dict()["chars_per_s"] == pytest.approx(6.0)
    assert one.gaps == [] and one.to_dict()["gap_max_s"] is None


def test_metrics_record_against_their_own_clock():
    metrics = demo.StreamMetrics(clock_start=100.0)
    metrics.record("abc", at=0.25)
    metrics.record("de")
    assert metrics.times[0] == 0.25 and metrics.times[1] > 0.25 and metrics.sizes == [3, 2]


# ---------------------------------------------------------------- display buffer (client side)
@settings(max_examples=150, deadline=None)
@given(text=ANY_TEXT, cuts=st.lists(st.integers(0, 400)), unit=st.sampled_from(["word", "line"]))
def test_display_buffer_is_lossless_and_shows_whole_units(text, cuts, unit):
    pieces = [text[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(text)])]
    display = demo.DisplayBuffer(unit, max_hold=10_000)
    shown = [display.feed(piece) for piece in pieces]
    assert "".join(shown) + display.flush() == text
    boundary = str.isspace if unit == "word" else (lambda c: c == "\n")
    assert all(boundary(update[-1]) for update in shown if update)


class ShowsAtOnce(demo.DisplayBuffer):
    """The defect the half-word count exists for: no buffering at all."""

    def _last_break(self):
        return len(self.pending)


@pytest.mark.parametrize("display, half_words", [(demo.DisplayBuffer, 0), (ShowsAtOnce, 2)])
def test_half_word_count_catches_a_display_that_shows_half_a_word(display, half_words):
    run = demo.Run("token", display=display())
    run.shown = [update for piece in demo.by_token("streaming text") if (update := run.display.feed(piece))]
    run.shown.append(run.display.flush())
    assert "".join(run.shown) == "streaming text"
    assert chunking_report.half_words_shown(run, "streaming text") == half_words  # "stre", "amin" if broken


def test_display_buffer_releases_an_overlong_run():
    display = demo.DisplayBuffer("word", max_hold=5)
    assert display.feed("abc") == ""
    assert display.feed("defg") == "abcdefg"


# ---------------------------------------------------------------- backpressure buffer (server side)
async def _fast_producer_slow_consumer(count: int, size: int) -> tuple[list[int], list[int], demo.BackpressureBuffer]:
    buffer = demo.BackpressureBuffer(size)

    async def numbers():
        for n in range(count):
            yield n

    received, produced = [], []

    async def counted():
        async for n in numbers():
            produced.append(n)
            yield n

    received, ahead = [], []
    async for item in demo.buffered(counted(), buffer):
        ahead.append(len(produced) - len(received))  # made but not yet taken, this one included
        received.append(item)
        for _ in range(3):  # a slow consumer: the producer gets the loop in between
            await asyncio.sleep(0)
    return received, ahead, buffer


@pytest.mark.timeout(20)
def test_slow_consumer_keeps_the_buffer_at_its_bound_and_loses_nothing():
    received, ahead, buffer = asyncio.run(_fast_producer_slow_consumer(500, 8))
    assert received == list(range(500))
    # full, never over: at most 8 queued + the one the producer holds while it waits for room
    assert max(ahead) <= 8 + 1 and buffer.high_water == 8
    assert buffer.pauses > 400  # the producer spent the run waiting for room


@pytest.mark.timeout(20)
def test_producer_error_arrives_after_its_items():
    async def failing():
        yield "a"
        yield "b"
        raise RuntimeError("model went away")

    async def collect(got):
        async for item in demo.buffered(failing(), demo.BackpressureBuffer(1)):
            got.append(item)

    got = []
    with pytest.raises(RuntimeError, match="model went away"):
        asyncio.run(collect(got))
    assert got == ["a", "b"]


@pytest.mark.timeout(20)
def test_closing_the_reader_stops_the_producer():
    state = {"closed": False}

    async def endless():
        try:
            while True:
                yield "x"
        finally:
            state["closed"] = True

    async def take_three():
        stream = demo.buffered(endless(), demo.BackpressureBuffer(2))
        got = [await stream.__anext__() for _ in range(3)]
        await stream.aclose()
        return got, state["closed"]  # asked before asyncio.run's own clean-up cancels leftovers

    assert asyncio.run(take_three()) == (["x"] * 3, True)


# ---------------------------------------------------------------- the agent over HTTP
async def _stream(url: str, strategy: str, text: str, backpressure: bool = False) -> "demo.Run":
    return await demo.stream_once(StrictStreamingClient(url, timeout=20), text, strategy, 6, backpressure)


def _exact(run: "demo.Run", text: str) -> bool:
    return run.received == text and len(run.pieces) == len(demo.chunker(run.strategy, 6)(text))


@pytest.mark.timeout(60)
def test_every_strategy_arrives_exactly_over_http():
    text = "Héllo  wörld.\r\nSecond line! 👩\u200d💻 done\n\nNew paragraph with cafe\u0301."
    with serve(demo.ChunkingAgent(0, 0, buffer_size=3)) as url:
        runs = [asyncio.run(_stream(url, name, text)) for name in demo.STRATEGIES]
        paced = asyncio.run(_stream(url, "token", text, backpressure=True))
    for run in runs + [paced]:
        assert _exact(run, text) and demo.problems(run, text, 6) == [], run.strategy
        assert len(run.server.times) == len(run.pieces)  # every chunk carried its server time
        assert chunking_report.half_words_shown(run, text) == 0
    # the producer outruns the wire, so the buffer fills to its bound and the producer waits
    assert paced.buffer["size"] == 3 and paced.buffer["high_water"] == 3 and paced.buffer["pauses"] > 0


@pytest.mark.timeout(60)
def test_bad_strategy_reaches_the_client_as_an_error():
    async def ask(url):
        await demo.stream_once(StrictStreamingClient(url, timeout=20), "hi", "lines")
    with serve(demo.ChunkingAgent(0, 0)) as url:
        with pytest.raises(A2AStreamingError, match="unknown strategy 'lines'"):
            asyncio.run(ask(url))


class RecordsProducerEnd(demo.ChunkingAgent):
    """Sets `producer_closed` when its buffered producer is shut down."""

    producer_closed = threading.Event()

    async def _burst(self, pieces):
        try:
            async for piece in super()._burst(pieces):
                yield piece
        finally:
            self.producer_closed.set()


@pytest.mark.timeout(60)
def test_client_hang_up_stops_the_buffered_producer():
    agent = RecordsProducerEnd(0, paced_chunks_per_second=20, buffer_size=4)

    async def read_two_then_leave(url):
        client = StrictStreamingClient(url, timeout=20)
        request = text_message("word " * 400, metadata={"strategy": "word", "backpressure": True})
        async with contextlib.aclosing(client.stream_response(request)) as chunks:
            return [await chunks.__anext__() for _ in range(2)]  # then leave: aclosing hangs up

    with serve(agent) as url:
        assert len(asyncio.run(read_two_then_leave(url))) == 2
        assert agent.producer_closed.wait(10), "the producer kept running after the client left"
        assert eventually(lambda: agent.live_streams == 0, seconds=10)


class DropsLastChunk(demo.ChunkingAgent):
    """A broken agent: loses the tail of every stream, as python-a2a's own /stream does (§1)."""

    async def stream_response(self, message):
        chunks = [chunk async for chunk in super().stream_response(message)]
        for chunk in chunks[:-1]:
            yield chunk


@pytest.mark.timeout(60)
def test_verification_fails_when_a_chunk_is_lost(capsys):
    with serve(DropsLastChunk(0, 0)) as url:
        code = asyncio.run(demo.compare(url, demo.SAMPLE_TEXT, 40))
    verdict = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 1
    assert verdict.startswith("Verdict: FAILED - paragraph: received text differs from sent text, 3 of 4 chunks;")


def test_problems_name_each_defect():
    run = demo.Run("word", pieces=["ab ", "c"])
    assert demo.problems(run, "ab cd", 6) == ["received text differs from sent text"]
    assert demo.problems(demo.Run("word", pieces=["ab cd"]), "ab cd", 6) == ["1 of 2 chunks"]


# ---------------------------------------------------------------- the script as users run it
@pytest.mark.timeout(120)
def test_fast_run_prints_the_comparison_and_passes(tmp_path):
    report_file = tmp_path / "figures.json"
    result = run_script(SCRIPT, "--fast", "--report", str(report_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert library_noise(result.stdout + result.stderr) == []
    assert result.stderr == ""
    assert result.stdout.strip().splitlines()[-1] == "Verdict: every strategy delivered the text exactly"
    figures = json.loads(report_file.read_text(encoding="utf-8"))
    assert list(figures["strategies"]) == list(demo.STRATEGIES)
    expected = {name: len(demo.chunker(name)(demo.SAMPLE_TEXT)) for name in demo.STRATEGIES}
    for name, entry in figures["strategies"].items():
        assert entry["ok"] and entry["problems"] == [] and entry["half_words_shown"] == 0, name
        assert entry["chunks"] == entry["client"]["chunks"] == entry["server"]["chunks"] == expected[name]
        assert entry["client"]["chars"] == len(demo.SAMPLE_TEXT)
    paced = figures["backpressure"]
    assert paced["ok"] and paced["chunks"] == expected["word"]
    assert paced["buffer"]["size"] == paced["buffer"]["high_water"] == 8 and paced["buffer"]["pauses"] > 0


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--fast", "--plot", "x.png"])
    assert exit_info.value.code == 2
    assert "pip install matplotlib" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_plot_with_matplotlib_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    runs = [demo.Run(name, ["ab"], demo.StreamMetrics(times=[0.01, 0.02], sizes=[1, 1])) for name in demo.STRATEGIES]
    chunking_report.plot(runs, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("args, message", [(["--chunk-size", "0"], "positive whole number"),
                                           (["--text", "/nonexistent/file.txt"], "--text: cannot read"),
                                           (["--url", "localhost:1"], "expected http://"),
                                           (["--serve", "--report", "x.json"], "--report belongs to the client run: drop --serve"),
                                           (["--serve", "--text", str(ROOT / "requirements.txt")], "--text belongs to the client run"),
                                           (["--port", "8102"], "--port goes with --serve"),
                                           (["--report", "/nonexistent/dir/x.json"], "does not exist"),
                                           (["--report", "."], "is a folder"),
                                           (["--plot", "chart.jpg"], "must end in .png")])
def test_bad_arguments_exit_2_with_a_clear_message(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_an_empty_text_file_streams_nothing_and_passes(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    report_file = tmp_path / "figures.json"
    assert demo.main(["--fast", "--text", str(empty), "--report", str(report_file)]) == 0
    figures = json.loads(report_file.read_text(encoding="utf-8"))
    assert all(entry["ok"] and entry["chunks"] == 0 for entry in figures["strategies"].values())
    assert figures["backpressure"]["buffer"] is None  # the figures ride on the chunks: none, no figures


@pytest.mark.timeout(90)
def test_serve_then_url_streams_a_users_own_text(tmp_path):
    text = "Line one.\r\nLine two, with ünïcode.\r\n\r\nThe end"
    text_file = tmp_path / "mine.txt"
    text_file.write_bytes(text.encode("utf-8"))
    with serve_script(SCRIPT, "--fast") as server:
        assert server.name == "Chunking agent" and server.url.startswith("http://127.0.0.1:"), server.url
        result = run_script(SCRIPT, "--url", server.url, "--text", str(text_file))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"Streaming {len(text)} characters" in result.stdout  # CRLF kept: 2 characters each
    assert library_noise(server.stdout + server.stderr) == []


@pytest.mark.timeout(60)
def test_url_of_another_examples_agent_is_refused_in_one_line():
    with serve(load_script("basic_streaming.py").WordStreamer(delay=0)) as url:
        result = run_script(SCRIPT, "--url", url)
    assert (result.returncode, result.stdout) == (1, "")  # it used to print "24 of 4 chunks" in a 611-character line
    line, = result.stderr.splitlines()
    assert f'{url} serves "Basic streaming agent", not "Chunking agent"' in line and len(line) < 160


def test_a_dead_url_is_one_line_saying_cannot_connect():
    with serve(demo.ChunkingAgent(0, 0)) as url:
        pass  # closed again: nothing answers there now
    result = run_script(SCRIPT, "--url", url)
    assert (result.returncode, result.stdout) == (1, "")
    line, = result.stderr.splitlines()
    assert line.startswith(f"error: cannot connect to {url}: is the server running?")
