"""Stream an answer to a person and let them control it: pause, resume, cancel, reconnect.

The controls act on the *server*: each stream is a session that holds the agent's async
generator. Pause holds the generator where it is (nothing is sent, nothing is lost), resume
lets it go on, cancel closes it (its `finally` runs), and a dropped connection that comes
back with `Last-Event-ID: n` gets everything after event n — no gap, no duplicate.

Two front ends use the same session endpoints:
- the terminal: text above a progress bar, keys p (pause) r (resume) c (cancel) when run in
  a terminal; without one, a scripted session presses them for you and reports what happened;
- a web page (static/05_streaming_ui.html) streaming via EventSource, with Pause / Resume /
  Cancel / Restart buttons. Text is inserted as text, never as HTML.
The default run then checks the web endpoints headlessly and ends with a summary table.

    python 05_streaming_ui_integration.py             # terminal UI + web self-check
    python 05_streaming_ui_integration.py --fast      # shorter pace (tests, CI)
    python 05_streaming_ui_integration.py --serve     # open http://127.0.0.1:8105/ui
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Optional

import streaming_kit  # noqa: F401  (before python_a2a: fast import)
import aiohttp
from flask import Response, jsonify, send_from_directory
from tqdm import tqdm

from streaming_kit import (RequestProblem, StreamingAgent, StrictStreamingClient, chunk_text, last_event_id, message_text, text_message)
from examples_support import demo_parser, paint, print_table, run_demo, seconds_arg

DEFAULT_PORT = 8105
PAGE = Path(__file__).resolve().parent / "static" / "05_streaming_ui.html"
PROMPT = "How does this page stream an answer?"
FINAL_STATES = ("done", "cancelled", "error")
KEYS = {"p": "pause", "r": "resume", "c": "cancel"}


# ---------------------------------------------------------------- the server side
class SessionFinished(Exception):
    """A control (pause, resume, cancel) arrived after the stream had already ended."""


class TooManyStreams(Exception):
    """max_live_sessions streams are running already; the page asks the person to cancel one."""


class StreamSession:
    """One stream a person watches: the agent's generator runs here, not inside any request.

    A thread of its own runs the generator and appends each chunk to `chunks`, the log that
    every connection (first or reconnected) reads from. Controls come from request threads.
    """

    def __init__(self, agent: "StreamUIAgent", prompt: str):
        self.id = secrets.token_urlsafe(12)  # unguessable: the id is the only key to the session
        self.agent = agent
        self.prompt = prompt  # only the prompt: nothing of the request that brought it
        self.total = agent.expected_chunks(text_message(prompt))
        self.chunks: list[str] = []
        self.state = "streaming"  # then paused <-> streaming, and finally done | cancelled | error
        self.error: Optional[str] = None
        self.held = False  # the agent's next chunk is ready but held by a pause
        self.generator_closed = False
        self.watchers = 0
        self.last_watched = time.monotonic()
        self.finished_at: Optional[float] = None  # monotonic time it ended: kept for a while, then forgotten
        self.changed = threading.Condition()  # guards all the fields above; notified on any change
        self._cancelling = False  # a cancel was accepted: no chunk is published after it
        self._pulling = True  # still pulling from the agent; after that every control is refused
        self._resumed = asyncio.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None  # these two are made by _run ...
        self._task: Optional[asyncio.Task] = None
        self._ready = threading.Event()  # ... which sets this once they exist
        self._thread = threading.Thread(target=self._run, name=f"session {self.id}", daemon=True)

    def start(self) -> "StreamSession":
        """Start the session's thread; returns once its loop and task exist, so controls can reach them."""
        self._thread.start()
        self._ready.wait()
        return self

    def _run(self) -> None:
        # The loop and the task are made here, in the session's own thread: both copy the context of
        # the thread that makes them, and a request thread's context holds Flask's request (its body
        # too). Made there, they would keep the request alive as long as the session.
        self._loop = asyncio.new_event_loop()
        self._task = self._loop.create_task(self._produce())
        self._ready.set()
        self._loop.run_until_complete(self._task)
        self._loop.close()

    async def _produce(self) -> None:
        """Pull the agent's chunks one by one; hold them while paused; close the generator at the end."""
        watchdog = asyncio.create_task(self._close_when_abandoned())
        agen = self.agent.stream_response(text_message(self.prompt))
        outcome, error = "done", None
        try:
            async for chunk in agen:
                while not self._publish(chunk_text(chunk)):  # paused (or cancelled): the generator waits here
                    self._resumed.clear()
                    await self._resumed.wait()
        except asyncio.CancelledError:
            outcome = "cancelled"
        except Exception as exc:  # the agent failed: the page shows the error, not a short answer
            outcome, error = "error", f"{type(exc).__name__}: {exc}"
        finally:
            outcome, error = self._agent_done(outcome, error)
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)  # let it finish before the loop closes
            try:
                await agen.aclose()  # runs the agent's finally blocks (a no-op if it already finished)
            except Exception as exc:
                outcome, error = "error", f"the agent's cleanup failed: {type(exc).__name__}: {exc}"
            self._finish(outcome, error)

    async def _close_when_abandoned(self) -> None:
        """Cancel the stream when no page has watched it for `abandon_seconds` (tab closed), or
        for `abandon_paused_seconds` while paused: a paused stream nobody watches only holds a slot."""
        agent = self.agent
        while True:
            await asyncio.sleep(min(agent.abandon_seconds, agent.abandon_paused_seconds, 5.0) / 2)
            with self.changed:
                limit = agent.abandon_paused_seconds if self.state == "paused" else agent.abandon_seconds
                abandoned = self.watchers == 0 and self.unwatched_for() > limit
            if abandoned:
                self.cancel(f"nobody watched for {limit:g} s")
                return

    def unwatched_for(self) -> float:
        """Seconds since a connection last watched the stream (0 while one does)."""
        with self.changed:
            return 0.0 if self.watchers else time.monotonic() - self.last_watched

    @property
    def live(self) -> bool:
        """Still holds a slot: not finished, and no cancel is on its way."""
        with self.changed:
            return self.state not in FINAL_STATES and not self._cancelling

    def _publish(self, text: str) -> bool:
        """Append a chunk to the log; False if paused (the caller holds it) or cancelled (the cancel is coming)."""
        with self.changed:
            self.held = self.state == "paused"
            publish = not (self.held or self._cancelling)
            if publish:
                self.chunks.append(text)
            self.changed.notify_all()
            return publish

    def _agent_done(self, outcome: str, error: Optional[str]) -> tuple[str, Optional[str]]:
        """The agent's part is over: controls from now on are refused as "already finished". A cancel
        accepted before this counts even if the agent ended before it could act: what was accepted happened."""
        with self.changed:
            self._pulling = False
            if outcome == "cancelled" or (outcome == "done" and self._cancelling):
                return "cancelled", self.error
            return outcome, error

    def _finish(self, outcome: str, error: Optional[str]) -> None:
        with self.changed:
            self.state, self.error, self.held, self.generator_closed = outcome, error, False, True
            self.finished_at = time.monotonic()
            self.changed.notify_all()

    # -- controls, called from request threads once start() has returned
    def pause(self) -> None:
        self._set_state("paused")

    def resume(self, wait: float = 1.0) -> None:
        """Let the generator go on; returns once a chunk held by the pause is in the log (or after `wait`),
        so the status that follows describes the stream after resuming."""
        with self.changed:
            self._set_state("streaming")
            self._loop.call_soon_threadsafe(self._resumed.set)  # under the lock: the loop is still open
            self.changed.wait_for(lambda: not (self.held and self.state == "streaming"), wait)

    def cancel(self, reason: Optional[str] = None) -> None:
        with self.changed:
            self._refuse_if_finished()
            if not self._cancelling:  # only once: a second cancel would interrupt the cleanup
                self._cancelling, self.error = True, reason
                self._loop.call_soon_threadsafe(self._cancel_task)  # under the lock: the loop is still open

    def _cancel_task(self) -> None:
        """In the session's loop: cancel the task while it pulls from the agent, never during its cleanup."""
        if self._pulling:
            self._task.cancel()

    def _set_state(self, state: str) -> None:
        with self.changed:  # re-entrant: resume() already holds it
            self._refuse_if_finished()
            self.state = state
            self.changed.notify_all()

    def _refuse_if_finished(self) -> None:
        if self.state in FINAL_STATES:
            raise SessionFinished(f"the stream is already {self.state}")
        if not self._pulling:  # the agent has ended; only the cleanup is left
            raise SessionFinished("the stream has already finished")

    def status(self) -> dict:
        with self.changed:
            return {"id": self.id, "state": self.state, "published": len(self.chunks), "total": self.total,
                    "held": self.held, "generator_closed": self.generator_closed, "error": self.error}

    # -- reading, for the SSE view
    @contextlib.contextmanager
    def watched(self):
        """Count a connection as watching (an unwatched stream is cancelled after a while)."""
        with self.changed:
            self.watchers += 1
        try:
            yield
        finally:
            with self.changed:
                self.watchers -= 1
                self.last_watched = time.monotonic()

    def index_after(self, last_id: Optional[int]) -> int:
        """Where a connection starts: 0, or the chunk after Last-Event-ID; RequestProblem(400) for an id never sent.

        The id is checked against the chunks sent *so far*, even while the stream runs: a chunk is in
        the log before any connection sends it, so a real client can only hold an id below that. A
        larger id is not early but wrong (another stream's, or made up); waiting for it to become
        valid would hide the bug and silently skip the chunks in between.
        """
        if last_id is None:
            return 0
        with self.changed:
            sent = len(self.chunks)
        if not 0 <= last_id < sent:
            sent_so_far = f"chunks 0-{sent - 1} have been sent" if sent else "no chunk has been sent yet"
            raise RequestProblem(400, f"Last-Event-ID {last_id} names no chunk of this stream: {sent_so_far}")
        return last_id + 1

    def wait_for_news(self, next_index: int, seen_state: str, timeout: float) -> tuple[list[str], str]:
        """Chunks from next_index on and the current state, once either changes (or after timeout)."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.chunks) > next_index or self.state != seen_state, timeout)
            return self.chunks[next_index:], self.state


def sse(event: str, data: dict, event_id: Optional[int] = None) -> str:
    """One server-sent event; only chunks carry an id, so Last-Event-ID always names a chunk."""
    id_line = f"id: {event_id}\n" if event_id is not None else ""
    return f"event: {event}\n{id_line}data: {json.dumps(data)}\n\n"


class StreamUIAgent(StreamingAgent):
    """A StreamingAgent with session endpoints a UI can pause, resume, cancel and reconnect to.

    The kit's POST /stream keeps working for A2A clients. Added routes:
      GET  /ui                          the web page
      POST /ui/sessions                 {"prompt": "..."} -> {"id", "events", "total"}
      GET  /ui/sessions/<id>            status
      GET  /ui/sessions/<id>/events     SSE: chunk (with id) / state / end events, ": ping" when idle
      POST /ui/sessions/<id>/pause|resume|cancel
    """

    abandon_seconds = 60.0  # a stream nobody watches (tab closed, no reconnect) is cancelled after this
    abandon_paused_seconds = 10.0  # sooner when it is paused: it only holds a slot
    max_live_sessions = 16  # at the cap, the stream unwatched longest gives way to a new one
    keep_finished_seconds = 300.0  # a finished stream can be re-read this long (then 404) ...
    max_finished_sessions = 64  # ... and only the latest this many
    max_prompt_chars = 2000
    retry_ms = 500  # EventSource waits this long before reconnecting

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._sessions: dict[str, StreamSession] = {}
        self._sessions_lock = threading.Lock()

    def expected_chunks(self, message) -> Optional[int]:
        """How many chunks the answer will have, for progress bars (None: unknown)."""
        return None

    def setup_routes(self, app) -> None:
        super().setup_routes(app)  # python-a2a's routes and the kit's /stream
        app.add_url_rule("/ui", "ui_page", self._page_view)
        app.add_url_rule("/ui/sessions", "ui_start", self._start_view, methods=["POST"])
        app.add_url_rule("/ui/sessions/<sid>", "ui_status", self._status_view)
        app.add_url_rule("/ui/sessions/<sid>/events", "ui_events", self._events_view)
        app.add_url_rule("/ui/sessions/<sid>/<action>", "ui_control", self._control_view, methods=["POST"])

    def close_streams(self, reason: str = "server shutting down", refuse_new: bool = False) -> None:
        """End the kit's /stream responses and every UI session (serve() calls this on exit)."""
        super().close_streams(reason, refuse_new)
        with self._sessions_lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            with contextlib.suppress(SessionFinished):
                session.cancel(reason)

    # -- sessions
    def start_session(self, prompt: str) -> StreamSession:
        with self._sessions_lock:  # started before it is listed: close_streams never finds one it cannot cancel
            self._make_room()
            self._forget_old_sessions()
            session = StreamSession(self, prompt).start()
            self._sessions[session.id] = session
        return session

    def _make_room(self) -> None:
        """At the cap, cancel the stream unwatched longest, so nobody can hold every slot with streams
        they do not watch; TooManyStreams only when every live stream has a page watching it."""
        live = [s for s in self._sessions.values() if s.live]
        if len(live) < self.max_live_sessions:
            return
        oldest = max(live, key=StreamSession.unwatched_for)
        if oldest.unwatched_for() == 0:
            raise TooManyStreams(f"{len(live)} streams are live and watched; cancel one first")
        with contextlib.suppress(SessionFinished):  # it ended just now: the slot is free anyway
            oldest.cancel("another stream needed the slot (this one had nobody watching)")

    def _forget_old_sessions(self) -> None:
        """Drop finished sessions past keep_finished_seconds, and all but the latest max_finished_sessions."""
        now = time.monotonic()
        finished = sorted((s for s in self._sessions.values() if s.finished_at is not None),
                          key=lambda s: s.finished_at)
        too_many = len(finished) - self.max_finished_sessions
        for index, session in enumerate(finished):
            if index < too_many or now - session.finished_at > self.keep_finished_seconds:
                del self._sessions[session.id]

    def session(self, sid: str) -> Optional[StreamSession]:
        with self._sessions_lock:
            self._forget_old_sessions()
            return self._sessions.get(sid)

    # -- views
    def _page_view(self):
        response = send_from_directory(PAGE.parent, PAGE.name, mimetype="text/html")
        response.headers["Cache-Control"] = "no-store"
        return response

    def _start_view(self):
        try:  # the kit's reader: 413 past max_body_bytes (a body without a length is cut there too), 400 if not JSON
            body = self._read_json_body()
        except RequestProblem as problem:
            return jsonify({"error": str(problem)}), problem.status
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            return jsonify({"error": 'send a JSON object {"prompt": "your question"}'}), 400
        if len(prompt) > self.max_prompt_chars:
            return jsonify({"error": f"prompt over {self.max_prompt_chars} characters"}), 400
        try:
            session = self.start_session(prompt)
        except TooManyStreams as exc:
            return jsonify({"error": str(exc)}), 429
        return jsonify({**session.status(), "events": f"/ui/sessions/{session.id}/events"}), 201

    def _status_view(self, sid: str):
        session = self.session(sid)
        return jsonify(session.status()) if session else _no_such_session(sid)

    def _control_view(self, sid: str, action: str):
        session = self.session(sid)
        if session is None:
            return _no_such_session(sid)
        if action not in KEYS.values():
            return jsonify({"error": f"unknown action {action!r}: use pause, resume or cancel"}), 404
        try:
            getattr(session, action)()
        except SessionFinished as exc:
            return jsonify({**session.status(), "error": str(exc)}), 409
        return jsonify(session.status())

    def _events_view(self, sid: str):
        session = self.session(sid)
        if session is None:
            return _no_such_session(sid)
        try:  # EventSource sends Last-Event-ID when it reconnects; the kit's parser takes ASCII digits only
            next_index = session.index_after(last_event_id())
        except RequestProblem as problem:
            return jsonify({"error": str(problem)}), problem.status
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Response(self._session_events(session, next_index), mimetype="text/event-stream", headers=headers)

    def _session_events(self, session: StreamSession, next_index: int):
        """Everything after the client's last event: log replay first, then live chunks as they come."""
        yield f"retry: {self.retry_ms}\n\n"
        with session.watched():
            seen_state = None
            while True:
                chunks, state = session.wait_for_news(next_index, seen_state, self.keepalive_seconds)
                for text in chunks:
                    yield sse("chunk", {"index": next_index, "text": text}, event_id=next_index)
                    next_index += 1
                if state in FINAL_STATES:
                    status = session.status()
                    yield sse("end", {"state": state, "chunks": status["published"], "error": status["error"]})
                    return
                if state != seen_state:
                    yield sse("state", {"state": state, "total": session.total})
                    seen_state = state
                elif not chunks:
                    yield ": ping\n\n"  # keeps proxies from closing a quiet (or paused) stream


