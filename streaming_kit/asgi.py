"""The asyncio serving path: the same agents, endpoints and guarantees as serve(), on one event loop.

    app = asgi_app(MyAgent())                 # an ASGI app: run it with uvicorn, hypercorn, ...
    with serve_asgi(MyAgent()) as url:        # or in a background thread, like serve()

No threads per stream: each stream is one task on the server's loop, so thousands of slow streams
cost little. Served here: /stream (python-a2a's dialect, lossless), A2A JSON-RPC v0.3/v1.0 on POST /
and /a2a, python-a2a's task endpoints, the agent card (streaming_kit/rpc.py answers them all) and
/metrics. Every other route (python-a2a's /tasks/send, /a2a/health ..., and those a subclass adds in
setup_routes) is answered by the agent's own Flask app through a2wsgi's thread pool, after the same
checks; a streaming view of one's own served that way holds a thread and misses hang-ups: serve()
such an agent (or gunicorn).

Under your own uvicorn, uvicorn.run(app, http=h11_watching_hangups()): uvicorn waits for ever for a
request that never fully arrives, and (Linux) stops reading a connection when bytes follow a request
and then misses the client hanging up; this protocol fixes both (serve_asgi uses it).
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import select
import socket
import threading
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, Optional

from .guard import MAX_LINE_BYTES, boundary_refusal, cors_headers, head_refusal, is_json_type, parse_json_body
from .messages import RequestProblem, chunk_text, parse_last_event_id, parse_stream_request
from .patches import a2a_http
from .rpc import CARD_PATHS, SSE_HEADERS, A2ARequests, Reply
from .server import (HANDOFF_CHUNKS, HANGUP, READ_TIMEOUT_SECONDS, RETRY_AFTER_SECONDS, _OWNER, StreamingAgent,
                     _HangupWatch, agent_error_event, cancel_owned, error_event, frame_chunks,
                     last_chunk_event, own_tasks)
from python_a2a import Message

Send = Callable[[dict], Awaitable[None]]
Receive = Callable[[], Awaitable[dict]]
_END = object()


class _Stopped(Exception):
    """The stream was stopped (close_streams, shutdown): the reason goes to the client as an error event."""


class _Stream:
    """One /stream response: the agent's generator as ONE task on the loop (context variables and
    asyncio.timeout() hold across its yields), handing chunks to the response through a small
    bounded buffer (the response takes every ready chunk at once; an agent HANDOFF_CHUNKS ahead
    of a slow client waits), stoppable from any thread (close_streams).

    Cheap per chunk: no task, no asyncio.wait and no timer per chunk, only a future set when the
    response is waiting; the keep-alive timer is armed once per quiet spell, not once per chunk.
    """

    def __init__(self, agen: AsyncIterator, keepalive_seconds: float, capacity: int = HANDOFF_CHUNKS):
        self.loop = asyncio.get_running_loop()
        own_tasks(self.loop)  # tasks the agent starts are noted, so close() can cancel them
        self.stop_reason: Optional[str] = None
        self.keepalive_seconds, self.capacity = keepalive_seconds, capacity
        self.ready: collections.deque = collections.deque()
        self.end: Optional[BaseException] = None  # set once the generator is over
        self.children: set[asyncio.Task] = set()  # tasks the agent started (see server.own_tasks)
        self.job: Optional[asyncio.Task] = None
        self._space: Optional[asyncio.Future] = None  # what the agent awaits while the buffer is full
        self._arrival: Optional[asyncio.Future] = None  # what the response awaits while the buffer is empty
        self._keepalive: Optional[asyncio.TimerHandle] = None
        self._last_sent = self.loop.time()
        self.job = self.loop.create_task(self._run(agen))

    async def _run(self, agen: AsyncIterator) -> None:
        _OWNER.set(self)  # in the job's own context: the tasks the agent starts are its children
        try:
            async with contextlib.aclosing(agen):  # a stop closes the generator: its finally runs
                async for chunk in agen:
                    self.ready.append(chunk)
                    self._wake()
                    if len(self.ready) >= self.capacity:  # the client is behind: wait for it
                        self._space = self.loop.create_future()
                        await self._space
            self.end = StopAsyncIteration()
        except asyncio.CancelledError:
            self.end = _Stopped(self.stop_reason or "stream cancelled")
            raise
        except Exception as exc:  # §2: the agent's error ends the stream as an error
            self.end = exc
        finally:
            self._wake()

    async def take(self) -> list:
        """Every chunk ready now, waiting for one; [] after keepalive_seconds of silence (send a ping).

        Raises _Stopped once stopped (stop_reason says why), StopAsyncIteration at the end, or
        the agent's error; chunks yielded before the end come first.
        """
        while not self.ready and self.end is None and not self.stop_reason:
            quiet = self.loop.time() - self._last_sent
            if quiet >= self.keepalive_seconds:
                self._last_sent = self.loop.time()
                return []
            if self._keepalive is None:  # one timer per quiet spell; it re-checks when it fires
                self._keepalive = self.loop.call_later(self.keepalive_seconds - quiet, self._keepalive_due)
            self._arrival = self.loop.create_future()
            await self._arrival
        if self.stop_reason:  # what is still buffered is dropped: the error event says where it stopped
            raise _Stopped(self.stop_reason)
        if not self.ready:
            raise self.end
        chunks = list(self.ready)
        self.ready.clear()
        self._last_sent = self.loop.time()
        if self._space is not None:  # the agent waits for room: let it go on
            if not self._space.done():
                self._space.set_result(None)
            self._space = None
        return chunks

    def _wake(self) -> None:
        if self._arrival is not None and not self._arrival.done():
            self._arrival.set_result(None)

    def _keepalive_due(self) -> None:
        self._keepalive = None
        self._wake()

    def stop(self, reason: str) -> None:
        """Ask the run to end, from any thread: the agent is cancelled at its current await."""
        self.stop_reason = self.stop_reason or reason
        with contextlib.suppress(RuntimeError):  # the loop is gone: nothing runs to stop
            self.loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        self.job.cancel()
        self._wake()

    async def close(self) -> None:
        """Cancel the agent and every task it started; return once their finally blocks have run."""
        if self._keepalive is not None:
            self._keepalive.cancel()
        await cancel_owned(self, self.job)


# Threads of the bridge to the agent's Flask app (python-a2a's other routes, setup_routes' own).
# Those answers are short, except python-a2a's non-streaming calls (tasks/send, a message on POST /),
# which hold a thread until the agent's whole answer is in: 32 run at once, more wait their turn in
# the pool's queue instead of costing a thread each. Threads start on demand: an agent never asked
# such a request starts none. Every stream is served natively and costs no thread.
FALLBACK_THREADS = 32
# At most this many bridged requests at once, running or waiting (each holds its body, up to
# max_body_bytes): past it 503 with Retry-After at once, as for streams past max_streams.
FALLBACK_LIMIT = 4 * FALLBACK_THREADS


class ASGIApp:
    """A StreamingAgent as an ASGI 3 application.

    Its streams, the A2A JSON-RPC methods, the card and /metrics are answered here, on the loop;
    any other (method, path) by the agent's own Flask app (python-a2a's routes, and any a subclass
    adds in setup_routes) through a2wsgi's thread pool, after this app's own checks.
    """

    def __init__(self, agent: StreamingAgent):
        self.agent = agent
        self.requests = A2ARequests(agent)
        self.engine = self.requests.engine
        self.flask_app = a2a_http.create_flask_app(agent)  # with the kit's guard: setup_routes installs it
        self._bridge: Optional[Callable] = None  # a2wsgi's, made on first use
        self._bridged = 0  # requests in _fallback now (bounded by FALLBACK_LIMIT)
        self.routes: dict[tuple[str, str], Callable] = {("POST", "/stream"): self._stream}
        for path in ("/", "/a2a"):
            self.routes[("POST", path)] = self._rpc
        for path in ("/tasks/stream", "/a2a/tasks/stream"):
            self.routes[("POST", path)] = self._python_a2a_stream
        for method in ("cancel", "get"):
            for path in (f"/tasks/{method}", f"/a2a/tasks/{method}"):
                self.routes[("POST", path)] = self._python_a2a_task(f"tasks/{method}")
        for path in CARD_PATHS:
            self.routes[("GET", path)] = self._card
        if agent.metrics:
            self.routes[("GET", "/metrics")] = self._metrics

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        self.engine.adopt_running_loop()  # tasks run on this server's loop: no thread, no hop
        origin = _header(scope, "origin")
        address, port = scope.get("server") or ("", "")
        # CORS headers only for a listed origin; the Flask app adds its own to what it answers
        extra = {**cors_headers(self.agent, origin), **self.agent.response_headers(f"{address}:{port}")}
        own_send = _with_headers(send, extra)
        refused = _head_refusal(scope) or boundary_refusal(self.agent, _header(scope, "host") or "", str(port), origin)
        if refused:  # an oversized head, a foreign Host (DNS rebinding) or a web page on another origin
            return await _send_json(own_send, refused[0], {"error": refused[1]})
        if scope["method"] == "OPTIONS":  # a CORS preflight that got this far is from a listed origin
            await own_send({"type": "http.response.start", "status": 204, "headers": []})
            return await own_send({"type": "http.response.body", "body": b""})
        if _declares_body(scope) and not is_json_type(_header(scope, "content-type")):
            # text/plain and forms need no CORS preflight: a web page could send them
            return await _send_json(own_send, 415, {"error": "send the body as JSON, with Content-Type: application/json"})
        if _declared_length(scope) > self.agent.max_body_bytes:  # before any endpoint, as the Flask guard does
            with contextlib.suppress(RequestProblem):
                await self._read_body(receive, scope)  # read off (up to a bound), so the client hears the 413
            return await _send_json(own_send, 413, {"error": f"request body over {self.agent.max_body_bytes} bytes"})
        handler = self.routes.get((scope["method"], scope["path"]))
        if handler is None:
            return await self._fallback(scope, receive, send, own_send)
        await handler(scope, receive, own_send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.engine.adopt_running_loop()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.agent.close_streams(refuse_new=True)
                if self._bridge is not None:  # its idle threads go; one still answering finishes first
                    self._bridge.executor.shutdown(wait=False)
                    self._bridge = None
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- the agent's own Flask app, for every route not answered here
    async def _fallback(self, scope: dict, receive: Receive, send: Send, own_send: Send) -> None:
        """The body is read here first (413 past max_body_bytes), so a slow or oversized one holds no thread."""
        if self._bridged >= FALLBACK_LIMIT:
            return await _send_json(own_send, 503, {"error": f"server busy: {FALLBACK_LIMIT} requests waiting for "
                                                             "the agent's Flask app; retry shortly"},
                                    {"Retry-After": str(RETRY_AFTER_SECONDS)})
        self._bridged += 1  # one loop: no lock needed
        try:
            try:
                raw = await self._read_body(receive, scope)
            except RequestProblem as problem:
                return await _send_json(own_send, problem.status, {"error": str(problem)})
            await self._flask(scope, raw, receive, send)
        finally:
            self._bridged -= 1

    async def _flask(self, scope: dict, raw: bytes, receive: Receive, send: Send) -> None:
        """Hand the request, its body already read, to the Flask app (which adds its own CORS headers)."""
        if self._bridge is None:
            from a2wsgi import WSGIMiddleware
            self._bridge = WSGIMiddleware(self.flask_app, workers=FALLBACK_THREADS)
        await self._bridge(_with_whole_body(scope, raw), _replaying(raw, receive), send)

    # -- python-a2a's /stream
    async def _stream(self, scope: dict, receive: Receive, send: Send) -> None:
        try:
            message = parse_stream_request(await self._body(receive, scope))
            after = parse_last_event_id(_header(scope, "last-event-id"))
            agen = self.agent.stream_response(message)
            run = self.agent._admit(lambda: _Stream(agen, self.agent.keepalive_seconds))  # or ServerBusy: 503
        except RequestProblem as problem:
            retry = {"Retry-After": "1"} if problem.status == 503 else {}
            return await _send_json(send, problem.status, {"error": str(problem)}, retry)
        try:
            events = self._metered(self._agent_events(run, -1 if after is None else after), "stream")
            await _send_sse(send, receive, events)
        finally:  # also when the client left before the first event: the run is ended either way
            await run.close()  # the agent's finally blocks have run before the stream counts as over
            self.agent._untrack(run)

    async def _agent_events(self, run: _Stream, after: int) -> AsyncIterator[str]:
        """The agent's chunks as SSE, numbered, every ready one in one write, then lastChunk (or an error event)."""
        index = 0
        while True:
            try:
                chunks = await run.take()
            except StopAsyncIteration:
                break
            except _Stopped as stopped:  # the server is shutting down, close_streams, or the agent was cancelled
                if str(stopped) != HANGUP:
                    yield error_event(str(stopped), index)
                return
            except Exception as exc:
                yield agent_error_event(exc, index)
                return
            text, index = frame_chunks(chunks, index, after)
            if text:
                yield text
        yield last_chunk_event(index)

    # -- A2A JSON-RPC and python-a2a's task endpoints
    async def _rpc(self, scope: dict, receive: Receive, send: Send) -> None:
        raw, body = await self._raw_and_json(receive, scope)
        reply = await self.requests.rpc(body, _header(scope, "a2a-version"), _header(scope, "last-event-id"))
        await self._send_reply(scope, receive, send, reply, raw, "a2a")

    async def _python_a2a_stream(self, scope: dict, receive: Receive, send: Send) -> None:
        raw, body = await self._raw_and_json(receive, scope)
        reply = await self.requests.python_a2a_stream(body, _header(scope, "last-event-id"))
        await self._send_reply(scope, receive, send, reply, raw, "task")

    def _python_a2a_task(self, method: str) -> Callable:
        async def handler(scope: dict, receive: Receive, send: Send) -> None:
            raw, body = await self._raw_and_json(receive, scope)
            await self._send_reply(scope, receive, send, await self.requests.python_a2a_task(body, method), raw)
        return handler

    async def _card(self, scope: dict, receive: Receive, send: Send) -> None:
        host = _header(scope, "host") or "{}:{}".format(*scope["server"])
        await _send_json(send, 200, self.requests.card(f"{scope.get('scheme', 'http')}://{host}"))

    async def _metrics(self, scope: dict, receive: Receive, send: Send) -> None:
        from .metrics import metrics_for
        body, content_type = metrics_for(self.agent).encoded(_header(scope, "accept") or "")
        await _send_bytes(send, 200, body, content_type)

    async def _send_reply(self, scope: dict, receive: Receive, send: Send, reply: Reply, raw: bytes,
                          stream_kind: str = "a2a") -> None:
        if reply.python_a2a:  # python-a2a's own message, conversation or task: its own view answers, as on serve()
            return await self._flask(scope, raw, receive, getattr(send, "plain", send))
        if reply.stream is None:
            return await _send_json(send, reply.status, reply.body, reply.headers)
        await _send_sse(send, receive, self._metered(reply.stream, stream_kind))

    def _metered(self, events: AsyncIterator[str], kind: str) -> AsyncIterator[str]:
        """events ("stream", "task" or "a2a" SSE), counted on /metrics when the agent has metrics on, as on serve()."""
        if not self.agent.metrics:
            return events
        from .metrics import A2A_ENDS, STREAM_END, TASK_END, metrics_for  # prometheus-client only when asked
        return metrics_for(self.agent).track_async(events, {"stream": STREAM_END, "task": TASK_END, "a2a": A2A_ENDS}[kind])

    # -- bodies
    async def _read_body(self, receive: Receive, scope: dict) -> bytes:
        """The request's body; RequestProblem 413 past max_body_bytes (also without a length)."""
        limit = self.agent.max_body_bytes
        if _declared_length(scope) > 16 * limit:  # too much even to read off
            raise RequestProblem(413, f"request body over {limit} bytes")
        raw, received = bytearray(), 0
        while True:
            message = await receive()
            received += len(message.get("body", b""))
            if received <= limit:
                raw += message.get("body", b"")
            elif received > 16 * limit or not message.get("more_body"):  # read off, so the client hears the 413
                raise RequestProblem(413, f"request body over {limit} bytes")
            if not message.get("more_body"):
                return bytes(raw)

    async def _body(self, receive: Receive, scope: dict) -> Any:
        """The request's JSON; RequestProblem 413 past max_body_bytes, 400 if not JSON."""
        return parse_json_body(await self._read_body(receive, scope))  # InvalidJSON: NaN/Infinity, too deep ...

    async def _raw_and_json(self, receive: Receive, scope: dict) -> tuple[bytes, Any]:
        """(the body, its JSON) or (b"", the RequestProblem), for the endpoints that answer problems in JSON-RPC."""
        try:
            raw = await self._read_body(receive, scope)
            return raw, parse_json_body(raw)
        except RequestProblem as problem:
            return b"", problem


