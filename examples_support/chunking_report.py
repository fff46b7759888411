"""What 02_advanced_streaming.py shows and writes about its runs: timelines, tables, JSON, a chart.

Demo output only: the lesson (chunkers, metrics, buffers, agent, client) is in the script.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, Optional

from examples_support import output_file, paint, print_table
from examples_support.text import ends, mid_word

TIMELINE_WIDTH = 50


def ms(seconds: Optional[float]) -> str:
    """A duration for people: milliseconds below a second, seconds above."""
    if seconds is None:
        return "-"
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def half_words_shown(run: Any, sent: str) -> int:
    """Display updates that ended inside a word of the sent text. An over-long run without a break
    (longer than the display's max_hold) is released whole on purpose and does not count."""
    return sum(mid_word(sent, end) and len(update) <= run.display.max_hold
               for update, end in zip(run.shown, ends(run.shown)))


def timeline(run: Any, span: float, width: int = TIMELINE_WIDTH) -> str:
    """One line: '|' where chunks arrived, '-' silence after the first chunk, ' ' before it."""
    columns = [" "] * width
    for at in run.client.times:
        columns[min(width - 1, int(at / span * width))] = "|"
    first = columns.index("|") if "|" in columns else width
    line = "".join(columns[:first]) + "".join("-" if c == " " else c for c in columns[first:])
    return re.sub(r"\|+", lambda m: paint(m.group(), "green"), line)


def show(runs: list, paced: Any, sent: str) -> None:
    """Everything the demo prints before its verdict."""
    span = max(run.client.duration for run in runs) or 1e-9
    print(paint(f"When chunks reached the client (one column = {ms(span / TIMELINE_WIDTH)}):", "cyan"))
    for run in runs:
        print(f"  {run.strategy:<9} [{timeline(run, span)}] {len(run.pieces)} chunks")
    print("\n" + paint("Server (yielded) vs client (received)", "cyan"))
    print("  overhead = 1st received - 1st yielded: the client's clock starts before it sends the request and\n"
          "  the server's when the agent starts, so this is sending the request + starting the agent + carrying\n"
          "  the first chunk back, not the wire alone. Gaps and end times show what the wire adds per chunk.")
    print_table(["strategy", "1st yielded", "1st received", "overhead", "gap p95 srv", "gap p95 cli", "end srv",
                 "end cli"], [_server_vs_client(run) for run in runs])
    print("\n" + paint("Buffering", "cyan"))
    token_run = next(run for run in runs if run.strategy == "token")
    cut_words = sum(mid_word(sent, end) for end in ends(token_run.pieces))
    print(f"  client display buffer, token stream: {len(token_run.pieces)} pieces in ({cut_words} end mid-word), "
          f"{len(token_run.shown)} whole-word updates out, {half_words_shown(token_run, sent)} half words shown")
    if paced.buffer is None:  # the figures ride on the chunks: an empty text has none
        print(f"  server bounded buffer: no chunks, nothing to buffer ({len(paced.pieces)} chunks delivered)")
    else:
        print(f"  server bounded buffer, fast producer / paced stream: producer paused {paced.buffer['pauses']} "
              f"times, max buffer {paced.buffer['high_water']}/{paced.buffer['size']}, "
              f"{len(paced.pieces)} chunks delivered")
    print("\n" + paint("Summary (client side)", "cyan"))
    print_table(["strategy", "chunks", "chars", "first chunk", "gap p50", "gap p95", "gap max", "chars/s", "total",
                 "size p50/max", "UI updates"], [_summary(run) for run in runs])


def _server_vs_client(run: Any) -> list[str]:
    server, client = run.server.to_dict(), run.client.to_dict()
    firsts = (server["first_chunk_s"], client["first_chunk_s"])
    overhead = None if None in firsts else firsts[1] - firsts[0]
    return [run.strategy, ms(firsts[0]), ms(firsts[1]), ms(overhead), ms(server["gap_p95_s"]),
            ms(client["gap_p95_s"]), ms(server["total_s"]), ms(client["total_s"])]


def _summary(run: Any) -> list[Any]:
    m = run.client.to_dict()
    sizes = f"{m['size_p50']:.0f}/{m['size_max']}" if m["chunks"] else "-"
    return [run.strategy, m["chunks"], m["chars"], ms(m["first_chunk_s"]), ms(m["gap_p50_s"]), ms(m["gap_p95_s"]),
            ms(m["gap_max_s"]), f"{m['chars_per_s'] or 0:,.0f}", ms(m["total_s"]), sizes, len(run.shown)]


def report(runs: list, paced: Any, sent: str, problems: dict[str, list[str]], settings: dict) -> dict:
    """Every figure of the run, JSON-ready: one entry per strategy, and one for the buffered stream."""
    def entry(run: Any, name: str) -> dict:
        return {"ok": not problems[name], "problems": problems[name], "chunks": len(run.pieces),
                "display_updates": len(run.shown), "half_words_shown": half_words_shown(run, sent),
                "client": run.client.to_dict(), "server": run.server.to_dict()}
    return {"settings": {**settings, "text_chars": len(sent)},
            "strategies": {run.strategy: entry(run, run.strategy) for run in runs},
            "backpressure": {**entry(paced, "backpressure"), "buffer": paced.buffer}}


def save(runs: list, paced: Any, sent: str, problems: dict, settings: dict,
         report_path: Optional[Path], plot_path: Optional[Path]) -> None:
    """--report and --plot: write the files asked for, and say where they are."""
    if report_path:
        figures = report(runs, paced, sent, problems, settings)
        report_path.write_text(json.dumps(figures, indent=2), encoding="utf-8")
        print(f"\nFigures written to {report_path}")
    if plot_path:
        plot(runs, plot_path)
        print(f"Chart written to {plot_path}")


def plot(runs: list, path: Path) -> None:
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


def png_file(value: str) -> Path:
    """argparse type for --plot: a writable .png path, and matplotlib installed to draw it."""
    path = output_file(".png")(value)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise argparse.ArgumentTypeError("--plot needs matplotlib, which is not installed: "
                                         "pip install matplotlib") from None
    return path