def _no_such_session(sid: str):
    return jsonify({"error": f"no stream session {sid!r} (finished long ago, or the server restarted)"}), 404


# ---------------------------------------------------------------- the demo agent
def answer_chunks(prompt: str) -> list[str]:
    """The demo answer, word by word; the question is quoted back as a single chunk."""
    words = ("The agent writes this answer one word at a time. Pause, and the server stops pulling "
             "words from the agent: its generator waits, so nothing is sent and nothing is lost. "
             "Resume, and the words continue where they stopped. Cancel, and the server closes the "
             "generator, so the agent's work really ends. If the connection drops, the page "
             "reconnects with the id of the last word it saw and gets the rest.").split(" ")
    return ["You asked: ", f"\u201c{prompt}\u201d", "\n\n"] + [w + " " for w in words[:-1]] + [words[-1]]


class StoryAgent(StreamUIAgent):
    """Answers any question with a short explanation of this demo, one word per chunk."""

    def __init__(self, pace: float = 0.08):
        super().__init__(name="Streaming UI demo")
        self.pace = pace  # seconds per chunk: typing speed, so there is time to press pause

    def expected_chunks(self, message) -> int:
        return len(answer_chunks(message_text(message)))

    async def stream_response(self, message):
        for chunk in answer_chunks(message_text(message)):
            await asyncio.sleep(self.pace)
            yield chunk


