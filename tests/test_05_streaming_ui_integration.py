"""05_streaming_ui_integration.py: the script as a user runs it, its terminal UI under a
pseudo-terminal, its session endpoints, and its web page in a real headless Chromium."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

import pytest

from conftest import ROOT, eventually, library_noise, load_script, run_script, serve_script

SCRIPT = "05_streaming_ui_integration.py"
ui = load_script(SCRIPT)
from examples_support import terminal_ui  # noqa: E402  (after the script: it imports the kit first)
from streaming_kit import StreamingAgent, StreamSessions, StrictStreamingClient, chunk_text, serve  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
INJECTION = '<img src=x onerror="window.__pwned = 1"><script>window.__pwned = 2</script>'


class GatedAgent(ui.StoryAgent):
    """The demo agent, plus a gate it waits at before chunk `gate_at` and a flag its finally sets."""

    def __init__(self, gate_at: int | None = None, limits: dict | None = None, **kwargs):
        super().__init__(pace=0.002)
        self.gate_at = gate_at
        self.sessions = StreamSessions(**(limits or {}))
        self.gate = threading.Event()
        self.finally_ran = threading.Event()
        for name, value in kwargs.items():
            setattr(self, name, value)

    async def stream_response(self, message):
        try:
            for index, chunk in enumerate(ui.answer_chunks(ui.message_text(message))):
                while index == self.gate_at and not self.gate.is_set():
                    await asyncio.sleep(0.01)  # parked like a slow model; cancel interrupts this await
                await asyncio.sleep(self.pace)
                yield chunk
        finally:
            self.finally_ran.set()


class FailingAgent(ui.StoryAgent):
    async def stream_response(self, message):
        yield "half an answer "
        raise ValueError("the model went away")


def wait_for_session(session, condition, seconds: float = 20) -> None:
    """Block until condition(session) holds (the session checks it on every change)."""
    assert session.wait_until(condition, seconds), session.status()


def full_answer(prompt: str = ui.PROMPT) -> str:
    return "".join(ui.answer_chunks(prompt))


def first_chunks(count: int, prompt: str = ui.PROMPT) -> str:
    return "".join(ui.answer_chunks(prompt)[:count])


# ---------------------------------------------------------------- the script as a user runs it
@pytest.mark.timeout(60)
def test_default_run_plays_the_scripted_session_and_ends_with_one_verdict(tmp_path):
    result = run_script(SCRIPT, "--fast", timeout=60)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "no terminal: the keys are pressed for you" in out
    assert re.search(r"p  paused after chunk \d+; the server holds the agent's generator", out)
    assert re.search(r"paused: 0 new chunks arrived", out)
    assert re.search(r"c  cancelled after chunk \d+ of \d+; agent's generator closed: yes", out)
    assert [line for line in out.splitlines() if line.startswith("Verdict:")] == [
        "Verdict: every chunk arrived once, in order, and every control pressed in time acted on the server"]
    assert library_noise(out + result.stderr) == [] and result.stderr == ""


@pytest.mark.timeout(60)
def test_report_holds_what_each_scripted_stream_did(tmp_path):
    result = run_script(SCRIPT, "--fast", "--report", str(tmp_path / "streams.json"), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "streams.json").read_text())
    paused, cancelled = report["streams"]
    assert report["ok"] and report["failed"] == []
    assert paused["outcome"] == "done" and paused["text"] == full_answer()
    assert paused["indices"] == list(range(len(ui.answer_chunks(ui.PROMPT))))
    assert paused["checks"]["nothing sent while paused"] is True
    assert cancelled["outcome"] == "cancelled" and cancelled["checks"]["agent's generator closed"] is True
    assert full_answer().startswith(cancelled["text"]) and len(cancelled["indices"]) < len(paused["indices"])


@pytest.mark.timeout(60)
def test_a_stream_that_breaks_its_promise_fails_the_verdict_with_exit_1(capsys):
    class PauseIgnored(StreamSessions):  # the bug the verdict exists for: pause answers but holds nothing
        def start(self, make_stream, total=None):
            session = super().start(make_stream, total)
            session.pause = lambda: None
            return session

    agent = GatedAgent()
    agent.sessions = PauseIgnored()
    with serve(agent) as url:
        assert ui.main(["--url", url, "--fast", "--scripted"]) == 1
    out = capsys.readouterr().out
    verdict = [line for line in out.splitlines() if line.startswith("Verdict:")]
    assert verdict == ["Verdict: FAILED - terminal: pause, resume: nothing sent while paused"], out


TOO_LATE_FOR_C = r"c  pressed after chunk 3, but the stream had already finished \(done, (\d+) of \1 chunks\)"


@pytest.mark.timeout(60)
def test_pace_0_ends_cleanly_and_says_the_keys_came_too_late():
    result = run_script(SCRIPT, "--pace", "0", "--fast", "--scripted", timeout=60)
    out = result.stdout
    assert result.returncode == 0 and result.stderr == "", out + result.stderr
    assert "Traceback" not in out and "FAIL" not in out
    # At pace 0 the answer is out within milliseconds; a press after that must not claim to have cancelled.
    if "c  cancelled after chunk" not in out:
        assert re.search(TOO_LATE_FOR_C, out)
        assert "use a slower --pace" in out


class LateSessionAPI(ui.SessionAPI):
    """Presses every control only once the stream has finished, as happens at --pace 0 (but always)."""

    async def control(self, sid: str, action: str) -> dict:
        while (await self.status(sid))["state"] not in ui.FINAL_SESSION_STATES:
            await asyncio.sleep(0.005)
        return await super().control(sid, action)


@pytest.mark.timeout(60)
def test_controls_pressed_after_the_end_are_reported_as_already_finished(capsys):
    import aiohttp

    async def run(url: str) -> list:
        async with aiohttp.ClientSession() as http:
            api = LateSessionAPI(http, url)
            return [await terminal_ui.scripted_pause_resume(api, ui.PROMPT, full_answer(), hold=0.01),
                    await terminal_ui.scripted_cancel(api, ui.PROMPT, full_answer())]

    with serve(ui.StoryAgent(pace=0.001)) as url:
        reports = asyncio.run(run(url))
    out = capsys.readouterr().out
    assert [r.outcome for r in reports] == ["done", "done"]
    assert all(r.passed for r in reports), [r.checks for r in reports]
    assert "p  pressed after chunk 2, but the stream had already finished" in out
    assert re.search(TOO_LATE_FOR_C, out)
    assert "cancelled after" not in out
    assert all(r.notes for r in reports)


@pytest.mark.parametrize("args", [["--pace", "-1"], ["--pace", "fast"], ["--pace", "nan"], ["--pace", "inf"],
                                  ["--port", "http"]])
def test_bad_arguments_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exit_info:  # argparse exits before anything starts
        ui.main(args)
    assert exit_info.value.code == 2 and f"error: argument {args[0]}: expected" in capsys.readouterr().err


# ---------------------------------------------------------------- the terminal UI under a pseudo-terminal
class Terminal:
    """The script running on a pseudo-terminal (its controlling terminal, so Ctrl-C is a signal)."""

    def __init__(self, *args: str):
        import fcntl
        import pty
        import termios
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # rows, columns
        self.settings_before = termios.tcgetattr(self.slave)
        self.output = b""
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / SCRIPT), *args], cwd=ROOT, stdin=self.slave, stdout=self.slave,
            stderr=self.slave, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))

    def expect(self, pattern: bytes, seconds: float = 30, start: int = 0) -> int:
        """Read until pattern appears after offset start; returns the offset just past it."""
        deadline = time.monotonic() + seconds
        while (found := self.output.find(pattern, start)) < 0:
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} not seen; output so far:\n{self.output.decode(errors='replace')}"
            if select.select([self.master], [], [], left)[0]:
                with contextlib.suppress(OSError):  # EIO once the child has exited
                    self.output += os.read(self.master, 65536)
        return found + len(pattern)

    def press(self, key: str) -> None:
        os.write(self.master, key.encode())

    def finish(self, seconds: float = 60) -> int:
        deadline = time.monotonic() + seconds
        while self.process.poll() is None and time.monotonic() < deadline:
            if select.select([self.master], [], [], 0.2)[0]:
                with contextlib.suppress(OSError):
                    self.output += os.read(self.master, 65536)
        return self.process.wait(timeout=1)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminal():
    opened = []
    yield lambda *args: opened.append(Terminal(*args)) or opened[-1]
    for term in opened:
        term.close()


@pytest.mark.timeout(90)
def test_keys_pause_resume_and_cancel_the_stream_on_a_terminal(terminal):
    import termios
    term = terminal("--pace", "0.05")
    at = term.expect(b"Keys: p pause")
    at = term.expect(b"You asked", start=at)  # text is on screen: the stream is flowing
    term.press("p")
    at = term.expect(b"[paused]", start=at)
    term.press("r")
    at = term.expect(b"[streaming]", start=at)
    term.press("c")
    term.expect(b"[cancelled]", start=at)
    assert term.finish() == 0, term.output.decode(errors="replace")
    out = term.output.decode(errors="replace")
    assert re.search(r"terminal \(keys\) .* cancelled .* pass", out), out
    assert termios.tcgetattr(term.slave) == term.settings_before  # echo and line mode are back


@pytest.mark.timeout(60)
def test_ctrl_c_quits_and_restores_the_terminal(terminal):
    import termios
    term = terminal("--pace", "0.05")
    term.expect(b"You asked")
    assert termios.tcgetattr(term.slave) != term.settings_before  # cbreak mode while streaming
    term.press("\x03")
    assert term.finish() == 130
    assert termios.tcgetattr(term.slave) == term.settings_before
    assert b"Traceback" not in term.output


# ---------------------------------------------------------------- the session endpoints
def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    """(status, parsed JSON or raw text) for one request."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    with contextlib.suppress(ValueError):
        return status, json.loads(raw)
    return status, raw.decode()


