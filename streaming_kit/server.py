"""The server side: StreamingAgent (a lossless /stream) and serve() (§1-§9)."""
from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
import urllib.request
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Optional

from .patches import a2a_http, replace_view
from .guard import JSONErrorRequestHandler, install_guard, parse_json_body
from .messages import RequestProblem, _sse, chunk_text, parse_stream_request
from flask import Response, jsonify, request
from werkzeug.serving import make_server
from python_a2a import A2AServer, Message, MessageRole, TextContent

KEEPALIVE_SECONDS = 15.0  # idle gap before a ": ping" comment (proxies drop silent streams at 60 s)
MAX_BODY_BYTES = 1 << 20  # larger /stream request bodies get 413
_PING = object()


HANGUP = "client disconnected"


class _AgentRun:
    """An agent's async generator running as ONE task on a private event loop.

    One long-lived task (not one per chunk) so the agent's context variables and
    asyncio.timeout() blocks behave across its yields. Chunks are handed over one at a time
    through a 1-slot queue: nothing piles up to be lost (§1), and the agent never runs more
    than one chunk ahead of the client. The loop only runs while next() waits.
    """

    def __init__(self, agen: AsyncIterator):
        self.loop = asyncio.new_event_loop()
        self.stop_reason: Optional[str] = None
        self._handoff: asyncio.Queue = asyncio.Queue(maxsize=1)
        self._getter: Optional[asyncio.Future] = None
        self._watched_fd: Optional[int] = None
        self._pump = self.loop.create_task(self._run(agen))

    async def _run(self, agen: AsyncIterator) -> None:
        try:
            async with contextlib.aclosing(agen):  # a stop closes the generator: its finally runs
                async for chunk in agen:
                    await self._handoff.put((True, chunk))
            await self._handoff.put((False, None))
        except Exception as exc:
            await self._handoff.put((False, exc))

    def next(self, idle_seconds: float) -> Any:
        """The next chunk, or _PING after idle_seconds of silence.

        Raises StopAsyncIteration at the end, CancelledError once stopped, or the agent's error.
        """
        if self.stop_reason:
            raise asyncio.CancelledError
        if self._getter is None or self._getter.done():
            if not self._handoff.empty():  # handed over while the loop last ran: no need to run it
                return self._unpack(self._handoff.get_nowait())
            self._getter = self.loop.create_task(self._handoff.get())
        done, _ = self.loop.run_until_complete(asyncio.wait({self._getter}, timeout=idle_seconds))
        return self._unpack(self._getter.result()) if done else _PING

    def _unpack(self, item: tuple[bool, Any]) -> Any:
        is_chunk, value = item
        if is_chunk:
            return value
        if value is not None:
            raise value
        if self.stop_reason:  # the agent swallowed the cancellation and returned: not complete
            raise asyncio.CancelledError
        raise StopAsyncIteration

    def stop(self, reason: str) -> None:
        """Ask the run to end, from any thread: the agent is cancelled at its current await."""
        self.stop_reason = self.stop_reason or reason

        def cancel() -> None:
            self._pump.cancel()
            if self._getter is not None:
                self._getter.cancel()
        with contextlib.suppress(RuntimeError):  # loop already closed: nothing left to stop
            self.loop.call_soon_threadsafe(cancel)

    def watch_for_hangup(self, sock: Any) -> None:
        """Stop as soon as the client closes its socket, even while the agent is idle.

        A client that half-closes (shuts down only its sending side) looks the same and is
        treated as gone; HTTP clients (browsers, curl, aiohttp, requests) do not do that.
        """
        if type(sock) is not socket.socket:  # a plain socket: werkzeug's and gunicorn's are
            return
        fd = self._watched_fd = sock.fileno()

        def on_readable() -> None:
            try:
                closed = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            except BlockingIOError:
                return
            except OSError:
                closed = True
            self.loop.remove_reader(fd)  # readable but open means the client sent more: stop watching
            self._watched_fd = None
            if closed:
                self.stop(HANGUP)

        self.loop.add_reader(fd, on_readable)

    def close(self) -> None:
        """Cancel whatever still runs, let every finally block run, close the loop (as asyncio.run does)."""
        if self._watched_fd is not None:
            self.loop.remove_reader(self._watched_fd)
        pending = asyncio.all_tasks(self.loop)  # the agent's own background tasks included
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.wait(pending))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