def _head_refusal(scope: dict) -> Optional[tuple[int, str]]:
    """414/431 past http.server's limits, which serve() applies and uvicorn does not."""
    target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
    return head_refusal(target, [len(name) + len(value) + 2 for name, value in scope["headers"]])


def _declared_length(scope: dict) -> int:
    length = _header(scope, "content-length") or ""
    return int(length) if length.isdigit() else 0


def _declares_body(scope: dict) -> bool:
    """Whether the request says a body follows (a length above 0, or chunked), as the Flask guard asks."""
    return _declared_length(scope) > 0 or "chunked" in (_header(scope, "transfer-encoding") or "").lower()


def _with_whole_body(scope: dict, raw: bytes) -> dict:
    """scope for a body already read in full: its length, never chunked (werkzeug reads no body without one)."""
    headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"transfer-encoding")]
    return {**scope, "headers": [*headers, (b"content-length", str(len(raw)).encode())]}


def _replaying(raw: bytes, receive: Receive) -> Receive:
    """receive, whose first message is the body already read; then the connection's own (http.disconnect)."""
    pending = [{"type": "http.request", "body": raw, "more_body": False}]

    async def replay() -> dict:
        return pending.pop() if pending else await receive()
    return replay


async def joined_text(agent: StreamingAgent, message: Message) -> str:
    """The agent's whole answer as one text, run on this loop as its streams are (handle_message's, under ASGI)."""
    run, chunks = _Stream(agent.stream_response(message), agent.keepalive_seconds), []
    try:
        while True:
            try:
                chunks += await run.take()
            except StopAsyncIteration:
                return "".join(map(chunk_text, chunks))
    finally:
        await run.close()