def start(url: str, prompt: str = ui.PROMPT) -> dict:
    status, body = call(f"{url}/ui/sessions", "POST", json.dumps({"prompt": prompt}).encode(),
                        {"Content-Type": "application/json"})
    assert status == 201, body
    return body


@pytest.mark.timeout(30)
def test_bad_requests_get_clear_4xx_and_the_server_keeps_serving():
    agent = GatedAgent()
    with serve(agent) as url:
        sessions = f"{url}/ui/sessions"
        json_header = {"Content-Type": "application/json"}
        assert call(sessions, "POST", b"{not json", json_header)[0] == 400
        assert call(sessions, "POST", b'{"prompt": 5}', json_header)[0] == 400
        assert call(sessions, "POST", b'{"prompt": "   "}', json_header)[0] == 400
        status, body = call(sessions, "POST", json.dumps({"prompt": "x" * 5000}).encode(), json_header)
        assert status == 400 and "2000" in body["error"]
        for path, method in (("/nope", "GET"), ("/nope/events", "GET"), ("/nope/pause", "POST")):
            status, body = call(sessions + path, method)
            assert status == 404 and "no stream session" in body["error"]
        sid = start(url)["id"]
        assert call(f"{sessions}/{sid}/explode", "POST")[0] == 404
        wait_for_session(agent.sessions.get(sid), lambda s: s.state == "done")
        sent = len(ui.answer_chunks(ui.PROMPT))
        # "\xb2" is "²", which str.isdigit() calls a digit; 99999 and `sent` name chunks never sent.
        for bad_id in ("seven", "-3", "\xb2", "99999", str(sent)):
            status, body = call(f"{sessions}/{sid}/events", headers={"Last-Event-ID": bad_id})
            assert status == 400 and "Last-Event-ID" in body["error"], (bad_id, body)
        assert "chunks 0-" in body["error"]
        assert call(f"{sessions}/{sid}/events", headers={"Last-Event-ID": str(sent - 1)})[0] == 200  # the last one
        status, body = call(f"{sessions}/{sid}/pause", "POST")
        assert status == 409 and "already done" in body["error"]
        assert start(url)["state"] == "streaming"  # still serving