class StreamingAgent(A2AServer):
    """An A2AServer whose /stream delivers every chunk, then lastChunk (§1–§7).

    Subclass it and write `async def stream_response(self, message)` yielding str or dict
    chunks. The stream is pulled from the agent one chunk at a time in the request's own
    thread, so nothing sits in a queue to be lost, the agent never runs ahead of a slow
    client, and a client that goes away closes the agent's generator.

    Each stream runs on its own fresh event loop: create async clients (aiohttp sessions,
    SDK clients) inside stream_response, not in __init__. Only stream_response's generator
    is closed on hang-up; wrap inner async generators in `contextlib.aclosing` so they close too.
    """

    keepalive_seconds: float = KEEPALIVE_SECONDS
    max_body_bytes: int = MAX_BODY_BYTES
    allowed_origins: tuple = ()  # web pages on other origins that may call this agent (guard.py)
    allowed_hosts: tuple = ()  # Host names to answer besides the served address and loopback

    def __init__(self, name: Optional[str] = None, description: Optional[str] = None,
                 allowed_origins: Iterable[str] = (), allowed_hosts: Iterable[str] = (), **kwargs: Any):
        self.allowed_origins, self.allowed_hosts = tuple(allowed_origins), tuple(allowed_hosts)
        kwargs.setdefault("url", "http://127.0.0.1")  # serve() puts the real address in the card
        super().__init__(name=name or type(self).__name__,
                         description=description or (type(self).__doc__ or "").strip().split("\n")[0],
                         **kwargs)
        self._live: set[_AgentRun] = set()
        self._live_lock = threading.Lock()
        self._refuse_reason: Optional[str] = None

    async def stream_response(self, message: Message) -> AsyncIterator[Any]:
        """Yield the answer chunk by chunk (override this)."""
        raise NotImplementedError(f"{type(self).__name__} must define stream_response")
        yield  # pragma: no cover - makes this an async generator

    def handle_message(self, message: Message) -> Message:
        """Non-streaming answer = the joined stream, so both paths give identical text."""
        async def collect() -> str:
            return "".join([chunk_text(c) async for c in self.stream_response(message)])
        return Message(content=TextContent(text=asyncio.run(collect())), role=MessageRole.AGENT,
                       parent_message_id=message.message_id, conversation_id=message.conversation_id)

    def setup_routes(self, app) -> None:
        """Adds python-a2a's A2A routes, then swaps in the kit's /stream view (§7)."""
        super().setup_routes(app)
        replace_view(app, "handle_streaming_request", self._stream_view)
        install_guard(app, self)  # same-origin, known Host, JSON bodies within limits, JSON errors

    @property
    def live_streams(self) -> int:
        """How many /stream responses (and running tasks) are in flight right now."""
        return len(self._live)

    def close_streams(self, reason: str = "server shutting down", refuse_new: bool = False) -> None:
        """End every in-flight stream with an error event naming the reason (and later ones too, if refuse_new)."""
        with self._live_lock:
            self._refuse_reason = reason if refuse_new else None
            live = list(self._live)
        for run in live:
            run.stop(reason)

    def _track(self, run: _AgentRun) -> None:
        with self._live_lock:
            self._live.add(run)
            if self._refuse_reason:  # arrived while the server is shutting down
                run.stop(self._refuse_reason)

    def _untrack(self, run: _AgentRun) -> None:
        with self._live_lock:
            self._live.discard(run)

    def _stream_view(self):
        """POST /stream: validate, then answer with the SSE generator (4xx JSON on bad input)."""
        try:
            message, after = self._read_stream_request()
        except RequestProblem as problem:
            return jsonify({"error": str(problem)}), problem.status
        sock = request.environ.get("werkzeug.socket") or request.environ.get("gunicorn.socket")
        events = self._sse_events(message, after, sock)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Response(events, mimetype="text/event-stream", headers=headers)

    def _read_stream_request(self) -> tuple[Message, int]:
        """The message and the resume point (Last-Event-ID: skip chunks up to that index)."""
        last_id = last_event_id()
        return parse_stream_request(self._read_json_body()), (-1 if last_id is None else last_id)

    def _read_json_body(self) -> Any:
        """The request's JSON; RequestProblem 413 past max_body_bytes, 400 if it is not JSON."""
        too_big = RequestProblem(413, f"request body over {self.max_body_bytes} bytes")
        if (request.content_length or 0) > self.max_body_bytes:
            raise too_big
        request.max_content_length = self.max_body_bytes + 1  # a body without a length stops there
        raw = request.get_data(cache=True)  # cached: python-a2a's own views may read it again
        if len(raw) > self.max_body_bytes:
            raise too_big
        return parse_json_body(raw)  # InvalidJSON (400): not JSON, NaN/Infinity, nested too deep

    def _sse_events(self, message: Message, after: int, sock: Any) -> Iterator[str]:
        """Run the agent's async generator and frame each chunk as SSE, then the lastChunk marker."""
        run = _AgentRun(self.stream_response(message))
        run.watch_for_hangup(sock)
        self._track(run)
        index = 0
        try:
            yield ": stream open\n\n"  # sends the headers at once
            while True:
                try:
                    chunk = run.next(self.keepalive_seconds)
                except StopAsyncIteration:
                    break
                except asyncio.CancelledError:
                    if run.stop_reason != HANGUP:
                        yield _sse({"error": run.stop_reason or "stream cancelled", "index": index}, "error")
                    return
                except Exception as exc:  # §2: the agent's error reaches the client as an error
                    yield _sse({"error": f"{type(exc).__name__}: {exc}", "index": index}, "error")
                    return
                if chunk is _PING:
                    yield ": ping\n\n"
                    continue
                if index > after:
                    yield _sse({"content": chunk, "index": index, "append": True}, event_id=index)
                index += 1
            yield _sse({"content": "", "index": index, "append": True, "lastChunk": True}, event_id=index)
        finally:
            run.close()  # the agent's finally blocks have run before the stream counts as over
            self._untrack(run)