# ---------------------------------------------------------------- the client side
@dataclass
class SseEvent:
    event: str  # "chunk", "state", "end", or "comment" for keepalive lines
    data: dict
    id: Optional[str] = None


async def read_sse(response: aiohttp.ClientResponse) -> AsyncIterator[SseEvent]:
    """Parse a text/event-stream body into events (comments come out as "comment" events)."""
    fields: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line.startswith(":"):
            yield SseEvent("comment", {"text": line[1:].strip()})
        elif line:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[name] = f"{fields[name]}\n{value}" if name == "data" and name in fields else value
        elif "data" in fields:
            yield SseEvent(fields.get("event", "message"), json.loads(fields["data"]), fields.get("id"))
            fields = {}
        else:
            fields = {}


class SessionAPI:
    """The session endpoints from Python: what the terminal UI and the self-check call."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str):
        self.http, self.base_url = http, base_url

    async def start(self, prompt: str) -> dict:
        return await self._call("POST", "/ui/sessions", json={"prompt": prompt})

    async def status(self, sid: str) -> dict:
        return await self._call("GET", f"/ui/sessions/{sid}")

    async def control(self, sid: str, action: str) -> dict:
        """pause / resume / cancel; SessionFinished if the stream has already ended."""
        return await self._call("POST", f"/ui/sessions/{sid}/{action}")

    async def events(self, sid: str, after: Optional[int] = None) -> AsyncIterator[SseEvent]:
        headers = {"Accept": "text/event-stream"}
        if after is not None:
            headers["Last-Event-ID"] = str(after)  # what EventSource sends when it reconnects
        async with self.http.get(f"{self.base_url}/ui/sessions/{sid}/events", headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status} from events: {await response.text()}")
            async for event in read_sse(response):
                yield event

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict:
        """One request to the session endpoints; the status is checked before the body is read as JSON."""
        async with self.http.request(method, self.base_url + path, **kwargs) as response:
            status, text = response.status, await response.text()
        if status in (404, 405) and path == "/ui/sessions":  # this demo's server always has that route
            raise RuntimeError(f"HTTP {status} from {path}: this server has no stream-session endpoints "
                               f"(a plain A2A agent?); point --url at a server started with: "
                               f"python {Path(__file__).name} --serve")
        body = _json_object(text)
        if body is None:  # a proxy's error page, say: show it rather than a JSON decoding error
            raise RuntimeError(f"HTTP {status} from {path}: expected a JSON object, got {text[:100]!r}")
        if status == 409:
            raise SessionFinished(body.get("error"))
        if status >= 400:
            raise RuntimeError(f"HTTP {status} from {path}: {body.get('error')}")
        return body


def _json_object(text: str) -> Optional[dict]:
    """text as a JSON object, or None if it is not one."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@dataclass