@pytest.mark.timeout(30)
def test_a_body_over_max_body_bytes_is_refused_with_413_before_it_is_read_whole():
    agent = GatedAgent(max_body_bytes=1000)
    padded = json.dumps({"prompt": "hi", "padding": "x" * 5000}).encode()

    def without_length():
        for start in range(0, len(padded), 512):
            yield padded[start:start + 512]

    with serve(agent) as url:
        for body, headers in ((padded, {}), (without_length(), {"Transfer-Encoding": "chunked"})):
            status, reply = call(f"{url}/ui/sessions", "POST", body, {"Content-Type": "application/json", **headers})
            assert (status, reply) == (413, {"error": "request body over 1000 bytes"})
        assert list(agent.sessions) == []  # nothing started
        assert start(url)["state"] == "streaming"  # a body under the limit still works


@pytest.mark.timeout(30)
def test_a_session_keeps_its_message_not_the_request_that_brought_it():
    import gc
    import flask

    class RequestWatchingSessions(StreamSessions):
        requests: list = []

        def start(self, make_stream, total=None):
            self.requests.append(weakref.ref(flask.request._get_current_object()))
            return super().start(make_stream, total)

    agent = GatedAgent(gate_at=3)  # the session stays live, parked at the gate
    agent.sessions = RequestWatchingSessions()
    with serve(agent) as url:
        session = agent.sessions.get(start(url)["id"])
        gone = lambda: gc.collect() >= 0 and agent.sessions.requests[0]() is None  # its thread lets go after the reply
        assert eventually(gone, seconds=5), "the live session keeps its Flask request (and body) alive"
        assert session.state == "streaming"
        agent.gate.set()