def last_event_id() -> Optional[int]:
    """The request's Last-Event-ID as a number (None when absent); RequestProblem(400) if not one."""
    value = request.headers.get("Last-Event-ID", "").strip()
    # no sign, ASCII digits only ("²" passes str.isdigit), at most 18 (int() of 4,301+ digits raises)
    if value and not re.fullmatch(r"[0-9]{1,18}", value):
        raise RequestProblem(400, "Last-Event-ID must be the number of the last event received")
    return int(value) if value else None


@contextlib.contextmanager
def serve(agent: A2AServer, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run the agent's Flask app in a background thread; yields its base URL (§9).

    Port 0 picks a free port. On exit, in-flight streams are ended and the server stopped.
    """
    # Bind the socket here: werkzeug would print and sys.exit(1) on a busy port; this raises OSError.
    listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        server = make_server(host, port, a2a_http.create_flask_app(agent), threaded=True, fd=listener.fileno(),
                             request_handler=JSONErrorRequestHandler)
    finally:
        listener.close()  # werkzeug works on its own duplicate of the socket
    url = f"http://[{host}]:{server.port}" if ":" in host else f"http://{host}:{server.port}"
    if hasattr(agent, "agent_card"):
        agent.agent_card.url = url
    if isinstance(agent, StreamingAgent):
        agent._refuse_reason = None  # an agent served again accepts streams again
    thread = threading.Thread(target=server.serve_forever, name=f"serve {url}", daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"{url}/agent.json", timeout=10):  # answers: ready
            pass
        yield url
    finally:
        server.shutdown()  # no new connections; requests already accepted go on
        if isinstance(agent, StreamingAgent):
            agent.close_streams(refuse_new=True)
            _wait_for(lambda: agent.live_streams == 0, seconds=5)
        server.server_close()
        thread.join(timeout=5)


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Wait until condition() is true or the deadline passes; returns the last answer."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
