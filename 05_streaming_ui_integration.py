"""05 - A stream a person controls: pause, resume, cancel and reconnect act on the server.

Each answer is a session on the server that holds the agent's generator (streaming_kit's
StreamSessions): the session outlives the connection that watches it. You will see:
  1. POST /ui/sessions start a session for a question and answer with its id;
  2. GET /ui/sessions/<id>/events stream it as server-sent events, each chunk with its index as
     id: a reconnect that sends Last-Event-ID: n gets the chunks after n, no gap, no duplicate;
  3. POST /ui/sessions/<id>/pause hold the generator (nothing sent, nothing lost), .../resume let
     it go on, .../cancel close it (the agent's `finally` runs); 409 once the stream has ended;
  4. the agent: a plain stream_response, word by word; it knows nothing of sessions;
  5. the client follow the events and press the controls: in a terminal, keys p / r / c under a
     status line; without one, a scripted session pauses, resumes and cancels for you;
  6. a table of the streams and one verdict (exit 1 if a stream did not do as asked).
The web page (static/05_streaming_ui.html: EventSource, text inserted as text) uses the same endpoints.

    python 05_streaming_ui_integration.py             # keys in a terminal; scripted otherwise
    python 05_streaming_ui_integration.py --fast      # shorter pace (tests, CI)
    python 05_streaming_ui_integration.py --serve     # then open http://127.0.0.1:8105/ui
"""
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, AsyncIterator, NamedTuple, Optional

import aiohttp
from flask import Response, send_from_directory

from streaming_kit import (FINAL_SESSION_STATES, RequestProblem, SessionFinished, StreamingAgent, StreamSessions,
                           StreamTruncatedError, last_event_id, message_text, text_message)
from streaming_kit.server import problem_response
from examples_support import demo_parser, output_file, run_demo, seconds_arg, terminal_ui

DEFAULT_PORT = 8105
PAGE = Path(__file__).resolve().parent / "static" / "05_streaming_ui.html"
PROMPT = "How does this page stream an answer?"
CONTROLS = ("pause", "resume", "cancel")


# --8<-- [start:session-endpoints]
def sse(event: str, data: dict, event_id: Optional[int] = None) -> str:
    """One server-sent event; only chunks carry an id, so Last-Event-ID always names a chunk."""
    id_line = f"id: {event_id}\n" if event_id is not None else ""
    return f"event: {event}\n{id_line}data: {json.dumps(data)}\n\n"


