"""The server side: StreamingAgent (a lossless /stream) and serve() (§1-§9)."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import json
import os
import select
import socket
import threading
import time
import urllib.request
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Optional

from .patches import a2a_http, replace_view
from .guard import JSONErrors, install_guard, parse_json_body
from .messages import RequestProblem, _sse, chunk_text, parse_last_event_id, parse_stream_request
from flask import Response, jsonify, request
from werkzeug.exceptions import ClientDisconnected
from werkzeug.serving import WSGIRequestHandler, make_server
from python_a2a import A2AServer, Message, MessageRole, TextContent

try:
    import resource
except ImportError:  # Windows: no fd limit to read
    resource = None

KEEPALIVE_SECONDS = 15.0  # idle gap before a ": ping" comment (proxies drop silent streams at 60 s)
MAX_BODY_BYTES = 1 << 20  # larger /stream request bodies get 413
READ_TIMEOUT_SECONDS = 5.0  # a request not fully arrived by then is closed (an SSE response is not cut)
LISTEN_BACKLOG = 2048  # connections the kernel queues while the accept thread is busy (Python's default: 128)
HANDOFF_CHUNKS = 16  # chunks an agent may run ahead of its client before it is paused
RETRY_AFTER_SECONDS = 1  # what a refused stream is told (503 + Retry-After)
_PING = object()


HANGUP = "client disconnected"


def default_max_streams() -> int:
    """The default bound on concurrent streams: half the fd limit, less a reserve.

    Each stream holds its client's socket, and an agent that calls a model often holds a
    second one upstream; the reserve keeps fds for /agent.json, log files and imports.
    """
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0] if resource else 2048
    if soft == getattr(resource, "RLIM_INFINITY", None):
        soft = 1 << 16
    return max(8, (soft - 64) // 2)


# ---------------------------------------------------------------- the agent loop
# Who started an asyncio task: a stream (_AgentRun, asgi._Stream) or a task (tasks._RunningTask), each
# with a `children` set. An agent's tasks inherit its context, so a stream or task that ends can cancel
# what its agent left running, as a loop of its own would.
_OWNER: contextvars.ContextVar[Optional[Any]] = contextvars.ContextVar("streaming_kit_owner", default=None)


class _AgentLoop:
    """One event loop in a daemon thread that runs every agent generator of this process.

    One loop, not one per stream: a chunk costs a few microseconds instead of a loop start
    per chunk, and an asyncio server could drive the same _AgentRun without threads.
    Tasks an agent starts are noted (task factory) so a stopped stream can cancel them.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        own_tasks(self.loop)
        self.hangups = _HangupWatch(self.loop)
        self.thread = threading.Thread(target=self.loop.run_forever, name="streaming_kit agent loop", daemon=True)
        self.thread.start()


def own_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Note the owner (see _OWNER) of every task made on this loop from now on; once per loop."""
    previous = loop.get_task_factory()
    if getattr(previous, "streaming_kit", False):
        return

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
        task = previous(loop, coro, **kwargs) if previous else asyncio.Task(coro, loop=loop, **kwargs)
        context = kwargs.get("context")
        owner = context.get(_OWNER) if context is not None else _OWNER.get()
        if owner is not None:  # started by an agent (or by a task it started)
            owner.children.add(task)
            task.add_done_callback(owner.children.discard)
        return task
    factory.streaming_kit = True
    loop.set_task_factory(factory)


async def cancel_owned(owner: Any, job: Optional[asyncio.Task] = None) -> None:
    """Cancel the owner's job (a stream's pump) and the tasks its agent started and left running;
    return once their finally blocks have run."""
    pending = [task for task in (job, *owner.children) if task is not None and not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


_agent_loop: Optional[_AgentLoop] = None
_agent_loop_lock = threading.Lock()


def agent_loop() -> _AgentLoop:
    """The process's agent loop, started on first use (again in a forked child: gunicorn workers)."""
    global _agent_loop
    with _agent_loop_lock:
        if _agent_loop is None or _agent_loop.pid != os.getpid():
            _agent_loop = _AgentLoop()
        return _agent_loop


