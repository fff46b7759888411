"""Stream sessions: a stream a person watches, which outlives the HTTP connection that watches it.

A /stream response runs the agent only while its connection lasts. A person needs more: pause
and resume, cancel, and a page that reconnects after a drop and carries on. So a session runs
the agent's async generator in a thread of its own and keeps every chunk in a log; connections
come and go and read the log from any point (Last-Event-ID), and the controls act on the
generator itself:
  - pause: the next chunk is held where it is made; nothing is sent, nothing is lost;
  - resume: the held chunk goes out and the generator goes on;
  - cancel: the generator is closed, so the agent's `finally` blocks run and its work ends.

    sessions = StreamSessions()                 # the limits are keyword arguments (below)
    session = sessions.start(lambda: agent.stream_response(message), total=None)
    sessions.get(session.id).pause()            # .resume(), .cancel(); SessionFinished once over
    chunks, state = session.wait_for_news(next_index, seen_state, timeout)   # for an SSE view

Bounded by default: at most `max_live` running sessions (at the cap the one watched least
recently gives way; TooManyStreams only when every one is watched), a session nobody watches is
cancelled after `abandon_seconds` (`abandon_paused_seconds` when paused), and finished sessions
stay readable for `keep_finished_seconds`, the latest `max_finished` of them.
05_streaming_ui_integration.py serves them to a terminal and a web page.
"""
from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from typing import Any, AsyncIterator, Callable, Iterator, Optional

from .messages import RequestProblem, chunk_text

FINAL_SESSION_STATES = ("done", "cancelled", "error")


class SessionFinished(RequestProblem):
    """A control (pause, resume, cancel) arrived after the stream had already ended: HTTP 409."""

    def __init__(self, reason: str):
        super().__init__(409, reason)


class TooManyStreams(RequestProblem):
    """max_live sessions run already and every one is watched: HTTP 429, cancel one first."""

    def __init__(self, reason: str):
        super().__init__(429, reason)


class StreamSession:
    """One stream: the agent's generator runs in this session's thread, not inside any request.

    `chunks` is the log every connection (first or reconnected) reads; `state` is streaming,
    paused, then done | cancelled | error. Controls are called from request threads.
    """

    def __init__(self, make_stream: Callable[[], AsyncIterator[Any]], limits: "StreamSessions",
                 total: Optional[int] = None):
        self.id = secrets.token_urlsafe(12)  # unguessable: the id is the only key to the session
        self.total = total  # chunks expected, for progress bars (None: unknown)
        self.chunks: list[str] = []
        self.state = "streaming"
        self.error: Optional[str] = None
        self.held = False  # the agent's next chunk is ready but held by a pause
        self.generator_closed = False
        self.watchers = 0
        self.last_watched = time.monotonic()
        self.finished_at: Optional[float] = None  # monotonic time it ended
        self.changed = threading.Condition()  # guards the fields above; notified on every change
        self._make_stream, self._limits = make_stream, limits
        self._cancelling = False  # a cancel was accepted: no chunk is published after it
        self._pulling = True  # still pulling from the agent; after that every control is refused
        self._resumed = asyncio.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None  # made by _run, which sets _ready
        self._task: Optional[asyncio.Task] = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"session {self.id}", daemon=True)

    def start(self) -> "StreamSession":
        """Start the thread; returns once its loop and task exist, so controls can reach them."""
        self._thread.start()
        self._ready.wait()
        return self

    def _run(self) -> None:
        # The loop and task are made here, in the session's own thread: both copy the context of the
        # thread that makes them, and a request thread's context holds Flask's request (its body too).
        self._loop = asyncio.new_event_loop()
        self._task = self._loop.create_task(self._produce())
        self._ready.set()
        self._loop.run_until_complete(self._task)
        self._loop.close()

    async def _produce(self) -> None:
        """Pull the agent's chunks one by one; hold them while paused; close the generator at the end."""
        watchdog = asyncio.create_task(self._close_when_abandoned())
        agen = self._make_stream()
        outcome, error = "done", None
        try:
            async for chunk in agen:
                while not self._publish(chunk_text(chunk)):  # paused (or cancelled): the generator waits here
                    self._resumed.clear()
                    await self._resumed.wait()
        except asyncio.CancelledError:
            outcome = "cancelled"
        except Exception as exc:  # the agent failed: the reader sees the error, not a short answer
            outcome, error = "error", f"{type(exc).__name__}: {exc}"
        finally:
            outcome, error = self._agent_done(outcome, error)
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)  # let it end before the loop closes
            try:
                await agen.aclose()  # runs the agent's finally blocks (a no-op if it already finished)
            except Exception as exc:
                outcome, error = "error", f"the agent's cleanup failed: {type(exc).__name__}: {exc}"
            self._finish(outcome, error)

    async def _close_when_abandoned(self) -> None:
        """Cancel when no connection has watched for abandon_seconds (tab closed), or for
        abandon_paused_seconds while paused: a paused stream nobody watches only holds a slot."""
        limits = self._limits
        while True:
            await asyncio.sleep(min(limits.abandon_seconds, limits.abandon_paused_seconds, 5.0) / 2)
            with self.changed:
                limit = limits.abandon_paused_seconds if self.state == "paused" else limits.abandon_seconds
                abandoned = self.watchers == 0 and self.unwatched_for() > limit
            if abandoned:
                self.cancel(f"nobody watched for {limit:g} s")
                return

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
        """The agent's part is over: later controls are refused. A cancel accepted before this counts
        even if the agent ended before it could act: what was accepted happened."""
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

    # -- the controls
    def pause(self) -> None:
        self._set_state("paused")

    def resume(self, wait: float = 1.0) -> None:
        """Let the generator go on; returns once a chunk held by the pause is in the log (or after
        `wait`), so a status read next describes the stream after resuming."""
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
        if self.state in FINAL_SESSION_STATES:
            raise SessionFinished(f"the stream is already {self.state}")
        if not self._pulling:  # the agent has ended; only the cleanup is left
            raise SessionFinished("the stream has already finished")

    # -- reading
    @property
    def live(self) -> bool:
        """Still holds a slot: not finished, and no cancel on its way."""
        with self.changed:
            return self.state not in FINAL_SESSION_STATES and not self._cancelling

    def status(self) -> dict:
        with self.changed:
            return {"id": self.id, "state": self.state, "published": len(self.chunks), "total": self.total,
                    "held": self.held, "generator_closed": self.generator_closed, "error": self.error}

    def unwatched_for(self) -> float:
        """Seconds since a connection last watched the stream (0 while one does)."""
        with self.changed:
            return 0.0 if self.watchers else time.monotonic() - self.last_watched

    @contextlib.contextmanager
    def watched(self) -> Iterator[None]:
        """Count a connection as watching while the block runs (an unwatched stream is cancelled after a while)."""
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

        The id is checked against the chunks sent so far: a chunk is in the log before any connection
        sends it, so a real client only holds ids below that. A larger id is wrong (another stream's,
        or made up); waiting for it would hide the bug and silently skip the chunks in between.
        """
        if last_id is None:
            return 0
        with self.changed:
            sent = len(self.chunks)
        if not 0 <= last_id < sent:
            sent_so_far = f"chunks 0-{sent - 1} have been sent" if sent else "no chunk has been sent yet"
            raise RequestProblem(400, f"Last-Event-ID {last_id} names no chunk of this stream: {sent_so_far}")
        return last_id + 1

    def wait_for_news(self, next_index: int, seen_state: Optional[str], timeout: float) -> tuple[list[str], str]:
        """The chunks from next_index on and the current state, once either changes (or after timeout)."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.chunks) > next_index or self.state != seen_state, timeout)
            return self.chunks[next_index:], self.state

    def wait_until(self, condition: Callable[["StreamSession"], bool], timeout: float) -> bool:
        """Block until condition(session) holds (checked on every change); False after timeout."""
        with self.changed:
            return self.changed.wait_for(lambda: condition(self), timeout)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the session's thread to end (after a cancel, say); True if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


