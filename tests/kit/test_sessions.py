"""streaming_kit/sessions.py: a stream that outlives its connection, with pause, resume, cancel,
Last-Event-ID checks and bounded numbers. Real threads and event loops; no HTTP (05's tests serve it)."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import weakref

import pytest

from conftest import eventually
from streaming_kit import RequestProblem, SessionFinished, StreamSessions, TooManyStreams


class Words:
    """An agent's stream of `count` words that waits before word `gate_at` until `gate` is set."""

    def __init__(self, count: int = 20, gate_at: int | None = None):
        self.count, self.gate_at = count, gate_at
        self.gate = threading.Event()
        self.finally_ran = threading.Event()

    async def stream(self):
        try:
            for index in range(self.count):
                while index == self.gate_at and not self.gate.is_set():
                    await asyncio.sleep(0.005)  # parked like a slow model; a cancel interrupts this await
                await asyncio.sleep(0)
                yield f"w{index} "
        finally:
            self.finally_ran.set()

    def text(self, count: int | None = None) -> str:
        return "".join(f"w{index} " for index in range(self.count if count is None else count))


def start(sessions: StreamSessions, words: Words):
    return sessions.start(words.stream, total=words.count)


def wait(session, condition, seconds: float = 20) -> None:
    assert session.wait_until(condition, seconds), session.status()


@pytest.mark.timeout(30)
def test_pause_holds_the_next_chunk_and_resume_returns_once_it_is_out():
    words = Words(gate_at=8)
    session = start(StreamSessions(), words)
    wait(session, lambda s: len(s.chunks) == 8)
    session.pause()
    words.gate.set()
    wait(session, lambda s: s.held)  # chunk 8 is made, and held: not in the log
    assert session.status()["published"] == 8 and session.state == "paused"
    session.resume()
    status = session.status()  # what a reply to resume shows: the held chunk is out
    assert status["state"] in ("streaming", "done") and not status["held"] and status["published"] >= 9
    wait(session, lambda s: s.state == "done")
    assert "".join(session.chunks) == words.text() and session.generator_closed


@pytest.mark.timeout(30)
def test_cancel_closes_the_generator_so_the_agents_finally_runs():
    words = Words(gate_at=5)
    session = start(StreamSessions(), words)
    wait(session, lambda s: len(s.chunks) == 5)
    session.cancel("the person pressed cancel")
    wait(session, lambda s: s.generator_closed)
    assert session.state == "cancelled" and session.error == "the person pressed cancel"
    assert words.finally_ran.is_set() and session.join(5) and "".join(session.chunks) == words.text(5)


@pytest.mark.timeout(30)
def test_controls_after_the_end_are_refused_with_409():
    session = start(StreamSessions(), Words(count=3))
    wait(session, lambda s: s.state == "done")
    for control in (session.pause, session.resume, session.cancel):
        with pytest.raises(SessionFinished, match="already done") as refused:
            control()
        assert refused.value.status == 409
    assert session.state == "done"


@pytest.mark.timeout(30)
def test_a_cancel_accepted_as_the_agent_ends_counts_and_does_not_stall_the_session():
    made = []

    async def cancels_itself_at_the_end():
        for index in range(5):
            yield f"w{index} "
        while not made:  # listed once start() returns; the stream can be quicker
            await asyncio.sleep(0.001)
        made[0].cancel("pressed as the answer ended")  # and then the agent returns at once

    made.append(StreamSessions().start(cancels_itself_at_the_end))
    session = made[0]
    wait(session, lambda s: s.generator_closed, seconds=5)
    assert session.state == "cancelled" and session.error == "pressed as the answer ended"
    assert len(session.chunks) == 5
    with pytest.raises(SessionFinished, match="already cancelled"):
        session.cancel()


@pytest.mark.timeout(30)
def test_an_agent_error_ends_the_session_as_an_error_not_as_a_short_answer():
    async def fails():
        yield "half an answer "
        raise ValueError("the model went away")

    session = StreamSessions().start(fails)
    wait(session, lambda s: s.generator_closed)
    assert session.chunks == ["half an answer "]
    assert session.state == "error" and session.error == "ValueError: the model went away"


@pytest.mark.timeout(30)
def test_last_event_id_must_name_a_chunk_already_sent():
    sessions, parked, words = StreamSessions(), Words(gate_at=0), Words(gate_at=5)
    with pytest.raises(RequestProblem, match="no chunk has been sent yet"):
        start(sessions, parked).index_after(0)  # parked before its first chunk
    parked.gate.set()
    session = start(sessions, words)
    wait(session, lambda s: len(s.chunks) == 5)
    assert session.index_after(None) == 0 and session.index_after(4) == 5
    for wrong in (5, 99, -1):  # not yet sent, never sent, impossible: a 400, never a silent skip
        with pytest.raises(RequestProblem, match="chunks 0-4 have been sent") as problem:
            session.index_after(wrong)
        assert problem.value.status == 400
    words.gate.set()