@pytest.mark.timeout(30)
def test_the_reply_to_resume_shows_the_stream_after_resuming():
    agent = GatedAgent(gate_at=8)
    with serve(agent) as url:
        sid = start(url)["id"]
        session = agent.sessions.get(sid)
        wait_for_session(session, lambda s: len(s.chunks) == 8)
        assert call(f"{url}/ui/sessions/{sid}/pause", "POST")[1]["state"] == "paused"
        agent.gate.set()
        wait_for_session(session, lambda s: s.held)
        status, reply = call(f"{url}/ui/sessions/{sid}/resume", "POST")
    assert status == 200 and reply["state"] == "streaming"
    assert not reply["held"] and reply["published"] >= 9  # chunk 8 is out, not "held on the server"


async def collect(url: str, sid: str, after: int | None = None, stop=lambda event: False) -> list:
    import aiohttp
    async with aiohttp.ClientSession() as http:
        events = []
        async for event in ui.SessionAPI(http, url).events(sid, after):
            events.append(event)
            if event.event == "end" or stop(event):
                return events
    return events


@pytest.mark.timeout(30)
def test_paused_stream_sends_keepalive_comments_and_nothing_else():
    agent = GatedAgent(keepalive_seconds=0.05)
    with serve(agent) as url:
        sid = start(url)["id"]
        assert call(f"{url}/ui/sessions/{sid}/pause", "POST")[1]["state"] == "paused"
        third_ping = lambda event: event.event == "comment" and len(events_so_far(event)) == 3
        seen: list = []
        events_so_far = lambda event: seen.append(event) or [e for e in seen if e.event == "comment"]
        events = asyncio.run(collect(url, sid, stop=third_ping))
        sent_before_pause = agent.sessions.get(sid).status()["published"]
        assert [e.data["index"] for e in events if e.event == "chunk"] == list(range(sent_before_pause))
        assert [e.data["text"] for e in events if e.event == "comment"] == ["ping"] * 3
        assert agent.sessions.get(sid).status()["published"] == sent_before_pause


@pytest.mark.timeout(30)
def test_reconnect_without_last_event_id_would_repeat_with_it_does_not():
    agent = GatedAgent(gate_at=5)
    with serve(agent) as url:
        sid = start(url)["id"]
        first = asyncio.run(collect(url, sid, stop=lambda e: e.event == "chunk" and e.data["index"] == 4))
        agent.gate.set()
        resumed = asyncio.run(collect(url, sid, after=4))
        fresh = asyncio.run(collect(url, sid))  # a client that forgot Last-Event-ID gets it all again
    chunks = lambda events: [e.data["text"] for e in events if e.event == "chunk"]
    assert "".join(chunks(first) + chunks(resumed)) == full_answer()
    assert [e.id for e in resumed if e.event == "chunk"][0] == "5"
    assert "".join(chunks(first) + chunks(fresh)) != full_answer()  # the duplicate the id prevents


@pytest.mark.timeout(30)
def test_agent_error_ends_the_stream_as_an_error():
    with serve(FailingAgent()) as url:
        events = asyncio.run(collect(url, start(url)["id"]))
    assert [e.data["text"] for e in events if e.event == "chunk"] == ["half an answer "]
    assert events[-1].event == "end" and events[-1].data["state"] == "error"
    assert "ValueError: the model went away" in events[-1].data["error"]


