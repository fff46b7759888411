"""The terminal side of 05_streaming_ui_integration.py: single key presses, a status line under
the streamed text, the scripted session played without a terminal, and the summary (table, the
one verdict, the --report JSON).

Demo output only: the lesson (the session endpoints, the client that follows them) is in the script.
Every function here takes the script's SessionAPI as `api`: start, status, control, follow.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Optional

from tqdm import tqdm

from examples_support import paint, print_table
from streaming_kit import SessionFinished

KEYS = {"p": "pause", "r": "resume", "c": "cancel"}
STATE_COLOURS = {"streaming": "green", "paused": "yellow", "cancelled": "red", "done": "cyan", "error": "red"}
SLOWER = "the answer was over before {key} was pressed; use a slower --pace (0.01 or more) to see {action} act"


class StreamReport:
    """What one followed stream did, and the checks it passed or failed; also draws it in `view`."""

    def __init__(self, name: str, view: Any = None, on_chunk: Callable[[int], None] = lambda index: None):
        self.name, self.view, self.on_chunk = name, view, on_chunk
        self.started, self.first_chunk_at, self.ended_at = time.perf_counter(), None, None
        self.indices: list[int] = []
        self.pieces: list[str] = []
        self.outcome = "?"
        self.checks: list[tuple[str, bool]] = []
        self.notes: list[str] = []  # shown under the table: what was not shown, and why

    # -- what follow() calls
    def chunk(self, index: int, text: str) -> None:
        self.first_chunk_at = self.first_chunk_at or time.perf_counter()
        self.indices.append(index)
        self.pieces.append(text)
        if self.view:
            self.view.chunk(text)
        self.on_chunk(index)

    def state(self, state: str) -> None:
        if self.view:
            self.view.state(state)

    def end(self, state: str, error: Optional[str]) -> None:
        self.outcome, self.ended_at = state, time.perf_counter()
        self.state(state)

    # -- the checks
    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def each_once_in_order(self) -> bool:
        return self.indices == list(range(len(self.indices)))

    def check(self, label: str, ok: bool) -> None:
        self.checks.append((label, bool(ok)))

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(ok for _, ok in self.checks)

    def row(self) -> list[Any]:
        first = f"{self.first_chunk_at - self.started:.2f} s" if self.first_chunk_at else "-"
        total = f"{(self.ended_at or time.perf_counter()) - self.started:.2f} s"
        return [self.name, len(self.indices), len(self.text), first, total, self.outcome,
                "pass" if self.passed else "FAIL"]

    def as_json(self) -> dict:
        return {"name": self.name, "outcome": self.outcome, "indices": self.indices, "text": self.text,
                "checks": dict(self.checks), "passed": self.passed, "notes": self.notes}


# ---------------------------------------------------------------- drawing a stream in a terminal
class TerminalView:
    """Text above a tqdm bar whose label is the state; text appears a line at a time (wrapped to
    the terminal) so the bar stays at the bottom."""

    def __init__(self, total: Optional[int]):
        columns = min(shutil.get_terminal_size().columns, 100)  # honours COLUMNS; 80 if unknown
        self.width, self.line = columns - 2, ""
        self.chars, self.first_at = 0, None
        self.bar = tqdm(total=total, unit="chunk", file=sys.stdout, leave=True, ncols=columns,
                        bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} chunks{postfix}")
        self.state("streaming")

    def state(self, state: str) -> None:
        self.bar.set_description_str(paint(f"[{state}]", STATE_COLOURS.get(state, "white")))

    def chunk(self, text: str) -> None:
        self.first_at = self.first_at or time.perf_counter()
        self.chars += len(text)
        self.line += text
        while "\n" in self.line or len(self.line) > self.width:
            head, self.line = split_line(self.line, self.width)
            tqdm.write(head, file=sys.stdout)
        rate = self.chars / max(time.perf_counter() - self.first_at, 1e-3)
        self.bar.set_postfix_str(f"{rate:.0f} chars/s", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.line.strip():
            tqdm.write(self.line, file=sys.stdout)
        self.bar.close()


def split_line(text: str, width: int) -> tuple[str, str]:
    """The first display line of text (up to a newline or `width`, broken at a space) and the rest."""
    head, newline, rest = text.partition("\n")
    if newline and len(head) <= width:
        return head, rest
    cut = textwrap.wrap(text, width, drop_whitespace=False)[0]
    return cut.rstrip(), text[len(cut):]


class KeyPresses:
    """Single key presses from a terminal, without Enter; the terminal is restored on exit (also Ctrl-C)."""

    def __init__(self, stream=sys.stdin):
        self.fd = stream.fileno()
        self.keys: asyncio.Queue[str] = asyncio.Queue()

    def __enter__(self) -> "KeyPresses":
        import termios
        import tty
        self.saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)  # keys arrive at once; Ctrl-C still interrupts
        asyncio.get_running_loop().add_reader(self.fd, self._read)
        return self

    def _read(self) -> None:
        for key in os.read(self.fd, 32).decode(errors="ignore"):
            self.keys.put_nowait(key.lower())

    def __exit__(self, *exc: Any) -> None:
        import termios
        asyncio.get_running_loop().remove_reader(self.fd)
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def has_terminal() -> bool:
    return os.name == "posix" and sys.stdin.isatty() and sys.stdout.isatty()


async def keys_session(api: Any, prompt: str) -> list[StreamReport]:
    """Stream one answer in the terminal; p / r / c press pause / resume / cancel on the server."""
    print(paint("Keys: p pause · r resume · c cancel · Ctrl-C quit", "cyan"), flush=True)
    session = await api.start(prompt)
    view = TerminalView(session["total"])
    report = StreamReport("terminal (keys)", view)

    async def forward_keys(keys: KeyPresses) -> None:
        while True:
            action = KEYS.get(await keys.keys.get())
            if action:
                with contextlib.suppress(SessionFinished):
                    await api.control(session["id"], action)

    with KeyPresses() as keys:
        forwarding = asyncio.create_task(forward_keys(keys))
        try:
            await api.follow(session["id"], report)
        finally:
            forwarding.cancel()
            view.close()
    report.check("stream ended (done or cancelled)", report.outcome in ("done", "cancelled"))
    report.check("every chunk once, in order", report.each_once_in_order)
    return [report]


# ---------------------------------------------------------------- the scripted session (no terminal)
async def press(api: Any, sid: str, action: str) -> Optional[dict]:
    """Press pause / resume / cancel: the status after it, or None if the stream had already finished
    (a 409; no failure: with --pace 0 the whole answer is out before anyone can press a key)."""
    try:
        return await api.control(sid, action)
    except SessionFinished:
        return None


def too_late(key: str, after: int, status: dict) -> str:
    """The truthful line for a key pressed after the stream had finished."""
    return (f"  {key}  pressed after chunk {after}, but the stream had already finished "
            f"({status['state']}, {status['published']} of {status['total']} chunks): nothing to {KEYS[key]}")


async def scripted_session(api: Any, prompt: str, answer: str, hold: float) -> list[StreamReport]:
    print(paint("Terminal UI, scripted (no terminal: the keys are pressed for you)", "cyan"))
    return [await scripted_pause_resume(api, prompt, answer, hold), await scripted_cancel(api, prompt, answer)]


async def scripted_pause_resume(api: Any, prompt: str, answer: str, hold: float) -> StreamReport:
    """Press p after chunk 2, wait `hold` seconds, press r; the answer must arrive whole, once."""
    session, presses = await api.start(prompt), []
    sid = session["id"]

    async def pause_then_resume() -> None:
        paused = await press(api, sid, "pause")
        if paused is None:
            print(too_late("p", 2, await api.status(sid)))
            report.notes.append(SLOWER.format(key="p", action="pause"))
            return
        seen = len(report.indices)
        print(f"  p  paused after chunk {paused['published'] - 1}; the server holds the agent's generator")
        await asyncio.sleep(hold)  # a person looking away for a moment
        during = [i for i in report.indices[seen:] if i >= paused["published"]]
        still = await api.status(sid)
        print(f"     {hold:.2f} s paused: {len(during)} new chunks arrived; "
              f"agent's next chunk {'held on the server' if still['held'] else 'not ready yet'}")
        report.check("nothing sent while paused", not during and still["published"] == paused["published"])
        resumed = await press(api, sid, "resume")
        print(f"  r  resumed: {resumed['published']} chunks sent so far" if resumed
              else too_late("r", paused["published"] - 1, await api.status(sid)))

    def on_chunk(index: int) -> None:
        if index == 2 and not presses:
            presses.append(asyncio.create_task(pause_then_resume()))

    report = StreamReport("terminal: pause, resume", on_chunk=on_chunk)
    await api.follow(sid, report)
    await asyncio.gather(*presses)
    print(f"     {report.outcome}: {len(report.indices)} chunks, {len(report.text)} characters")
    report.check("pressed p", bool(presses))
    report.check("stream done", report.outcome == "done")
    report.check("whole answer, every chunk once, in order", report.text == answer and report.each_once_in_order)
    return report


async def scripted_cancel(api: Any, prompt: str, answer: str) -> StreamReport:
    """Press c after chunk 3: the server must close the agent's generator and say so."""
    session, presses = await api.start(prompt), []

    def on_chunk(index: int) -> None:
        if index == 3 and not presses:
            presses.append(asyncio.create_task(press(api, session["id"], "cancel")))

    report = StreamReport("terminal: cancel", on_chunk=on_chunk)
    await api.follow(session["id"], report)
    refused = None in await asyncio.gather(*presses)
    status = await api.status(session["id"])
    report.check("pressed c", bool(presses))
    if refused:  # an accepted cancel always ends the stream "cancelled"; a refused one found it over
        print(too_late("c", 3, status))
        report.notes.append(SLOWER.format(key="c", action="cancel"))
        report.check("whole answer, as the stream had finished", report.outcome == "done" and report.text == answer)
        return report
    print(f"  c  cancelled after chunk {status['published'] - 1} of {status['total']}; "
          f"agent's generator closed: {'yes' if status['generator_closed'] else 'NO'}")
    report.check("stream cancelled", report.outcome == "cancelled")
    report.check("agent's generator closed", status["generator_closed"])
    report.check("text so far intact", answer.startswith(report.text) and report.each_once_in_order)
    return report


# ---------------------------------------------------------------- the summary
def finish(reports: list[StreamReport], report_file: Optional[Path], script: str) -> int:
    """The table, notes, the one verdict and the --report file; the exit code."""
    print()
    print_table(["stream", "chunks", "chars", "first chunk", "total", "outcome", "verdict"], [r.row() for r in reports])
    for report in reports:
        for note in report.notes:
            print(paint(f"  note: {report.name}: {note}", "yellow"))
    failed = [f"{r.name}: {label}" for r in reports for label, ok in r.checks if not ok]
    if report_file:
        report_file.write_text(json.dumps({"ok": not failed, "failed": failed,
                                           "streams": [r.as_json() for r in reports]}, indent=2), encoding="utf-8")
    verdict = f"FAILED - {'; '.join(failed)}" if failed else \
        "every chunk arrived once, in order, and every control pressed in time acted on the server"
    print("\n" + paint(f"Verdict: {verdict}", "red" if failed else "green"))
    print(paint(f"Open the web UI: python {script} --serve", "cyan"))
    return 1 if failed else 0