class StreamUIAgent(StreamingAgent):
    """A StreamingAgent whose streams a person can pause, resume, cancel and reconnect to.

    POST /stream keeps working for A2A clients. Added: GET /ui (the page), POST /ui/sessions,
    GET /ui/sessions/<id> (status), GET /ui/sessions/<id>/events, POST /ui/sessions/<id>/<control>.
    """

    max_prompt_chars = 2000
    retry_ms = 500  # EventSource waits this long before reconnecting

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.sessions = StreamSessions()  # bounded: StreamSessions(max_live=16, abandon_seconds=60, ...)

    def expected_chunks(self, message) -> Optional[int]:
        """How many chunks the answer will have, for progress bars (None: unknown)."""
        return None

    def setup_routes(self, app) -> None:
        super().setup_routes(app)  # python-a2a's routes, the kit's /stream and its guard (same origin, JSON only)
        app.add_url_rule("/ui", "ui_page", self._page_view)
        app.add_url_rule("/ui/sessions", "ui_start", json_errors(self._start_view), methods=["POST"])
        app.add_url_rule("/ui/sessions/<sid>", "ui_status", json_errors(lambda sid: self._session(sid).status()))
        app.add_url_rule("/ui/sessions/<sid>/events", "ui_events", json_errors(self._events_view))
        app.add_url_rule("/ui/sessions/<sid>/<control>", "ui_control", json_errors(self._control_view),
                         methods=["POST"])

    def close_streams(self, reason: str = "server shutting down", refuse_new: bool = False) -> None:
        """End the kit's /stream responses and every session (serve() calls this on exit)."""
        super().close_streams(reason, refuse_new)
        self.sessions.cancel_all(reason)

    def _page_view(self):
        response = send_from_directory(PAGE.parent, PAGE.name, mimetype="text/html")
        response.headers["Cache-Control"] = "no-store"
        return response

    def _start_view(self):
        """1. One session per question; it keeps the message, nothing of the request (429 when full)."""
        body = self._read_json_body()  # the kit's reader: 413 past max_body_bytes, 400 if not JSON
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise RequestProblem(400, 'send a JSON object {"prompt": "your question"}')
        if len(prompt) > self.max_prompt_chars:
            raise RequestProblem(400, f"prompt over {self.max_prompt_chars} characters")
        message = text_message(prompt)
        session = self.sessions.start(lambda: self.stream_response(message), self.expected_chunks(message))
        return {**session.status(), "events": f"/ui/sessions/{session.id}/events"}, 201

    def _session(self, sid: str):
        session = self.sessions.get(sid)
        if session is None:
            raise RequestProblem(404, f"no stream session {sid!r} (finished long ago, or the server restarted)")
        return session

    def _control_view(self, sid: str, control: str):
        """3. pause / resume / cancel act on the generator; SessionFinished (409) once it has ended."""
        session = self._session(sid)
        if control not in CONTROLS:
            raise RequestProblem(404, f"unknown control {control!r}: use pause, resume or cancel")
        getattr(session, control)()
        return session.status()

    def _events_view(self, sid: str):
        """2. Start after the client's Last-Event-ID (EventSource sends it on reconnect; 400 if never sent)."""
        session = self._session(sid)
        next_index = session.index_after(last_event_id())
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Response(self._events(session, next_index), mimetype="text/event-stream", headers=headers)

    def _events(self, session, next_index: int):
        """The log from next_index on, then live chunks as they come, then the end."""
        yield f"retry: {self.retry_ms}\n\n"
        with session.watched():  # a session nobody watches is cancelled after a while
            seen_state = None
            while True:
                chunks, state = session.wait_for_news(next_index, seen_state, self.keepalive_seconds)
                for text in chunks:
                    yield sse("chunk", {"index": next_index, "text": text}, event_id=next_index)
                    next_index += 1
                if state in FINAL_SESSION_STATES:  # read with the chunks: none can follow the end
                    status = session.status()
                    yield sse("end", {"state": state, "chunks": status["published"], "error": status["error"]})
                    return
                if state != seen_state:
                    yield sse("state", {"state": state, "total": session.total})
                    seen_state = state
                elif not chunks:
                    yield ": ping\n\n"  # keeps proxies from closing a quiet (or paused) stream


def json_errors(view):
    """A view whose RequestProblem (400, 404, 409, 413, 429 ...) becomes its JSON error response."""
    def answer(**kwargs: Any):
        try:
            return view(**kwargs)
        except RequestProblem as problem:
            return problem_response(problem)
    return answer
# --8<-- [end:session-endpoints]


# --8<-- [start:agent]
def answer_chunks(prompt: str) -> list[str]:
    """The demo answer, word by word; the question is quoted back as a single chunk."""
    words = ("The agent writes this answer one word at a time. Pause, and the server stops pulling "
             "words from the agent: its generator waits, so nothing is sent and nothing is lost. "
             "Resume, and the words continue where they stopped. Cancel, and the server closes the "
             "generator, so the agent's work really ends. If the connection drops, the page "
             "reconnects with the id of the last word it saw and gets the rest.").split(" ")
    return ["You asked: ", f"\u201c{prompt}\u201d", "\n\n"] + [w + " " for w in words[:-1]] + [words[-1]]


class StoryAgent(StreamUIAgent):
    """4. Answers any question with a short explanation of this demo, one word per chunk."""

    def __init__(self, pace: float = 0.08):
        super().__init__(name="Streaming UI demo")
        self.pace = pace  # seconds per chunk: typing speed, so there is time to press pause

    def expected_chunks(self, message) -> int:
        return len(answer_chunks(message_text(message)))

    async def stream_response(self, message):
        for chunk in answer_chunks(message_text(message)):
            await asyncio.sleep(self.pace)
            yield chunk
# --8<-- [end:agent]