@pytest.mark.timeout(30)
def test_server_shutdown_cancels_live_sessions_and_ends_their_threads():
    agent = GatedAgent(gate_at=3)
    with serve(agent) as url:
        session = agent.sessions.get(start(url)["id"])
    assert session.join(timeout=5)
    assert session.state == "cancelled" and session.generator_closed and agent.finally_ran.is_set()


@pytest.mark.timeout(30)
def test_the_a2a_stream_still_serves_a2a_clients_next_to_the_sessions():
    async def stream(url: str) -> list:
        return [chunk async for chunk in StrictStreamingClient(url).stream_response(ui.PROMPT)]

    with serve(ui.StoryAgent(pace=0)) as url:
        chunks = asyncio.run(stream(url))
    assert "".join(chunk_text(c) for c in chunks) == full_answer()
    assert [c["index"] for c in chunks] == list(range(len(ui.answer_chunks(ui.PROMPT))))


@pytest.mark.timeout(30)
def test_when_every_live_stream_is_watched_a_new_one_gets_429_and_none_is_cancelled():
    agent = GatedAgent(gate_at=3, limits={"max_live": 2})
    with serve(agent) as url, contextlib.ExitStack() as watching:
        sessions = [agent.sessions.get(start(url)["id"]) for _ in range(2)]
        for session in sessions:
            watching.enter_context(urllib.request.urlopen(f"{url}/ui/sessions/{session.id}/events", timeout=10))
            assert eventually(lambda: session.watchers == 1)  # (watching is not notified on the condition)
        status, body = call(f"{url}/ui/sessions", "POST", b'{"prompt": "one more"}', {"Content-Type": "application/json"})
        assert status == 429 and "watched" in body["error"]
        assert [s.state for s in sessions] == ["streaming", "streaming"]


# ---------------------------------------------------------------- the web page in headless Chromium
class DroppableProxy:
    """A TCP relay in front of the server; drop() cuts every connection, as a flaky network does."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def drop(self) -> None:
        with self.lock:
            cut, self.sockets = self.sockets, []
        for sock in cut:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()
        self.drop()


@contextlib.contextmanager
def chromium(*extra_args: str):
    """A headless Chromium (skipped if it is not installed, except in CI)."""
    if not Path(CHROMIUM).exists():
        # CI sets REQUIRE_BROWSER=1 (.ci/run): there the browser tests must run, never skip.
        missing = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(missing)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
        yield launched
        launched.close()


@pytest.fixture
def browser():  # per test: sync Playwright keeps an event loop running, which asyncio.run() elsewhere refuses
    with chromium() as launched:
        yield launched


@pytest.fixture
def web(browser):
    """Start an agent behind a droppable proxy and open its page: yields (page, agent, proxy)."""
    opened = []

    def open_page(agent):
        stack = contextlib.ExitStack()
        url = stack.enter_context(serve(agent))
        proxy = DroppableProxy(int(url.rsplit(":", 1)[1]))
        stack.callback(proxy.close)
        agent.allowed_hosts = (f"127.0.0.1:{proxy.port}",)  # the page's Host is the proxy's, as behind any proxy
        context = browser.new_context(viewport={"width": 900, "height": 860})
        stack.callback(context.close)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(f"http://127.0.0.1:{proxy.port}/ui")
        opened.append(stack)
        return page, proxy

    yield open_page
    for stack in reversed(opened):
        stack.close()


def ask(page, prompt: str = ui.PROMPT) -> None:
    page.fill("#prompt", prompt)
    page.click("#start")


def wait_for_text(page, text: str) -> None:
    page.wait_for_function("expected => document.getElementById('answer').textContent === expected", arg=text)


def wait_for_state(page, state: str) -> None:
    page.wait_for_function("state => document.body.dataset.state === state", arg=state)


def answer(page) -> str:
    return page.text_content("#answer")


def page_session(agent: "GatedAgent", page):
    """The server's session behind the stream the page shows now."""
    return agent.sessions.get(page.evaluate("document.body.dataset.session"))


def ask_until_parked(web, gate_at: int):
    """A page that asked and shows the first `gate_at` chunks; the agent waits before the next one."""
    agent = GatedAgent(gate_at=gate_at)
    page, proxy = web(agent)
    ask(page)
    wait_for_text(page, first_chunks(gate_at))
    return agent, page, proxy