class StreamSessions:
    """The sessions of one server, by id, within bounds (see the module docstring)."""

    max_live = 16  # at the cap, the session unwatched longest gives way to a new one
    abandon_seconds = 60.0  # a session nobody watches (tab closed, no reconnect) is cancelled after this
    abandon_paused_seconds = 10.0  # sooner when paused: it only holds a slot
    keep_finished_seconds = 300.0  # a finished session can be re-read this long ...
    max_finished = 64  # ... and only the latest this many

    def __init__(self, **limits: float):
        for name, value in limits.items():
            if not hasattr(StreamSessions, name):
                raise TypeError(f"unknown session limit {name!r}")
            setattr(self, name, value)
        self._sessions: dict[str, StreamSession] = {}
        self._lock = threading.Lock()

    def start(self, make_stream: Callable[[], AsyncIterator[Any]], total: Optional[int] = None) -> StreamSession:
        """Start a session running make_stream() (call it with nothing of the request: only what the agent needs)."""
        with self._lock:  # started before it is listed: cancel_all never finds one it cannot cancel
            self._make_room()
            self._forget_old()
            session = StreamSession(make_stream, self, total).start()
            self._sessions[session.id] = session
        return session

    def get(self, sid: str) -> Optional[StreamSession]:
        """The session with this id; None if unknown or forgotten."""
        with self._lock:
            self._forget_old()
            return self._sessions.get(sid)

    def __iter__(self) -> Iterator[StreamSession]:
        with self._lock:
            return iter(list(self._sessions.values()))

    def cancel_all(self, reason: str) -> None:
        """Cancel every live session (a server shutting down calls this)."""
        for session in self:
            with contextlib.suppress(SessionFinished):
                session.cancel(reason)

    def _make_room(self) -> None:
        """At the cap, cancel the session unwatched longest, so nobody can hold every slot with streams
        they do not watch; TooManyStreams only when every live session has a connection watching it."""
        live = [s for s in self._sessions.values() if s.live]
        if len(live) < self.max_live:
            return
        oldest = max(live, key=StreamSession.unwatched_for)
        if oldest.unwatched_for() == 0:
            raise TooManyStreams(f"{len(live)} streams are live and watched; cancel one first")
        with contextlib.suppress(SessionFinished):  # it ended just now: the slot is free anyway
            oldest.cancel("another stream needed the slot (this one had nobody watching)")

    def _forget_old(self) -> None:
        """Drop finished sessions past keep_finished_seconds, and all but the latest max_finished."""
        now = time.monotonic()
        finished = sorted((s for s in self._sessions.values() if s.finished_at is not None),
                          key=lambda s: s.finished_at)
        too_many = len(finished) - self.max_finished
        for index, session in enumerate(finished):
            if index < too_many or now - session.finished_at > self.keep_finished_seconds:
                del self._sessions[session.id]