@pytest.mark.timeout(30)
def test_a_session_nobody_watches_is_cancelled_and_a_watched_one_is_not():
    sessions = StreamSessions(abandon_seconds=0.2)
    watched_words, unwatched_words = Words(gate_at=3), Words(gate_at=3)
    watched = start(sessions, watched_words)
    with watched.watched():
        unwatched = start(sessions, unwatched_words)
        wait(unwatched, lambda s: s.generator_closed)
        assert unwatched.state == "cancelled" and "nobody watched for 0.2 s" in unwatched.error
        assert unwatched_words.finally_ran.is_set()
        assert watched.state == "streaming"  # started first, watched all along: still running
    watched_words.gate.set()
    wait(watched, lambda s: s.state == "done")


@pytest.mark.timeout(30)
def test_a_paused_session_nobody_watches_is_released_long_before_abandon_seconds():
    session = start(StreamSessions(abandon_paused_seconds=0.3), Words(gate_at=3))  # abandon_seconds stays 60
    session.pause()
    wait(session, lambda s: s.generator_closed, seconds=10)
    assert session.state == "cancelled" and "nobody watched for 0.3 s" in session.error


@pytest.mark.timeout(30)
def test_at_the_cap_the_session_unwatched_longest_gives_way_so_nobody_can_hold_every_slot():
    sessions = StreamSessions(max_live=4)
    squatters = [start(sessions, Words(gate_at=3)) for _ in range(4)]  # the cap, paused, never watched
    for session in squatters:
        session.pause()
    for _ in range(6):  # each new one takes the slot of the one unwatched longest (no TooManyStreams)
        assert start(sessions, Words(gate_at=3)).state == "streaming"
    assert sum(s.live for s in sessions) <= 4
    wait(squatters[0], lambda s: s.generator_closed)
    assert squatters[0].state == "cancelled" and "needed the slot" in squatters[0].error
    sessions.cancel_all("test over")


@pytest.mark.timeout(30)
def test_when_every_live_session_is_watched_a_new_one_is_refused_and_none_is_cancelled():
    sessions = StreamSessions(max_live=2)
    running = [start(sessions, Words(gate_at=3)) for _ in range(2)]
    with contextlib.ExitStack() as watching:
        for session in running:
            watching.enter_context(session.watched())
        with pytest.raises(TooManyStreams, match="watched") as refused:
            start(sessions, Words())
        assert refused.value.status == 429
        assert [s.state for s in running] == ["streaming", "streaming"]
    sessions.cancel_all("test over")


@pytest.mark.timeout(30)
def test_finished_sessions_are_kept_for_a_bounded_count_and_time():
    sessions = StreamSessions(max_finished=2)
    finished = []
    for _ in range(4):
        finished.append(start(sessions, Words(count=3)))
        wait(finished[-1], lambda s: s.state == "done")
    assert [sessions.get(s.id) is not None for s in finished] == [False, False, True, True]
    sessions.keep_finished_seconds = 0.2
    assert eventually(lambda: sessions.get(finished[-1].id) is None)


@pytest.mark.timeout(30)
def test_cancel_all_ends_every_live_session_and_its_thread():
    sessions = StreamSessions()
    words = [Words(gate_at=3) for _ in range(3)]
    running = [start(sessions, w) for w in words]
    sessions.cancel_all("server shutting down")
    for session, w in zip(running, words):
        assert session.join(10) and session.state == "cancelled" and w.finally_ran.is_set()
        assert session.error == "server shutting down"


@pytest.mark.timeout(30)
def test_a_session_keeps_nothing_of_the_request_that_started_it():
    import flask
    app = flask.Flask(__name__)
    sessions, words = StreamSessions(), Words(gate_at=3)  # the session stays live, parked at the gate
    with app.test_request_context("/ui/sessions", method="POST", data=b'{"prompt": "hi"}'):
        request = weakref.ref(flask.request._get_current_object())
        session = start(sessions, words)
    assert eventually(lambda: gc.collect() >= 0 and request() is None), \
        "the live session keeps the Flask request (and its body) alive"
    assert session.state == "streaming"
    words.gate.set()


def test_an_unknown_limit_is_refused():
    with pytest.raises(TypeError, match="max_sessions"):
        StreamSessions(max_sessions=3)