@pytest.mark.timeout(60)
def test_page_streams_the_answer_as_text_never_as_html(web, tmp_path):
    agent = GatedAgent()
    page, _ = web(agent)
    prompt = f"Is this safe? {INJECTION}"
    ask(page, prompt)
    wait_for_state(page, "done")
    assert page.evaluate("window.__pwned") is None  # nothing ran ...
    assert page.locator("#answer img, #answer script").count() == 0
    assert answer(page) == full_answer(prompt)  # ... and the tags are there, as characters
    assert page.text_content("#m-anomalies") == "0"
    total = len(ui.answer_chunks(prompt))
    assert page.text_content("#m-chunks") == f"{total}/{total}"
    page.screenshot(path=str(tmp_path / "05_streaming_ui.png"), full_page=True)
    assert (tmp_path / "05_streaming_ui.png").stat().st_size > 10_000


@pytest.mark.timeout(60)
def test_unreachable_server_is_reported_on_the_page_not_left_connecting(web):
    agent = GatedAgent(gate_at=5)  # the stream stays live at chunk 5, so Pause is enabled
    page, _ = web(agent)
    page.route("**/ui/sessions", lambda route: route.abort())  # as if the server were gone
    ask(page)
    wait_for_state(page, "error")
    assert "could not start: the server cannot be reached" in page.text_content("#log")
    page.unroute("**/ui/sessions")
    ask(page)
    wait_for_text(page, first_chunks(5))
    page.route("**/pause", lambda route: route.abort())
    page.click("#pause")
    page.wait_for_function("() => document.getElementById('log').textContent.includes('pause failed: the server')")
    assert page.evaluate("document.body.dataset.state") == "streaming"
    agent.gate.set()
    wait_for_state(page, "done")


@pytest.mark.timeout(60)
def test_pause_holds_the_server_stream_and_resume_delivers_each_chunk_once(web):
    agent, page, _ = ask_until_parked(web, 8)  # the agent is parked before chunk 8
    page.click("#pause")
    wait_for_state(page, "paused")
    session = page_session(agent, page)
    agent.gate.set()
    wait_for_session(session, lambda s: s.held)  # chunk 8 is made, and held by the server
    assert session.status()["published"] == 8 and answer(page) == first_chunks(8)
    assert page.is_disabled("#pause") and page.is_enabled("#resume")
    page.click("#resume")
    wait_for_state(page, "done")
    assert answer(page) == full_answer()
    assert page.text_content("#m-anomalies") == "0"
    resume_line = page.locator("#log li", has_text="resume:").text_content()
    assert "held" not in resume_line and re.search(r"resume: (9|\d\d) chunks sent so far", resume_line), resume_line


@pytest.mark.timeout(60)
def test_ask_during_a_stream_cancels_it_and_no_control_acts_while_connecting(web):
    agent, page, _ = ask_until_parked(web, 5)
    first = page_session(agent, page)
    held_starts = []
    page.route("**/ui/sessions", lambda route: held_starts.append(route))  # the new stream's start waits
    ask(page, "And a second question?")
    wait_for_state(page, "connecting")
    assert [page.is_disabled(f"#{b}") for b in ("pause", "resume", "cancel", "restart", "start")] == [True] * 5
    wait_for_session(first, lambda s: s.generator_closed)  # Ask cancelled the stream it replaced
    assert first.state == "cancelled"
    page.wait_for_function("() => document.body.dataset.state === 'connecting'")
    # the start is sent after the cancel's reply: let Playwright deliver it to the route handler
    assert eventually(lambda: held_starts or page.wait_for_timeout(10)) and len(held_starts) == 1
    held_starts[0].continue_()
    page.wait_for_function("old => document.body.dataset.session !== old", arg=first.id)
    wait_for_text(page, first_chunks(5, "And a second question?"))
    page.click("#cancel")  # acts on the new stream
    wait_for_state(page, "cancelled")
    second = page_session(agent, page)
    assert second.state == "cancelled" and second.generator_closed and first.status()["published"] == 5


@pytest.mark.timeout(60)
def test_cancel_stops_the_agent_and_restart_streams_again(web):
    agent, page, _ = ask_until_parked(web, 6)
    first_session = page_session(agent, page)
    page.click("#cancel")
    wait_for_state(page, "cancelled")
    assert agent.finally_ran.is_set() and first_session.status()["generator_closed"]
    assert answer(page) == first_chunks(6)
    assert page.is_disabled("#pause") and page.is_disabled("#cancel")
    agent.gate.set()
    page.click("#restart")
    wait_for_state(page, "done")
    assert page.evaluate("document.body.dataset.session") != first_session.id
    assert answer(page) == full_answer()