class _HangupWatch:
    """Stops a run when its client closes the connection, even while the agent is idle.

    Linux: one epoll set, registered on the agent loop, asks for EPOLLRDHUP only, so bytes a
    client sends after its request do not matter (§ issue 11: one extra byte used to switch
    detection off). Elsewhere: a read peek that stops watching once the client sends more.
    A client that half-closes (shuts down only its sending side) looks the same and is
    treated as gone; HTTP clients (browsers, curl, aiohttp, requests) do not do that.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._runs: dict[int, _AgentRun] = {}
        self._lock = threading.Lock()  # an event and its fd's run are looked up as one step
        self._epoll = select.epoll() if hasattr(select, "EPOLLRDHUP") else None
        if self._epoll is not None:
            loop.call_soon(loop.add_reader, self._epoll.fileno(), self._on_hangups)

    def watch(self, sock: socket.socket, run: "_AgentRun") -> None:
        fd = sock.fileno()
        with self._lock:
            self._runs[fd] = run
            if self._epoll is not None:
                self._epoll.register(fd, select.EPOLLRDHUP)  # EPOLLHUP and EPOLLERR come anyway
        if self._epoll is None:
            self._loop.call_soon_threadsafe(self._loop.add_reader, fd, self._peek, sock, run)

    def unwatch(self, sock: socket.socket, run: "_AgentRun") -> None:
        fd = sock.fileno()
        with self._lock:
            if self._runs.get(fd) is not run:
                return
            del self._runs[fd]
            if self._epoll is not None:
                with contextlib.suppress(OSError):
                    self._epoll.unregister(fd)
        if self._epoll is None:
            self._loop.call_soon_threadsafe(self._loop.remove_reader, fd)

    def close(self) -> None:
        """Stop watching, on the loop's thread (serve_asgi's loop is ending)."""
        if self._epoll is not None:
            self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()

    def _on_hangups(self) -> None:
        with self._lock:
            gone = []
            for fd, _ in self._epoll.poll(0):
                gone.append(self._runs.pop(fd, None))
                with contextlib.suppress(OSError):
                    self._epoll.unregister(fd)
        for run in filter(None, gone):
            run.stop(HANGUP)

    def _peek(self, sock: socket.socket, run: "_AgentRun") -> None:
        try:
            closed = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return
        except OSError:
            closed = True
        self._loop.remove_reader(sock.fileno())  # readable but open: the client sent more, stop watching
        if closed:
            run.stop(HANGUP)


class _AgentRun:
    """An agent's async generator running as ONE task on the shared agent loop.

    One long-lived task (not one per chunk) so the agent's context variables and
    asyncio.timeout() blocks behave across its yields. Chunks go to the consuming thread
    through a small bounded buffer: it takes every ready chunk at once (one write for all),
    and an agent HANDOFF_CHUNKS ahead of its client waits until the client catches up, so
    nothing piles up to be lost (§1) and a slow client pauses the agent.
    """

    def __init__(self, agen: AsyncIterator, context: Optional[contextvars.Context] = None,
                 capacity: Optional[int] = None):
        self.stop_reason: Optional[str] = None
        self._agent_loop = agent_loop()
        self._loop = self._agent_loop.loop
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._ready: collections.deque = collections.deque()
        self._capacity = capacity or HANDOFF_CHUNKS
        self._end: Optional[BaseException] = None  # set once the generator is over
        self._space: Optional[asyncio.Future] = None  # what the agent awaits while the buffer is full
        self.children: set[asyncio.Task] = set()  # tasks the agent started (see own_tasks)
        self._watched: Optional[socket.socket] = None
        self._pump: Optional[asyncio.Task] = None
        self._closed = False
        # A fresh context unless told: a task outlives its request, so it must not keep Flask's.
        self._loop.call_soon_threadsafe(self._start, agen, context=context or contextvars.Context())

    def _start(self, agen: AsyncIterator) -> None:
        self._pump = self._loop.create_task(self._run(agen))

    async def _run(self, agen: AsyncIterator) -> None:
        _OWNER.set(self)  # tasks the agent starts are its children (see own_tasks)
        try:
            async with contextlib.aclosing(agen):  # a stop closes the generator: its finally runs
                async for chunk in agen:
                    space = self._put(chunk)
                    if space is not None:
                        await space
            end: BaseException = StopAsyncIteration()
        except asyncio.CancelledError:
            end = asyncio.CancelledError()
        except BaseException as exc:  # the agent's error ends the stream as an error, never the loop
            end = exc if isinstance(exc, Exception) else RuntimeError(f"the agent raised {exc!r}")
        with self._lock:
            self._end = end
            self._arrived.notify()

    def _put(self, chunk: Any) -> Optional[asyncio.Future]:
        """Buffer a chunk (agent loop); returns a future to await when the buffer is full."""
        with self._lock:
            self._ready.append(chunk)
            self._arrived.notify()
            if len(self._ready) < self._capacity:
                return None
            self._space = self._loop.create_future()
            return self._space

    def take(self, idle_seconds: float, everything: bool = True) -> list:
        """The chunks ready now (all, or the first), waiting up to idle_seconds for one: [] means silence.

        Raises StopAsyncIteration at the end, CancelledError once stopped, or the agent's error;
        chunks yielded before the end come first.
        """
        with self._lock:
            if not self._ready and self._end is None and not self.stop_reason:
                self._arrived.wait(idle_seconds)
            if self.stop_reason:
                raise asyncio.CancelledError
            if not self._ready:
                if self._end is None:
                    return []
                raise self._end
            if everything:
                chunks = list(self._ready)
                self._ready.clear()
            else:
                chunks = [self._ready.popleft()]
            space = None
            if self._space is not None and len(self._ready) <= self._capacity // 2:
                space, self._space = self._space, None
        if space is not None:  # the agent waits for room: let it go on
            self._loop.call_soon_threadsafe(_release, space)
        return chunks

    def next(self, idle_seconds: float) -> Any:
        """The next chunk, or _PING after idle_seconds of silence (raises as take() does)."""
        chunks = self.take(idle_seconds, everything=False)
        return chunks[0] if chunks else _PING

    def stop(self, reason: str) -> None:
        """Ask the run to end, from any thread: the agent is cancelled at its current await."""
        with self._lock:
            self.stop_reason = self.stop_reason or reason
            self._arrived.notify()
        self._loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        if self._pump is not None:
            self._pump.cancel()

    def watch_for_hangup(self, sock: Any) -> None:
        """Stop as soon as the client closes its socket, even while the agent is idle (see _HangupWatch)."""
        if type(sock) is socket.socket:  # a plain socket: werkzeug's and gunicorn's are
            self._watched = sock
            self._agent_loop.hangups.watch(sock, self)

    def close(self) -> None:
        """Cancel whatever still runs (the agent's own tasks too) and wait until every finally block ran."""
        if self._closed:
            return
        self._closed = True
        if self._watched is not None:
            self._agent_loop.hangups.unwatch(self._watched, self)
        asyncio.run_coroutine_threadsafe(self._finish(), self._loop).result()

    async def _finish(self) -> None:
        await cancel_owned(self, self._pump)


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # called from a thread that runs no loop
        return None


def _release(space: asyncio.Future) -> None:
    if not space.done():
        space.set_result(None)


class ServerBusy(RequestProblem):
    """A stream refused because max_streams are in flight: 503 with Retry-After, at once."""

    def __init__(self, limit: int):
        super().__init__(503, f"server busy: {limit} streams in flight (its max_streams); retry shortly")
        self.retry_after = RETRY_AFTER_SECONDS


class StreamingAgent(A2AServer):
    """An A2AServer whose /stream delivers every chunk, then lastChunk (§1–§7).

    Subclass it and write `async def stream_response(self, message)` yielding str or dict
    chunks. Every stream's generator runs as one task on the process's one agent event loop
    (a daemon thread); a small bounded buffer hands chunks to the request's thread, so
    nothing sits in a queue to be lost, a slow client pauses the agent, and a client that
    goes away closes the agent's generator.

    All streams share that loop: never block it (wrap blocking calls in asyncio.to_thread).
    An async client (aiohttp session, SDK client) may be made on first use inside
    stream_response and kept for later streams, but not in __init__, where no loop runs.
    Only stream_response's generator is closed on hang-up (and the tasks it started are
    cancelled); wrap inner async generators in `contextlib.aclosing` so they close too.
    """

    keepalive_seconds: float = KEEPALIVE_SECONDS
    max_body_bytes: int = MAX_BODY_BYTES
    max_streams: Optional[int] = None  # concurrent /stream responses + running tasks; None: default_max_streams()
    allowed_origins: tuple = ()  # web pages on other origins that may call this agent (guard.py)
    allowed_hosts: tuple = ()  # Host names to answer besides the served address and loopback
    metrics: bool = False  # True: count streams, chunks and latencies, served at /metrics (Prometheus text)
    task_log: Any = None  # where task events are kept (streaming_kit.tasks.MemoryTaskLog when None)
    max_running_tasks: Optional[int] = 1000  # tasks at work at once; past it a new one gets 503 (None: no bound)

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
        agent_loop()  # started now, with the agent: one thread for every stream, there from the start

    async def stream_response(self, message: Message) -> AsyncIterator[Any]:
        """Yield the answer chunk by chunk (override this)."""
        raise NotImplementedError(f"{type(self).__name__} must define stream_response")
        yield  # pragma: no cover - makes this an async generator

    def handle_message(self, message: Message) -> Message:
        """Non-streaming answer = the joined stream, on the loop that runs this agent's streams (the
        agent loop, or serve_asgi's), so both paths give identical text and share the agent's clients."""
        engine = getattr(self, "task_engine", None)
        loop = engine.loop if engine is not None and engine.loop is not None else agent_loop().loop
        if _running_loop() is loop:
            raise RuntimeError("handle_message blocks: from inside an agent, iterate stream_response instead")
        if loop is agent_loop().loop:
            text = self._joined_on_agent_loop(message)
        else:  # an asyncio server's loop (asgi.py), where python-a2a's routes reach it from the bridge's threads
            from .asgi import joined_text
            text = asyncio.run_coroutine_threadsafe(joined_text(self, message), loop).result()
        return Message(content=TextContent(text=text), role=MessageRole.AGENT,
                       parent_message_id=message.message_id, conversation_id=message.conversation_id)

    def _joined_on_agent_loop(self, message: Message) -> str:
        run, chunks = _AgentRun(self.stream_response(message)), []
        try:
            while True:
                try:
                    chunks += run.take(self.keepalive_seconds)
                except StopAsyncIteration:
                    break
        finally:
            run.close()
        return "".join(map(chunk_text, chunks))

    def response_headers(self, served: str) -> dict:
        """Headers added to every response of this agent's server, on both serving paths; served is
        the address the request came in on ("127.0.0.1:8106"). None by default (06 names its replica)."""
        return {}

    def setup_routes(self, app) -> None:
        """Adds python-a2a's routes, then swaps in the kit's /stream view (§7) and the A2A JSON-RPC views (§20)."""
        super().setup_routes(app)
        replace_view(app, "handle_streaming_request", self._stream_view)
        from .rpc import FlaskViews  # the A2A JSON-RPC views and the card (rpc.py builds on this module)
        FlaskViews(self, app)
        if self.metrics:
            from .metrics import metrics_for
            metrics_for(self).add_route(app)
        app.after_request(self._add_response_headers)
        install_guard(app, self)  # same-origin, known Host, JSON bodies within limits, JSON errors

    def _add_response_headers(self, response: Response) -> Response:
        served = f"{request.environ.get('SERVER_NAME', '')}:{request.environ.get('SERVER_PORT', '')}"
        response.headers.update(self.response_headers(served))
        return response

    @property
    def live_streams(self) -> int:
        """How many /stream responses (and running tasks) are in flight right now."""
        return len(self._live)

    @property
    def stream_limit(self) -> int:
        """max_streams, or the default derived from the fd limit."""
        return default_max_streams() if self.max_streams is None else self.max_streams

    def close_streams(self, reason: str = "server shutting down", refuse_new: bool = False) -> None:
        """End every in-flight stream with an error event naming the reason (and later ones too, if refuse_new)."""
        with self._live_lock:
            self._refuse_reason = reason if refuse_new else None
            live = list(self._live)
        for run in live:
            run.stop(reason)

    def _admit(self, start: Callable[[], _AgentRun], refuse: bool = True) -> _AgentRun:
        """Start and track a run; ServerBusy instead when stream_limit runs are in flight (if refuse)."""
        limit = self.stream_limit
        with self._live_lock:
            if refuse and len(self._live) >= limit:
                raise ServerBusy(limit)
            run = start()
            self._live.add(run)
            if self._refuse_reason:  # arrived while the server is shutting down
                run.stop(self._refuse_reason)
        return run

    def _track(self, run: _AgentRun) -> None:
        """Count a run started elsewhere (tasks.py calls this); it counts towards the bound, is never refused."""
        self._admit(lambda: run, refuse=False)

    def _untrack(self, run: _AgentRun) -> None:
        with self._live_lock:
            self._live.discard(run)

    def _end_run(self, run: _AgentRun) -> None:
        run.close()  # the agent's finally blocks have run before the stream counts as over
        self._untrack(run)

    def _stream_view(self):
        """POST /stream: validate, admit, then answer with the SSE generator (4xx JSON on bad input, 503 when full)."""
        try:
            message, after = self._read_stream_request()
            run = self._admit(lambda: _AgentRun(self.stream_response(message), contextvars.copy_context()))
        except RequestProblem as problem:
            return problem_response(problem)
        run.watch_for_hangup(request.environ.get("werkzeug.socket") or request.environ.get("gunicorn.socket"))
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        events = self._sse_events(run, after)
        if self.metrics:
            from .metrics import metrics_for
            events = metrics_for(self).track(events)
        response = Response(events, mimetype="text/event-stream", headers=headers)
        response.call_on_close(lambda: self._end_run(run))  # also when the body is never iterated
        return response

    def _read_stream_request(self) -> tuple[Message, int]:
        """The message and the resume point (Last-Event-ID: skip chunks up to that index)."""
        last_id = last_event_id()
        return parse_stream_request(self._read_json_body()), (-1 if last_id is None else last_id)

    def _read_json_body(self) -> Any:
        """The request's JSON; RequestProblem 413 past max_body_bytes, 400 if not JSON, 408 if it stalls."""
        too_big = RequestProblem(413, f"request body over {self.max_body_bytes} bytes")
        if (request.content_length or 0) > self.max_body_bytes:
            raise too_big
        request.max_content_length = self.max_body_bytes + 1  # a body without a length stops there
        try:
            raw = request.get_data(cache=True)  # cached: python-a2a's own views may read it again
        except (TimeoutError, ClientDisconnected):  # serve()'s read timeout, or a cut connection
            raise RequestProblem(408, "request body not received in full") from None
        if len(raw) > self.max_body_bytes:
            raise too_big
        return parse_json_body(raw)  # InvalidJSON (400): not JSON, NaN/Infinity, nested too deep

    def _sse_events(self, run: _AgentRun, after: int) -> Iterator[str]:
        """Frame the run's chunks as SSE, every ready one in one write, then the lastChunk marker."""
        index = 0
        try:
            yield ": stream open\n\n"  # sends the headers at once
            while True:
                try:
                    chunks = run.take(self.keepalive_seconds)
                except StopAsyncIteration:
                    break
                except asyncio.CancelledError:
                    if run.stop_reason != HANGUP:
                        yield error_event(run.stop_reason or "stream cancelled", index)
                    return
                except Exception as exc:
                    yield agent_error_event(exc, index)
                    return
                text, index = frame_chunks(chunks, index, after)
                if text:
                    yield text
            yield last_chunk_event(index)
        finally:
            self._end_run(run)


def error_event(error: str, index: int) -> str:
    """The stream ends with an error (the agent's, or why it was stopped) after `index` chunks."""
    return _sse({"error": error, "index": index}, "error")


def agent_error_event(exc: Exception, index: int) -> str:
    """§2: the agent's exception, as the error event the client reads."""
    return error_event(f"{type(exc).__name__}: {exc}", index)


def last_chunk_event(index: int) -> str:
    """The final marker after `index` chunks: nothing was lost."""
    return _sse({"content": "", "index": index, "append": True, "lastChunk": True}, event_id=index)


def frame_chunks(chunks: list, index: int, after: int) -> tuple[str, int]:
    """The SSE text for a batch of chunks numbered from index (those up to `after` skipped: a resume),
    and the next index; a ping comment for an empty batch (silence for keepalive_seconds)."""
    if not chunks:
        return ": ping\n\n", index
    events = [_chunk_event(chunk, i) for i, chunk in enumerate(chunks, index) if i > after]
    return "".join(events), index + len(chunks)


def _chunk_event(chunk: Any, index: int) -> str:
    """_sse({"content": chunk, "index": index, "append": True}, event_id=index), byte for byte, with less work."""
    return f'id: {index}\ndata: {{"content": {json.dumps(chunk)}, "index": {index}, "append": true}}\n\n'


def problem_response(problem: RequestProblem):
    """A RequestProblem as its JSON error response (503s say when to retry)."""
    response = jsonify({"error": str(problem)})
    response.status_code = problem.status
    if isinstance(problem, ServerBusy):
        response.headers["Retry-After"] = str(problem.retry_after)
    return response


def last_event_id() -> Optional[int]:
    """The request's Last-Event-ID as a number (None when absent); RequestProblem(400) if not one."""
    return parse_last_event_id(request.headers.get("Last-Event-ID"))  # the same rule on both serving paths


# ---------------------------------------------------------------- serving
class _RequestHandler(WSGIRequestHandler):
    """werkzeug's request handler with a write buffer, TCP_NODELAY and a read timeout.

    werkzeug writes a chunk as its size line, the data and a CRLF, then flushes: unbuffered
    that is three sends per event, buffered one. The timeout closes a request that has not
    fully arrived (each such socket holds a thread); serve() lifts it once an event stream starts.
    """

    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    timeout = READ_TIMEOUT_SECONDS

    def finish(self) -> None:
        with contextlib.suppress(OSError):  # the client left with output still buffered: nobody to tell
            super().finish()

    def log_error(self, format: str, *args: Any) -> None:
        if "timed out" not in format:  # a closed slow request is routine, not an error to print
            super().log_error(format, *args)


def _no_timeout_once_streaming(app: Callable) -> Callable:
    """WSGI wrapper: an event stream's socket loses the read timeout (it bounds requests, not responses)."""
    def app_lifting_timeout(environ: dict, start_response: Callable):
        def start(status: str, headers: list, exc_info: Any = None):
            sock = environ.get("werkzeug.socket")
            if sock is not None and any(name.lower() == "content-type" and value.startswith("text/event-stream")
                                        for name, value in headers):
                sock.settimeout(None)
            return start_response(status, headers, exc_info)
        return app(environ, start)
    return app_lifting_timeout


@contextlib.contextmanager
def serve(agent: A2AServer, host: str = "127.0.0.1", port: int = 0, *, max_streams: Optional[int] = None,
          read_timeout: Optional[float] = READ_TIMEOUT_SECONDS, backlog: int = LISTEN_BACKLOG) -> Iterator[str]:
    """Run the agent's Flask app in a background thread; yields its base URL (§9).

    Port 0 picks a free port. max_streams sets the agent's bound on concurrent streams (503
    past it); read_timeout closes requests that have not arrived by then (None: never);
    backlog is the listen queue. On exit, in-flight streams are ended and the server stopped.
    """
    # Bind the socket here: werkzeug would print and sys.exit(1) on a busy port; this raises OSError.
    listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                    backlog=backlog)
    handler = type("RequestHandler", (JSONErrors, _RequestHandler), {"timeout": read_timeout})  # errors as JSON
    try:
        app = _no_timeout_once_streaming(a2a_http.create_flask_app(agent))
        server = make_server(host, port, app, threaded=True, request_handler=handler, fd=listener.fileno())
    finally:
        listener.close()  # werkzeug works on its own duplicate of the socket
    server.block_on_close = False  # else every accept walks a list of all request threads
    url = f"http://[{host}]:{server.port}" if ":" in host else f"http://{host}:{server.port}"
    if hasattr(agent, "agent_card"):
        agent.agent_card.url = url
    if isinstance(agent, StreamingAgent):
        agent._refuse_reason = None  # an agent served again accepts streams again
        if max_streams is not None:
            agent.max_streams = max_streams
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