# --8<-- [start:client]
class SseEvent(NamedTuple):
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
    """5. The session endpoints from Python: what the terminal UI calls."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str):
        self.http, self.base_url = http, base_url

    async def start(self, prompt: str) -> dict:
        return await self._call("POST", "/ui/sessions", json={"prompt": prompt})

    async def status(self, sid: str) -> dict:
        return await self._call("GET", f"/ui/sessions/{sid}")

    async def control(self, sid: str, control: str) -> dict:
        """pause / resume / cancel: the status after it; SessionFinished if the stream has already ended."""
        return await self._call("POST", f"/ui/sessions/{sid}/{control}")

    async def events(self, sid: str, after: Optional[int] = None) -> AsyncIterator[SseEvent]:
        headers = {"Accept": "text/event-stream"}
        if after is not None:
            headers["Last-Event-ID"] = str(after)  # what EventSource sends when it reconnects
        async with self.http.get(f"{self.base_url}/ui/sessions/{sid}/events", headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status} from events: {await response.text()}")
            async for event in read_sse(response):
                yield event

    async def follow(self, sid: str, view: Any, after: Optional[int] = None) -> str:
        """Hand each event to view (chunk, state, end) until the end; the final state."""
        async for event in self.events(sid, after):
            if event.event == "chunk":
                view.chunk(event.data["index"], event.data["text"])
            elif event.event == "state":
                view.state(event.data["state"])
            elif event.event == "end":
                view.end(event.data["state"], event.data["error"])
                return event.data["state"]
        raise StreamTruncatedError(f"the events of session {sid} ended without an end event")

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict:
        """One request; the status is checked before the body is read as JSON."""
        async with self.http.request(method, self.base_url + path, **kwargs) as response:
            status, text = response.status, await response.text()
        if status in (404, 405) and path == "/ui/sessions":  # this demo's server always has that route
            raise RuntimeError(f"HTTP {status} from {path}: this server has no stream-session endpoints; "
                               f"point --url at a server started with: python {Path(__file__).name} --serve")
        try:
            body = json.loads(text)
        except ValueError:  # a proxy's error page, say: show it rather than a JSON decoding error
            raise RuntimeError(f"HTTP {status} from {path}: expected JSON, got {text[:100]!r}") from None
        if status == 409:
            raise SessionFinished(body.get("error"))
        if status >= 400:
            raise RuntimeError(f"HTTP {status} from {path}: {body.get('error')}")
        return body
# --8<-- [end:client]


async def run_client(url: str, args) -> int:
    """5. The terminal session (keys, or scripted without a terminal), then 6. the table and the one verdict."""
    interactive, hold = terminal_ui.has_terminal() and not (args.scripted or args.report), 0.1 if args.fast else 0.5
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        api = SessionAPI(http, url)
        try:
            if interactive:
                reports = await terminal_ui.keys_session(api, PROMPT)
            else:
                reports = await terminal_ui.scripted_session(api, PROMPT, "".join(answer_chunks(PROMPT)), hold)
        except (aiohttp.ClientError, RuntimeError) as exc:
            print(f"error: {url}: {exc}", file=sys.stderr)
            return 1
    return terminal_ui.finish(reports, args.report, Path(__file__).name)


def command_line():
    parser = demo_parser(__doc__, DEFAULT_PORT, script=Path(__file__).name)
    parser.server_option("--pace", type=seconds_arg(zero_ok=True),
                        help="seconds per chunk (default 0.08; --fast: 0.01, as an answer with no pace at "
                             "all is over before anyone can press pause)")
    parser.client_option("--scripted", action="store_true", help="play the scripted session even in a terminal")
    parser.client_option("--report", type=output_file(".json"), metavar="FILE.json",
                         help="write every stream as JSON (plays the scripted session)")
    return parser


def main(argv=None) -> int:
    args = command_line().parse_args(argv)
    pace = args.pace if args.pace is not None else (0.01 if args.fast else 0.08)
    return run_demo(args, lambda: StoryAgent(pace), lambda url: run_client(url, args), own_agent_only=True,
                    serve_lines=["Open the web UI: {url}/ui   (Ctrl-C to stop)"])


if __name__ == "__main__":
    sys.exit(main())