@pytest.mark.timeout(60)
def test_dropped_connection_resumes_without_gap_or_duplicate(web):
    agent, page, proxy = ask_until_parked(web, 10)
    proxy.drop()  # the network goes away mid-stream
    page.wait_for_function("document.getElementById('m-reconnects').textContent === '1'")
    agent.gate.set()
    wait_for_state(page, "done")
    assert answer(page) == full_answer()
    assert page.text_content("#m-anomalies") == "0"



# ---------------------------------------------------------------- other web pages (issue 11)
ATTACKER_PAGE = b"""<!doctype html><title>another site</title><script>
async function attempt(url, init) {  // what the page can read of the answer, if anything
  try { const r = await fetch(url, init); return {status: r.status, body: await r.text()}; }
  catch (e) { return {blocked: e.name}; }
}
function firstChunk(url) {
  return new Promise((resolve) => {
    const source = new EventSource(url);
    source.addEventListener("chunk", (e) => { source.close(); resolve({read: e.data}); });
    source.onerror = () => { source.close(); resolve({blocked: "error"}); };
  });
}
async function attack(agent, sid) {
  const plain = {"Content-Type": "text/plain"};  // a "simple" request: the browser sends it without asking
  const message = JSON.stringify({role: "user", content: {type: "text", text: "read me"}});
  const blind = {method: "POST", mode: "no-cors"};  // sent without CORS at all; only its effect counts
  await fetch(`${agent}/ui/sessions/${sid}/pause`, blind).catch(() => null);
  await fetch(`${agent}/ui/sessions`, {...blind, headers: plain, body: JSON.stringify({prompt: "blind"})}).catch(() => null);
  return {
    stream: await attempt(`${agent}/stream`, {method: "POST", headers: plain, body: message}),
    streamJson: await attempt(`${agent}/stream`, {method: "POST", headers: {"Content-Type": "application/json"}, body: message}),
    start: await attempt(`${agent}/ui/sessions`, {method: "POST", headers: plain, body: JSON.stringify({prompt: "x"})}),
    status: await attempt(`${agent}/ui/sessions/${sid}`),
    cancel: await attempt(`${agent}/ui/sessions/${sid}/cancel`, {method: "POST"}),
    card: await attempt(`${agent}/agent.json`),
    events: await firstChunk(`${agent}/ui/sessions/${sid}/events`),
  };
}
</script>"""


class CountingGatedAgent(GatedAgent):
    """Counts every run of the agent: /stream and sessions alike."""

    runs = 0

    def stream_response(self, message):
        self.runs += 1
        return super().stream_response(message)


@pytest.fixture
def other_site():
    """Another origin on this machine (same address, another port): serves ATTACKER_PAGE at /."""
    import http.server

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(ATTACKER_PAGE)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.timeout(60)
def test_a_page_on_another_origin_can_neither_read_nor_drive_the_agent(browser, other_site):
    agent = CountingGatedAgent(gate_at=3)
    with serve(agent) as url:
        victim = agent.sessions.get(start(url, "my private question")["id"])
        wait_for_session(victim, lambda s: len(s.chunks) == 3)
        page = browser.new_page()
        page.goto(other_site)
        result = page.evaluate("([agent, sid]) => attack(agent, sid)", [url, victim.id])
        assert all("blocked" in outcome for outcome in result.values()), result
        assert victim.status()["state"] == "streaming"  # neither paused nor cancelled
        assert [s.id for s in agent.sessions] == [victim.id] and agent.runs == 1  # nothing else ran
        # The same page, served by the agent itself (same origin), and under a loopback name, works.
        agent.gate.set()
        for base in (url, url.replace("127.0.0.1", "localhost")):
            page.goto(f"{base}/ui")
            ask(page, "same origin?")
            wait_for_state(page, "done")
            assert answer(page) == full_answer("same origin?")


@pytest.mark.timeout(60)
def test_an_origin_on_the_allow_list_may_stream_through_cors(browser, other_site):
    agent = CountingGatedAgent(allowed_origins=[other_site])
    with serve(agent) as url:
        page = browser.new_page()
        page.goto(other_site)
        result = page.evaluate("(agent) => attempt(`${agent}/stream`, {method: 'POST', headers: "
                               "{'Content-Type': 'application/json'}, body: JSON.stringify({role: 'user', "
                               "content: {type: 'text', text: 'hello'}})})", url)
        assert result["status"] == 200 and '"lastChunk": true' in result["body"], result