class StreamReport:
    """What one watched stream did, and the checks it passed or failed."""
    name: str
    started: float = field(default_factory=time.perf_counter)
    first_chunk_at: Optional[float] = None
    ended_at: Optional[float] = None
    indices: list[int] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    outcome: str = "?"
    checks: list[tuple[str, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # shown under the table: what was not shown, and why

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def each_once_in_order(self) -> bool:
        return self.indices == list(range(len(self.indices)))

    def add(self, index: int, text: str) -> None:
        self.first_chunk_at = self.first_chunk_at or time.perf_counter()
        self.indices.append(index)
        self.pieces.append(text)

    def check(self, label: str, ok: bool) -> bool:
        self.checks.append((label, bool(ok)))
        return bool(ok)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(ok for _, ok in self.checks)

    def row(self) -> list[Any]:
        first = f"{self.first_chunk_at - self.started:.2f} s" if self.first_chunk_at else "-"
        total = f"{(self.ended_at or time.perf_counter()) - self.started:.2f} s"
        return [self.name, len(self.indices), len(self.text), first, total, self.outcome,
                "pass" if self.passed else "FAIL"]


STATE_COLOURS = {"streaming": "green", "paused": "yellow", "cancelled": "red", "done": "cyan", "error": "red"}


class TerminalView:
    """Draws a stream in a terminal: text above a tqdm bar whose label is the status line.

    Text appears a line at a time (wrapped to the terminal) so the bar stays at the bottom.
    """

    def __init__(self, total: Optional[int]):
        columns = min(shutil.get_terminal_size().columns, 100)  # honours COLUMNS; 80 if unknown
        self.width = columns - 2
        self.line = ""
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
            head, self.line = _split_line(self.line, self.width)
            tqdm.write(head, file=sys.stdout)
        rate = self.chars / max(time.perf_counter() - self.first_at, 1e-3)
        self.bar.set_postfix_str(f"{rate:.0f} chars/s", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.line.strip():
            tqdm.write(self.line, file=sys.stdout)
        self.bar.close()


def _split_line(text: str, width: int) -> tuple[str, str]:
    """The first display line of text (up to a newline or `width`, broken at a space) and the rest."""
    head, newline, rest = text.partition("\n")
    if newline and len(head) <= width:
        return head, rest
    cut = textwrap.wrap(text, width, drop_whitespace=False)[0]
    return cut.rstrip(), text[len(cut):]


async def watch(api: SessionAPI, session: dict, report: StreamReport,
                view: Optional[TerminalView] = None, on_chunk: Callable[[int], None] = lambda i: None) -> None:
    """Follow a session's events to the end, recording them in report (and drawing them in view)."""
    try:
        async for event in api.events(session["id"]):
            if event.event == "chunk":
                report.add(event.data["index"], event.data["text"])
                if view:
                    view.chunk(event.data["text"])
                on_chunk(event.data["index"])
            elif event.event == "state" and view:
                view.state(event.data["state"])
            elif event.event == "end":
                report.outcome = event.data["state"]
                if view:
                    view.state(event.data["state"])
                break
    finally:
        report.ended_at = time.perf_counter()
        if view:
            view.close()


# ---------------------------------------------------------------- the terminal, with a person at the keys
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


async def interactive_session(api: SessionAPI, prompt: str) -> StreamReport:
    """Stream one answer in the terminal; p / r / c press pause / resume / cancel on the server."""
    print(paint("Keys: p pause · r resume · c cancel · Ctrl-C quit", "cyan"), flush=True)
    session = await api.start(prompt)
    report = StreamReport("terminal (keys)")

    async def forward_keys(keys: KeyPresses) -> None:
        while True:
            action = KEYS.get(await keys.keys.get())
            if action:
                with contextlib.suppress(SessionFinished):
                    await api.control(session["id"], action)

    with KeyPresses() as keys:
        forwarding = asyncio.create_task(forward_keys(keys))
        try:
            await watch(api, session, report, TerminalView(session["total"]))
        finally:
            forwarding.cancel()
    report.check("stream ended (done or cancelled)", report.outcome in ("done", "cancelled"))
    report.check("every chunk once, in order", report.each_once_in_order)
    return report


# ---------------------------------------------------------------- the terminal, scripted (no TTY)
async def press(api: SessionAPI, sid: str, action: str) -> Optional[dict]:
    """Press pause / resume / cancel: the status after it, or None if the stream had already finished.

    A press after the end is refused (409), and that is no failure: with --pace 0 the whole answer
    is out before anyone can press a key.
    """
    try:
        return await api.control(sid, action)
    except SessionFinished:
        return None


def too_late(key: str, after: int, status: dict) -> str:
    """The truthful line for a key pressed after the stream had finished."""
    return (f"  {key}  pressed after chunk {after}, but the stream had already finished "
            f"({status['state']}, {status['published']} of {status['total']} chunks): nothing to {KEYS[key]}")


SLOWER = "the answer was over before {key} was pressed; use a slower --pace (0.01 or more) to see {action} act"


async def scripted_pause_resume(api: SessionAPI, prompt: str, hold: float) -> StreamReport:
    """Press p after chunk 2, wait `hold` seconds, press r; the answer must arrive whole, once."""
    report = StreamReport("terminal: pause, resume")
    session = await api.start(prompt)
    sid, presses = session["id"], []

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

    await watch(api, session, report, on_chunk=on_chunk)
    await asyncio.gather(*presses)
    expected = "".join(answer_chunks(prompt))
    print(f"     {report.outcome}: {len(report.indices)} chunks, {len(report.text)} characters")
    report.check("pressed p", bool(presses))
    report.check("stream done", report.outcome == "done")
    report.check("whole answer, every chunk once, in order", report.text == expected and report.each_once_in_order)
    return report


async def scripted_cancel(api: SessionAPI, prompt: str) -> StreamReport:
    """Press c after chunk 3: the server must close the agent's generator and say so."""
    report = StreamReport("terminal: cancel")
    session = await api.start(prompt)
    presses: list[asyncio.Task] = []

    def on_chunk(index: int) -> None:
        if index == 3 and not presses:
            presses.append(asyncio.create_task(press(api, session["id"], "cancel")))

    await watch(api, session, report, on_chunk=on_chunk)
    refused = None in await asyncio.gather(*presses)
    status = await api.status(session["id"])
    report.check("pressed c", bool(presses))
    if refused:  # an accepted cancel always ends the stream "cancelled"; a refused one found it over
        print(too_late("c", 3, status))
        report.notes.append(SLOWER.format(key="c", action="cancel"))
        report.check("whole answer, as the stream had finished", report.outcome == "done"
                     and report.text == "".join(answer_chunks(prompt)))
        return report
    print(f"  c  cancelled after chunk {status['published'] - 1} of {status['total']}; "
          f"agent's generator closed: {'yes' if status['generator_closed'] else 'NO'}")
    report.check("stream cancelled", report.outcome == "cancelled")
    report.check("agent's generator closed", status["generator_closed"])
    report.check("text so far intact", "".join(answer_chunks(prompt)).startswith(report.text))
    return report


# ---------------------------------------------------------------- headless check of the web endpoints
async def check_page(http: aiohttp.ClientSession, url: str) -> StreamReport:
    report = StreamReport("web: page served")
    async with http.get(f"{url}/ui") as response:
        page = await response.text()
        report.outcome = f"HTTP {response.status}"
        report.check("page served as HTML", response.status == 200 and response.content_type == "text/html")
    report.check("page has the controls", all(f'id="{b}"' in page for b in ("pause", "resume", "cancel", "restart")))
    report.ended_at = time.perf_counter()
    return report


async def check_full_stream(api: SessionAPI, prompt: str) -> StreamReport:
    report = StreamReport("web: SSE stream")
    await watch(api, await api.start(prompt), report)
    report.check("whole answer, every chunk once", report.text == "".join(answer_chunks(prompt))
                 and report.each_once_in_order and report.outcome == "done")
    return report


async def check_reconnect(api: SessionAPI, prompt: str, drop_after: int = 4) -> StreamReport:
    """Hang up after chunk `drop_after`, reconnect with Last-Event-ID: the rest, no gap, no duplicate."""
    report = StreamReport("web: reconnect")
    session = await api.start(prompt)
    async for event in api.events(session["id"]):  # leaving the loop closes the connection
        if event.event == "chunk":
            report.add(event.data["index"], event.data["text"])
            if event.data["index"] == drop_after:
                break
    last_id = report.indices[-1]
    async for event in api.events(session["id"], after=last_id):
        if event.event == "chunk":
            report.add(event.data["index"], event.data["text"])
        elif event.event == "end":
            report.outcome = event.data["state"]
            break
    report.ended_at = time.perf_counter()
    report.check("resumed after the last id: no gap, no duplicate",
                 report.text == "".join(answer_chunks(prompt)) and report.each_once_in_order)
    return report


async def check_controls(api: SessionAPI, prompt: str) -> StreamReport:
    """Pause, resume and cancel a stream; each is refused once the stream has finished."""
    report = StreamReport("web: pause/resume/cancel")
    sid = (await api.start(prompt))["id"]
    paused = await press(api, sid, "pause")
    resumed = paused and await press(api, sid, "resume")
    cancelled = resumed and await press(api, sid, "cancel")
    async for event in api.events(sid):
        if event.event == "end":
            report.outcome = event.data["state"]
            break
    status = await api.status(sid)
    if paused:
        report.check("pause -> paused", paused["state"] == "paused")
    if resumed:
        report.check("resume -> streaming (or done, at --pace 0), the held chunk sent",
                     resumed["state"] in ("streaming", "done") and not resumed["held"])
    if cancelled:
        report.check("cancel -> cancelled, generator closed", report.outcome == "cancelled"
                     and status["generator_closed"])
    else:  # refused: the first press that came after the end, and every one after it
        late = "pause" if not paused else "resume" if not resumed else "cancel"
        report.notes.append(f"the answer was over before {late} was pressed; use a slower --pace")
    report.check("pause after the end is refused", await press(api, sid, "pause") is None)
    report.ended_at = time.perf_counter()
    return report


async def check_a2a_stream(url: str, prompt: str) -> StreamReport:
    """The kit's POST /stream still serves A2A clients next to the UI endpoints."""
    report = StreamReport("A2A /stream")
    async for chunk in StrictStreamingClient(url).stream_response(prompt):
        report.add(chunk.get("index", len(report.indices)), chunk_text(chunk))
    report.outcome = "done"
    report.ended_at = time.perf_counter()
    report.check("A2A client gets the same answer", report.text == "".join(answer_chunks(prompt)))
    return report


# ---------------------------------------------------------------- putting it together
async def run_session(url: str, interactive: bool, hold: float) -> int:
    """The terminal session (keys or scripted), then the web self-check, then the summary."""
    try:
        reports = await run_reports(url, interactive, hold)
    except (aiohttp.ClientError, RuntimeError, ValueError) as exc:
        print(paint(f"error: {url}: {type(exc).__name__}: {exc}", "red"), file=sys.stderr)
        return 1
    print()
    print_table(["stream", "chunks", "chars", "first chunk", "total", "outcome", "verdict"],
                [r.row() for r in reports])
    failed = [f"{r.name}: {label}" for r in reports for label, ok in r.checks if not ok]
    for line in failed:
        print(paint(f"  failed: {line}", "red"))
    for report in reports:
        for note in report.notes:
            print(paint(f"  note: {report.name}: {note}", "yellow"))
    print(paint(f"\nOpen the web UI yourself: python {Path(__file__).name} --serve", "cyan"))
    return 1 if failed else 0


async def run_reports(url: str, interactive: bool, hold: float) -> list[StreamReport]:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        api = SessionAPI(http, url)
        if interactive:
            reports = [await interactive_session(api, PROMPT)]
        else:
            print(paint("Terminal UI, scripted (no terminal: the keys are pressed for you)", "cyan"))
            reports = [await scripted_pause_resume(api, PROMPT, hold), await scripted_cancel(api, PROMPT)]
        print(paint("\nWeb endpoints, checked headlessly", "cyan"))
        reports += await asyncio.gather(check_page(http, url), check_full_stream(api, PROMPT),
                                        check_reconnect(api, PROMPT), check_controls(api, PROMPT),
                                        check_a2a_stream(url, PROMPT))
    return reports


def main(argv=None) -> int:
    parser = demo_parser("Terminal and web UIs for a stream: pause, resume, cancel, reconnect.", DEFAULT_PORT)
    parser.add_argument("--pace", type=seconds_arg(zero_ok=True),
                        help="seconds per chunk (default 0.08; --fast: 0.01, as an answer with no pace at "
                             "all is over before anyone can press pause)")
    parser.add_argument("--scripted", action="store_true", help="play the scripted session even in a terminal")
    args = parser.parse_args(argv)
    pace = args.pace if args.pace is not None else (0.01 if args.fast else 0.08)
    interactive = not args.scripted and os.name == "posix" and sys.stdin.isatty() and sys.stdout.isatty()
    return run_demo(args, lambda: StoryAgent(pace),
                    lambda url: run_session(url, interactive, hold=0.1 if args.fast else 0.5),
                    serve_lines=["Open the web UI: {url}/ui   (Ctrl-C to stop)"])


if __name__ == "__main__":
    sys.exit(main())