def _with_headers(send: Send, headers: dict) -> Send:
    """send, adding headers to the response's start; .plain is send itself (for the Flask app, which adds its own)."""
    if not headers:
        return send  # no extra call per chunk
    extra = [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]

    async def sending(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)
    sending.plain = send
    return sending


def _header(scope: dict, name: str) -> Optional[str]:
    wanted = name.encode()
    for key, value in scope["headers"]:
        if key == wanted:
            return value.decode("latin-1")
    return None


async def _send_json(send: Send, status: int, body: Any, headers: Optional[dict] = None) -> None:
    await _send_bytes(send, status, json.dumps(body).encode(), "application/json", headers)


async def _send_bytes(send: Send, status: int, data: bytes, content_type: str, headers: Optional[dict] = None) -> None:
    extra = [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type.encode()), (b"content-length", str(len(data)).encode()), *extra]})
    await send({"type": "http.response.body", "body": data})


async def _send_sse(send: Send, receive: Receive, events: AsyncIterator[str]) -> None:
    """Stream SSE text; a client that hangs up cancels the producer at once, even while it is idle."""
    headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
    headers += [(k.lower().encode(), v.encode()) for k, v in SSE_HEADERS.items()]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b": stream open\n\n", "more_body": True})

    async def pump() -> None:
        async for text in events:
            await send({"type": "http.response.body", "body": text.encode(), "more_body": True})

    async def hangup() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    pumping, listening = asyncio.ensure_future(pump()), asyncio.ensure_future(hangup())
    try:
        done, _ = await asyncio.wait({pumping, listening}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for job in (pumping, listening):
            job.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await pumping
        await events.aclose()
    if pumping in done and pumping.exception() is None:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def asgi_app(agent: StreamingAgent) -> ASGIApp:
    """The agent as an ASGI app (uvicorn, hypercorn): uvicorn 'module:app' with app = asgi_app(Agent())."""
    return ASGIApp(agent)


def h11_watching_hangups(hangups: Optional[_HangupWatch] = None,
                         read_timeout: Optional[float] = READ_TIMEOUT_SECONDS) -> type:
    """uvicorn's h11 protocol with serve()'s two connection guards: a read timeout, and a hang-up watch.

    Read timeout: uvicorn waits for ever for a request that never fully arrives (a head cut short, a
    body that stops), each costing a socket; a connection whose request is not in within read_timeout
    seconds is closed (408 JSON when part of a request came), as serve() does. The response is never
    timed: an event stream that has started is not cut. None turns it off.
    Hang-ups: uvicorn pauses reading a connection when bytes follow the request being answered
    (pipelining, or a stray byte) and then never sees the client leave: the app gets no
    http.disconnect and the agent runs on. On Linux every connection is watched for EPOLLRDHUP
    (server.py's _HangupWatch, on the serving loop) and closed when the client has gone, so the app
    hears http.disconnect at once. Pass the watch, or one is made on the running loop at first use.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol
    watching = hasattr(select, "EPOLLRDHUP")  # elsewhere the watch would take the transport's own reader

    class H11Guarded(H11Protocol):
        watch = hangups

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self.read_timer: Optional[asyncio.TimerHandle] = None
            self._arm_read_timer()
            if watching:
                if H11Guarded.watch is None:
                    H11Guarded.watch = _HangupWatch(asyncio.get_running_loop())
                self.watched_socket = transport.get_extra_info("socket")
                self.watch.watch(self.watched_socket, self)

        def handle_events(self) -> None:
            super().handle_events()
            if self.read_timer is not None and self.conn.their_state in (h11.DONE, h11.MUST_CLOSE):
                self.read_timer.cancel()  # the request is in: from here on only the response runs
                self.read_timer = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_read_timer()  # a kept-alive connection: the next request gets read_timeout too

        def connection_lost(self, exc: Optional[Exception]) -> None:
            if self.read_timer is not None:
                self.read_timer.cancel()
            if watching:
                self.watch.unwatch(self.watched_socket, self)  # before the transport closes the fd
            super().connection_lost(exc)

        def _arm_read_timer(self) -> None:
            if self.read_timer is not None:
                self.read_timer.cancel()
            self.read_timer = None if read_timeout is None else self.loop.call_later(read_timeout, self._read_timed_out)

        def _read_timed_out(self) -> None:
            self.read_timer = None
            if self.transport.is_closing() or self.conn.their_state in (h11.DONE, h11.MUST_CLOSE):
                return
            started = self.cycle is not None and self.cycle.response_started
            part_came = self.conn.their_state is h11.SEND_BODY or bool(self.conn.trailing_data[0])
            if part_came and not started:
                self.transport.write(_TIMED_OUT)
            self.transport.close()  # uvicorn tells the app, if one is waiting: http.disconnect

        def stop(self, reason: str) -> None:  # the watch saw the client hang up
            self.transport.close()  # uvicorn then tells the app: http.disconnect

    return H11Guarded


_TIMED_OUT_BODY = json.dumps({"error": "request not received in full"}).encode()
_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
              b"content-length: %d\r\n\r\n%s" % (len(_TIMED_OUT_BODY), _TIMED_OUT_BODY))


def _tcp_listener(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket of protocol IPPROTO_TCP: asyncio sets TCP_NODELAY only on connections of such
    a socket (socket.create_server's says 0), and without it every response on a kept-alive connection
    waited ~40 ms (Nagle's algorithm holding its body for the client's delayed ACK of its headers)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name == "posix":  # as socket.create_server does: a restarted server rebinds at once
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def serve_asgi(agent: StreamingAgent, host: str = "127.0.0.1", port: int = 0, *,
               max_streams: Optional[int] = None,
               read_timeout: Optional[float] = READ_TIMEOUT_SECONDS) -> Iterator[str]:
    """Like serve(), on uvicorn in a background thread: yields the base URL; port 0 picks a free port.
    max_streams sets the agent's bound on concurrent streams (503 past it), as serve()'s does;
    read_timeout closes requests that have not arrived by then (None: never), as serve()'s does."""
    import uvicorn
    listener = _tcp_listener(host, port, backlog=2048)
    url = f"http://[{host}]:{listener.getsockname()[1]}" if ":" in host else f"http://{host}:{listener.getsockname()[1]}"
    if hasattr(agent, "agent_card"):
        agent.agent_card.url = url
    agent._refuse_reason = None  # an agent served again accepts streams again
    if max_streams is not None:
        agent.max_streams = max_streams
    config = uvicorn.Config(asgi_app(agent), log_config=None, log_level="warning", access_log=False,
                            lifespan="on", timeout_keep_alive=5,  # a head up to the guard's limits reaches it whole:
                            h11_max_incomplete_event_size=2 * MAX_LINE_BYTES + 1024)  # then 414/431 JSON, not text
    server = uvicorn.Server(config)

    async def run() -> None:
        hangups = _HangupWatch(asyncio.get_running_loop()) if hasattr(select, "EPOLLRDHUP") else None
        config.http = h11_watching_hangups(hangups, read_timeout)
        try:
            await server.serve(sockets=[listener])
        finally:
            if hangups is not None:
                hangups.close()

    thread = threading.Thread(target=lambda: asyncio.run(run()), name=f"serve_asgi {url}", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on {url}")
            thread.join(0.01)
        yield url
    finally:
        agent.close_streams(refuse_new=True)
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()