@pytest.mark.timeout(60)
def test_a_page_under_a_foreign_host_name_is_refused_which_stops_dns_rebinding():
    agent = CountingGatedAgent()
    with serve(agent) as url, chromium("--host-resolver-rules=MAP rebound.test 127.0.0.1") as rebinding:
        page = rebinding.new_page()  # rebound.test resolves to the agent's address, as after a rebinding
        response = page.goto(f"http://rebound.test:{url.rsplit(':', 1)[1]}/ui")
        assert response.status == 421 and "allowed_hosts" in response.json()["error"]
        status = page.evaluate("() => fetch('/ui/sessions', {method: 'POST', headers: {'Content-Type': "
                               "'application/json'}, body: JSON.stringify({prompt: 'x'})}).then((r) => r.status)")
        assert status == 421 and list(agent.sessions) == [] and agent.runs == 0


# ---------------------------------------------------------------- --serve and --url
@pytest.mark.timeout(60)
def test_serve_prints_the_page_address_and_stops_cleanly_on_sigterm():
    with serve_script(SCRIPT) as server:  # and SIGTERM stops it with exit status 0
        assert server.name == "Streaming UI demo" and re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url), server.url
        assert eventually(lambda: len(server.stdout_lines) > 1), server.stdout
        assert server.stdout_lines[1].startswith(f"Open the web UI: {server.url}/ui")
        status, page = call(f"{server.url}/ui")
        assert status == 200 and 'id="pause"' in page
    assert "Stopped." in server.stdout
    assert library_noise(server.stdout + server.stderr) == [] and server.stderr == ""


@pytest.mark.timeout(30)
def test_url_of_another_agent_is_refused_in_one_line(capsys):
    class PlainAgent(StreamingAgent):  # an A2A agent, but not this demo's
        async def stream_response(self, message):
            yield "hello"

    with serve(PlainAgent(name="plain")) as url:
        assert ui.main(["--url", url, "--fast", "--scripted"]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f'error: {url} serves "plain", not "Streaming UI demo": '
                                         f"point --url at python {SCRIPT} --serve"]
    assert captured.out == ""


@pytest.mark.timeout(30)
def test_url_of_a_server_without_the_session_endpoints_is_a_clear_error(capsys):
    class SameNameNoSessions(StreamingAgent):  # named like this demo's agent, but without /ui/sessions
        async def stream_response(self, message):
            yield "hello"

    with serve(SameNameNoSessions(name="Streaming UI demo")) as url:
        assert ui.main(["--url", url, "--fast", "--scripted"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"HTTP 40[45] from /ui/sessions: this server has no stream-session endpoints", err), err
    assert f"point --url at a server started with: python {SCRIPT} --serve" in err
    assert "JSONDecode" not in err and "Expecting value" not in err and len(err.splitlines()) == 1


def test_url_where_nothing_listens_says_cannot_connect(capsys):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert ui.main(["--url", f"http://127.0.0.1:{port}", "--fast"]) == 1
    err = capsys.readouterr().err
    assert f"cannot connect to http://127.0.0.1:{port}: is the server running?" in err, err
    assert "ssl:default" not in err and len(err.splitlines()) == 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("flag", [["--scripted"], ["--report", "streams.json"]])
def test_client_options_are_refused_with_serve(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ui.main(["--serve", *flag])
    assert exit_info.value.code == 2 and f"{flag[0]} belongs to the client run" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_url_runs_the_client_against_a_running_server(capsys):
    with serve(ui.StoryAgent(pace=0.01)) as url:
        assert ui.main(["--url", url, "--fast", "--scripted"]) == 0
    out = capsys.readouterr().out
    assert "terminal: cancel" in out and "FAIL" not in out


def test_pace_with_url_is_refused_as_it_configures_the_agent_this_script_starts(capsys):
    with pytest.raises(SystemExit) as exit_info:  # it was ignored: the agent at --url has its own pace
        ui.main(["--url", "http://127.0.0.1:9", "--pace", "0.1"])
    assert exit_info.value.code == 2 and "--pace configures the agent this script starts" in capsys.readouterr().err
