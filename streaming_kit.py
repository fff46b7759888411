"""streaming_kit: correct A2A streaming on top of python-a2a 0.5.10.

Copy this one file next to your agent. It keeps python-a2a's API (A2AServer,
StreamingClient, Message) and replaces only the parts whose streaming is broken.
Each public name says which measured defect it exists for; the numbers (§n) refer
to the defect list in this project's README ("What the kit fixes").
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import errno
import importlib.abc
import importlib.machinery
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Optional, Union

# python-a2a imports openai, anthropic, boto3 and langchain at start-up (≈ 3 s) although
# every such import in it is optional. Refuse them while python_a2a loads; your own code
# can still import them afterwards. STREAMING_KIT_FULL_IMPORT=1 turns this off.
_OPTIONAL_HEAVY = ("openai", "anthropic", "boto3", "botocore", "langchain", "langchain_core",
                   "langchain_community", "langgraph")


class _SkipOptional(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes python-a2a's guarded optional imports fail fast (its `except ImportError` path)."""

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        return importlib.machinery.ModuleSpec(name, self) if top in _OPTIONAL_HEAVY else None

    def create_module(self, spec):
        raise ImportError(f"{spec.name} is not loaded while python_a2a starts")

    def exec_module(self, module):  # never reached: create_module raises
        pass


# python-a2a calls logging.basicConfig(level=INFO) on import (§5); remember the root logger
# as it was, so quiet() can undo exactly that and keep a logging set-up of your own.
_ROOT_LOGGER_BEFORE = None if "python_a2a" in sys.modules else (
    logging.getLogger().level, list(logging.getLogger().handlers))

if "python_a2a" not in sys.modules and not os.environ.get("STREAMING_KIT_FULL_IMPORT"):
    _skipper = _SkipOptional()
    sys.meta_path.insert(0, _skipper)
    try:
        import python_a2a  # noqa: F401
    finally:
        sys.meta_path.remove(_skipper)

import aiohttp
from flask import Response, jsonify, request
from werkzeug.serving import make_server
from python_a2a import (A2AConnectionError, A2AError, A2AResponseError, A2AServer, A2AStreamingError,
                        Message, MessageRole, Metadata, StreamingClient, Task, TaskState, TaskStatus,
                        TextContent)
from python_a2a.client import streaming as _a2a_client_streaming
from python_a2a.server import http as _a2a_http

# §12: client/streaming.py uses `traceback` without importing it, so every stream error
# turns into a NameError. Supplying the module restores the real exception.
_a2a_client_streaming.traceback = traceback

KEEPALIVE_SECONDS = 15.0  # idle gap before a ": ping" comment (proxies drop silent streams at 60 s)
MAX_BODY_BYTES = 1 << 20  # larger /stream request bodies get 413
_PING = object()


class StreamTruncatedError(A2AStreamingError):
    """The stream ended without its lastChunk marker: the tail was lost (§1)."""


class RequestProblem(ValueError):
    """A /stream request the server cannot use; carries the HTTP status to answer with."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


# ---------------------------------------------------------------- messages and chunks
def text_message(text: str, role: MessageRole = MessageRole.USER, metadata: Optional[dict] = None) -> Message:
    """A text Message (python-a2a's Message needs both content and role); metadata as custom fields."""
    message = Message(content=TextContent(text=text), role=role)
    if metadata:
        message.metadata = Metadata(custom_fields=dict(metadata))
    return message


def message_text(message: Message) -> str:
    """The text of an incoming message, or "" for non-text content."""
    return getattr(message.content, "text", "") or ""


def chunk_text(chunk: Any) -> str:
    """Text of a chunk of any shape python-a2a produces (§13); "" for the end marker."""
    if isinstance(chunk, str):
        return chunk
    if isinstance(chunk, dict):
        if chunk.get("lastChunk") and not chunk.get("content"):
            return ""
        for key in ("content", "text"):
            if key in chunk:
                return chunk_text(chunk[key])
        for key in ("parts", "artifacts"):
            if isinstance(chunk.get(key), list):
                return "".join(chunk_text(item) for item in chunk[key])
    if isinstance(chunk, list):
        return "".join(chunk_text(item) for item in chunk)
    return ""


def _sse(data: dict, event: Optional[str] = None, event_id: Optional[int] = None) -> str:
    """One SSE event; json.dumps keeps newlines and non-ASCII inside a single data line (§8)."""
    head = (f"event: {event}\n" if event else "") + (f"id: {event_id}\n" if event_id is not None else "")
    return f"{head}data: {json.dumps(data)}\n\n"


def parse_stream_request(body: Any) -> Message:
    """Validate a /stream body (a message, or {"message": ...}); RequestProblem(400) if unusable.

    Accepts python-a2a messages ({"content": ...}) and A2A ones ({"parts": [...]}, with v0.1
    "type" or v0.3 "kind"); several text parts are joined with newlines, not cut to the first.
    """
    if not isinstance(body, dict):
        raise RequestProblem(400, "request body must be a JSON object")
    raw = body.get("message", body)
    if not isinstance(raw, dict) or not ("content" in raw or "parts" in raw):
        raise RequestProblem(400, "missing message: send {'role': 'user', 'parts': [{'type': 'text', 'text': ...}]} "
                                  "(A2A) or {'role': 'user', 'content': {'type': 'text', 'text': ...}} (python-a2a)")
    if "parts" in raw and "content" not in raw:
        raw = {**raw, "role": raw.get("role", "user"), "parts": _joined_text_parts(raw["parts"])}
    try:
        message = Message.from_dict(raw)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RequestProblem(400, f"invalid message: {exc}") from None
    if isinstance(message.content, TextContent) and not isinstance(message.content.text, str):
        raise RequestProblem(400, "message text must be a string")
    return message


def _joined_text_parts(parts: Any) -> list:
    """A2A parts as python-a2a reads them: one text part holding every text part's text."""
    if not isinstance(parts, list) or not all(isinstance(part, dict) for part in parts):
        raise RequestProblem(400, "message parts must be a list of objects")
    texts = [part.get("text") for part in parts if (part.get("type") or part.get("kind")) == "text"]
    if not all(isinstance(text, str) for text in texts):
        raise RequestProblem(400, "message text must be a string")
    others = [part for part in parts if (part.get("type") or part.get("kind")) != "text"]
    return ([{"type": "text", "text": "\n".join(texts)}] if texts else []) + others


# ---------------------------------------------------------------- server side
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

    def __init__(self, name: Optional[str] = None, description: Optional[str] = None, **kwargs: Any):
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
        app.view_functions["handle_streaming_request"] = self._stream_view

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
        try:
            return json.loads(raw)
        except ValueError:
            raise RequestProblem(400, "request body is not valid JSON") from None

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
    if value and not re.fullmatch(r"[0-9]+", value):  # no sign, ASCII digits only ("²" passes str.isdigit)
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
        server = make_server(host, port, _a2a_http.create_flask_app(agent), threaded=True, fd=listener.fileno())
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


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def serve_until_interrupted(agent: A2AServer, host: str, port: int, extra_lines: Iterable[str] = ()) -> int:
    """`--serve`: print the address (then extra_lines, "{url}" filled in), serve until Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:  # around everything: a signal right after the "Serving" line must not escape
        with serve(agent, host, port) as url:
            print(f"Serving {agent.agent_card.name} at {url}", flush=True)
            for line in extra_lines:
                print(line.format(url=url), flush=True)
            threading.Event().wait()
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
    return 0


# ---------------------------------------------------------------- client side
class StrictStreamingClient(StreamingClient):
    """StreamingClient that raises instead of silently re-sending or truncating (§10–§14).

    `timeout` is an idle limit (no bytes for that long), not a cap on the whole stream.
    Yields content chunks ({"content", "index", "append"}) and stops at lastChunk. To leave a
    stream early and hang up at once, iterate inside `contextlib.aclosing(client.stream_response(...))`.
    """

    def __init__(self, url: str, headers: Optional[dict] = None, timeout: float = 60.0,
                 connect_timeout: float = 10.0):
        super().__init__(url, headers=headers, timeout=timeout)
        self.connect_timeout = connect_timeout

    def _create_session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout, sock_read=self.timeout)
        return aiohttp.ClientSession(headers=self.headers, timeout=timeout)

    async def send_message_async(self, message: Union[Message, str]) -> Message:
        """Non-streaming request; raises A2AConnectionError instead of returning "Error: ..." text."""
        message = text_message(message) if isinstance(message, str) else message
        try:
            async with self._create_session() as session:
                async with session.post(self.url, json=message.to_dict()) as response:
                    await _raise_for_status(response, self.url)
                    return Message.from_dict(await response.json(content_type=None))
        except aiohttp.ClientConnectorError as exc:
            raise A2AConnectionError(f"cannot connect to {self.url}: is the server running? ({exc.strerror})") from exc
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise A2AConnectionError(f"{self.url}: {type(exc).__name__}: {exc}") from exc

    async def stream_response(self, message: Union[Message, str], chunk_callback: Optional[Callable] = None,
                              after_index: Optional[int] = None) -> AsyncIterator[dict]:
        """Stream the answer; after_index resumes after that chunk (sent as Last-Event-ID)."""
        message = text_message(message) if isinstance(message, str) else message
        headers = {"Accept": "text/event-stream"}
        if after_index is not None:
            headers["Last-Event-ID"] = str(after_index)
        expected, received, finished = (after_index + 1 if after_index is not None else 0), 0, False
        try:
            async with self._create_session() as session:
                async with session.post(f"{self.url}/stream", json=message.to_dict(), headers=headers) as response:
                    await _raise_for_status(response, f"{self.url}/stream")
                    _require_event_stream(response, f"{self.url}/stream")
                    async for chunk in self._process_stream(response):
                        expected = _check_index(chunk, expected)
                        finished = isinstance(chunk, dict) and bool(chunk.get("lastChunk"))
                        if finished and not chunk_text(chunk):
                            break  # the bare end marker is not content
                        received += 1
                        if chunk_callback:
                            chunk_callback(chunk)
                        yield chunk
                        if finished:
                            break
        except asyncio.TimeoutError as exc:  # before ClientError: aiohttp's timeout is both
            raise A2AStreamingError(f"no data from {self.url} for {self.timeout:g} s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise A2AConnectionError(f"cannot connect to {self.url}: is the server running? ({exc.strerror})") from exc
        except aiohttp.ClientError as exc:
            raise A2AConnectionError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        if not finished:
            raise StreamTruncatedError(f"stream from {self.url} ended after {received} chunks "
                                       "without the lastChunk marker: its tail was lost")


def _check_index(chunk: Any, expected: int) -> int:
    """The index due next; raises if a chunk carries another one (a chunk was lost or repeated)."""
    index = chunk.get("index") if isinstance(chunk, dict) else None
    if index is None:
        return expected  # servers that do not number their chunks cannot be checked
    if index != expected:
        lost = f"#{expected}" if index == expected + 1 else f"#{expected}-#{index - 1}"
        problem = f"chunk {lost} lost" if index > expected else "a chunk repeated"
        raise A2AStreamingError(f"chunk #{index} arrived where #{expected} was due: {problem}")
    return expected + 1


def _require_event_stream(response: aiohttp.ClientResponse, where: str) -> None:
    """A 2xx that is not text/event-stream is not a stream: say so, rather than report a lost tail."""
    if response.content_type != "text/event-stream":
        raise A2AConnectionError(f"{where} answered {response.content_type or 'no content type'}, "
                                 "not text/event-stream: not an A2A streaming endpoint")


async def _raise_for_status(response: aiohttp.ClientResponse, where: str) -> None:
    """Raise for any 4xx/5xx with the server's own error text: A2AResponseError when the agent
    failed (5xx), A2AConnectionError when the request went to the wrong place or was refused."""
    if response.status < 400:
        return
    body = (await response.text())[:300]
    if "html" in response.headers.get("Content-Type", ""):  # §14: not an A2A endpoint at all
        body = "an HTML page, not an A2A answer"
        if urllib.parse.urlsplit(where).path.count("/") > 1:  # e.g. .../a2a/stream: a path was passed
            body += "; pass the server's base URL (e.g. http://127.0.0.1:8100), without a path"
    error = A2AResponseError if response.status >= 500 else A2AConnectionError
    raise error(f"HTTP {response.status} from {where}: {body}")


# ---------------------------------------------------------------- script plumbing
class _SilentTraceback:
    """Stands in for `traceback` inside python-a2a's server module: no print_exc output."""

    format_exc = staticmethod(traceback.format_exc)

    @staticmethod
    def print_exc(*args: Any, **kwargs: Any) -> None:
        pass


def quiet() -> None:
    """Silence python-a2a's prints and INFO logs and werkzeug's request log (§5).

    Rebinds `print` inside python-a2a's server module only; the script's own output stays.
    """
    _a2a_http.print = lambda *args, **kwargs: None
    _a2a_http.traceback = _SilentTraceback()
    logging.getLogger("python_a2a").setLevel(logging.CRITICAL)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    root = logging.getLogger()
    if _ROOT_LOGGER_BEFORE is None:  # python_a2a was imported before the kit: plain default
        root.setLevel(logging.WARNING)
        return
    level, handlers = _ROOT_LOGGER_BEFORE
    root.setLevel(level)
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)


def http_url(value: str) -> str:
    """argparse type for a server address: http(s)://host:port, trailing slash dropped."""
    if not value.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected http://host:port, got {value!r}")
    return value.rstrip("/")


def seconds_arg(zero_ok: bool = False) -> Callable[[str], float]:
    """argparse type for a duration: a finite number of seconds above 0 (or 0 too, with zero_ok).

    float() alone accepts "nan" and "inf": a wait of either never ends, and nan compares false
    with everything, so a later `<= 0` check lets it through."""
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and (number > 0 or (zero_ok and number == 0))):
            bound = "0 or more" if zero_ok else "above 0"
            raise argparse.ArgumentTypeError(f"expected a number of seconds {bound}, got {value!r}: a duration "
                                             f"must be {'finite' if zero_ok else 'positive and finite'}")
        return number
    return parse


def _port(value: str) -> int:
    """argparse type for a TCP port, 0 meaning any free one."""
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {value!r}")
    return int(value)


def demo_parser(description: str, default_port: int, script: Optional[str] = None,
                many_urls: bool = False) -> argparse.ArgumentParser:
    """The command-line contract every demo shares (--fast, --serve, --url, --verbose).

    many_urls=True makes --url repeatable (args.url is then a list or None).
    """
    script = script or os.path.basename(sys.argv[0])
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"examples:\n  python {script} --fast\n  python {script} --serve        "
               f"# then, in another terminal:\n  python {script} --url http://127.0.0.1:{default_port}")
    parser.add_argument("--fast", action="store_true", help="no simulated delays (tests, CI)")
    role = parser.add_mutually_exclusive_group()  # serve, or be the client of another server
    role.add_argument("--serve", action="store_true", help="only run the agent server, until Ctrl-C")
    parser.add_argument("--host", default="127.0.0.1", help="address for --serve (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=default_port,
                        help=f"port for --serve (default {default_port}; 0 picks a free one)")
    if many_urls:
        role.add_argument("--url", type=http_url, action="append", metavar="URL",
                          help="only run the client, against these running servers (repeat --url)")
    else:
        role.add_argument("--url", type=http_url, help="only run the client, against this running server")
    parser.add_argument("--verbose", action="store_true", help="show python-a2a's and werkzeug's logs")
    return parser


def run_demo(args: argparse.Namespace, make_agent: Callable[[], A2AServer],
             client: Callable[[str], Any], serve_lines: Iterable[str] = ()) -> int:
    """Dispatch the contract: --serve, --url, or server + client in one process; exit code.

    serve_lines: extra lines printed after "Serving ... at URL" with --serve ("{url}" filled in).
    """
    if not args.verbose:
        quiet()
    try:
        if args.serve:
            return serve_until_interrupted(make_agent(), args.host, args.port, serve_lines)
        if args.url:
            return asyncio.run(client(args.url))
        with serve(make_agent()) as url:
            return asyncio.run(client(url))
    except A2AError as exc:
        print(paint(f"error: {exc}", "red", sys.stderr), file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly
        return stdout_gone()
    except OSError as exc:  # e.g. --serve on a port that is taken
        where = f" on {args.host}:{args.port}" if args.serve else ""
        hint = "; choose another --port, or --port 0 for any free one" if exc.errno == errno.EADDRINUSE else ""
        print(paint(f"error: cannot serve{where}: {exc.strerror or exc}{hint}", "red", sys.stderr), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# ---------------------------------------------------------------- output
def stdout_gone() -> int:
    """After a BrokenPipeError: send the rest of stdout to /dev/null (so Python's exit flush does
    not fail again) and return 141, the status of a process ended by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def use_colour(stream=sys.stdout) -> bool:
    """Colour only on a terminal and only when NO_COLOR is not set."""
    return stream.isatty() and not os.environ.get("NO_COLOR")  # no-color.org: set and not empty


def paint(text: str, colour: str, stream=sys.stdout) -> str:
    """text in a colorama colour ("green", "red", ...), plain when colour is off."""
    if not use_colour(stream):
        return text
    import colorama
    return f"{getattr(colorama.Fore, colour.upper())}{text}{colorama.Style.RESET_ALL}"


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """A plain aligned table: the summary every demo ends with."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


# ---------------------------------------------------------------- task streaming (tasks/sendSubscribe)
# Stock python-a2a sends only "submitted" and "complete" on a task stream and fakes resubscribe
# (§16), its client posts a bare Task instead of JSON-RPC (§17), both task-stream views must be
# replaced (§18), and TaskState has no WORKING (§19). TaskStreamingAgent runs each task's async
# generator of TaskUpdates in the task's own thread (a task outlives any one connection: A2A
# lets a client drop and resubscribe) and keeps a log of every event, so every subscriber gets
# every update in order. Events are python-a2a Task dicts with metadata {"seq", "kind"}.


FINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.CANCELED, TaskState.FAILED})  # a task stream ends here


def a2a_state(state: TaskState) -> str:
    """The official A2A name of a python-a2a task state: its WAITING is A2A's "working" (§19)."""
    return "working" if state == TaskState.WAITING else state.value


_stock_task_from_google = Task.from_google_a2a.__func__


def _task_from_google_keeping_artifact_fields(cls, data: dict) -> Task:
    task = _stock_task_from_google(cls, data)
    for kept, sent in zip(task.artifacts, data.get("artifacts", [])):
        kept.update({key: value for key, value in sent.items() if key not in kept})
    return task


# Task.from_dict keeps only "parts" of A2A-style artifacts, dropping artifactId, append and
# lastChunk, so no client could assemble chunks by id. Keep the other fields as sent.
Task.from_google_a2a = classmethod(_task_from_google_keeping_artifact_fields)


@dataclass(frozen=True)
class TaskUpdate:
    """One thing a task reports while it runs: progress or an artifact chunk (§16 sends neither)."""
    text: str = ""
    metadata: dict = field(default_factory=dict)
    artifact: Optional[dict] = None

    @classmethod
    def progress(cls, text: str, step: int, steps: int) -> "TaskUpdate":
        """A WORKING status (python-a2a: WAITING, §19) for step `step` of `steps`."""
        return cls(text, {"step": step, "steps": steps, "progress": round(step / steps, 3)})

    @classmethod
    def chunk(cls, artifact_id: str, text: str, *, append: bool = False, last_chunk: bool = False,
              name: Optional[str] = None) -> "TaskUpdate":
        """A piece of artifact `artifact_id`: append=True adds to it, last_chunk=True completes it."""
        return cls(artifact={"artifactId": artifact_id, "name": name or artifact_id, "append": append,
                             "lastChunk": last_chunk, "parts": [{"type": "text", "text": text}]})


def artifact_text(artifact: dict) -> str:
    """The text of an artifact (chunk_text reads a lastChunk artifact as the /stream end marker, §1)."""
    return "".join(part.get("text", "") for part in artifact.get("parts", []) if isinstance(part, dict))


def _agent_message(text: str, metadata: Optional[dict] = None) -> dict:
    return {"role": "agent", "parts": [{"type": "text", "text": text}], **({"metadata": metadata} if metadata else {})}


class _RpcProblem(RequestProblem):
    def __init__(self, status: int, code: int, reason: str):
        super().__init__(status, reason)
        self.code = code


class _TaskRun:
    """One task: its Task, the log of every event sent for it, and its work's _AgentRun."""

    def __init__(self, task: Task, work: AsyncIterator):
        self.task = task
        self.live = _AgentRun(work)
        self.events: list[dict] = []
        self.changed = threading.Condition()

    @property
    def final(self) -> bool:
        return self.task.status.state in FINAL_STATES

    def publish(self, kind: str, status: Optional[TaskStatus] = None, artifact: Optional[dict] = None) -> None:
        """Apply a status change or artifact chunk, log it as the next event, wake subscribers."""
        with self.changed:
            if status is not None:
                self.task.status = status
            if artifact is not None:
                self._merge(artifact)
            self.events.append(self._event(kind, [artifact] if artifact else [], len(self.events)))
            self.changed.notify_all()

    def snapshot(self) -> dict:
        """The task as it stands, whole artifacts included (append=False); seq = last event in it."""
        with self.changed:
            return self._event("task", [dict(a) for a in self.task.artifacts], len(self.events) - 1)

    def events_after(self, seq: int, timeout: float) -> list[dict]:
        """Events after `seq`, waiting up to `timeout`; a finished task with none new: its last."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.events) > seq + 1 or self.final, timeout)
            return self.events[seq + 1:] or (self.events[-1:] if self.final else [])

    def wait_final(self, timeout: float) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.final, timeout)

    def _event(self, kind: str, artifacts: list[dict], seq: int) -> dict:
        status = self.task.status.to_dict()
        if kind == "artifact-update":  # content only: the progress text stays on status updates
            status.pop("message", None)
        event = {"id": self.task.id, "sessionId": self.task.session_id, "status": status,
                 "metadata": {"seq": seq, "kind": kind}}
        return {**event, "artifacts": artifacts} if artifacts else event

    def _merge(self, chunk: dict) -> None:
        stored = next((a for a in self.task.artifacts if a["artifactId"] == chunk["artifactId"]), None)
        if stored is None or not chunk["append"]:
            if stored is not None:
                self.task.artifacts.remove(stored)
            self.task.artifacts.append({**chunk, "append": False})
        else:  # a new parts list, so snapshots handed out earlier keep the text they had
            stored.update(parts=[{"type": "text", "text": artifact_text(stored) + artifact_text(chunk)}],
                          lastChunk=chunk["lastChunk"])


def _task_sse(event: dict) -> str:
    final = TaskState(event["status"]["state"]) in FINAL_STATES
    return _sse(event, "complete" if final else "update", event_id=event["metadata"]["seq"])


def _rpc_error(rpc_id: Any, problem: RequestProblem):
    error = {"code": getattr(problem, "code", -32600), "message": str(problem)}
    return jsonify({"jsonrpc": "2.0", "id": rpc_id, "error": error}), problem.status


# A2A v0.3 (message/stream) names the same events differently: parts say "kind", not "type";
# states use the official names; each event is a Task, a status-update or an artifact-update.
def _v03_parts(parts: list) -> list[dict]:
    return [{"kind": "text", "text": part.get("text", "")} for part in parts if isinstance(part, dict)]


def _v03_send_params(params: dict) -> dict:
    """v0.3 MessageSendParams as the kit's task params (a new task; contextId = sessionId)."""
    message = params.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("parts"), list):
        raise _RpcProblem(400, -32602, "params.message with a parts list is required")
    text_parts = [{"type": "text", "text": p["text"]} for p in message["parts"]
                  if isinstance(p, dict) and p.get("kind", p.get("type")) == "text" and isinstance(p.get("text"), str)]
    return {"sessionId": message.get("contextId"), "message": {"role": "user", "parts": text_parts}}


def _v03_result(event: dict) -> dict:
    """A kit task event in v0.3 form: Task, status-update (final on the last) or artifact-update."""
    state, seq = TaskState(event["status"]["state"]), event["metadata"]["seq"]
    status = {**event["status"], "state": a2a_state(state)}
    if "message" in status:
        status["message"] = {**status["message"], "kind": "message", "messageId": f"{event['id']}-{seq}",
                             "parts": _v03_parts(status["message"]["parts"])}
    artifacts = [{"artifactId": a["artifactId"], "name": a["name"], "parts": _v03_parts(a["parts"])}
                 for a in event.get("artifacts", [])]
    ids = {"taskId": event["id"], "contextId": event["sessionId"]}
    if event["metadata"]["kind"] == "task":
        return {"kind": "task", "id": event["id"], "contextId": event["sessionId"], "status": status,
                "artifacts": artifacts}
    if event["metadata"]["kind"] == "artifact-update":
        (chunk,) = event["artifacts"]
        return {"kind": "artifact-update", **ids, "artifact": artifacts[0], "append": chunk["append"],
                "lastChunk": chunk["lastChunk"]}
    return {"kind": "status-update", **ids, "status": status, "final": state in FINAL_STATES}


class TaskStreamingAgent(StreamingAgent):
    """A StreamingAgent whose tasks stream every update over tasks/sendSubscribe (§16–§19).

    Write `async def run_task(self, message)` yielding TaskUpdates: returning completes the
    task, raising fails it (the reason goes in the status message), tasks/cancel cancels it
    at its current await. tasks/resubscribe replays what a client missed (Last-Event-ID) or,
    without it, starts with the task as it stands.
    """

    cancel_wait_seconds: float = 10.0  # how long tasks/cancel waits for the work to stop

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._task_runs: dict[str, _TaskRun] = {}

    async def run_task(self, message: Message) -> AsyncIterator[TaskUpdate]:
        """The task's work, yielding TaskUpdates (override this)."""
        raise NotImplementedError(f"{type(self).__name__} must define run_task")
        yield  # pragma: no cover - makes this an async generator

    async def stream_response(self, message: Message) -> AsyncIterator[Any]:
        """/stream (and tasks/send) for a task agent: the text of its artifact chunks, in order."""
        async for update in self.run_task(message):
            if update.artifact:
                yield artifact_text(update.artifact)

    def setup_routes(self, app) -> None:
        """Also replaces both task-stream views (§18), both cancel views, and POST / and /a2a (§20)."""
        super().setup_routes(app)
        self._stock_cancel = app.view_functions["a2a_tasks_cancel"]
        self._stock_root = app.view_functions["a2a_root_post"]
        for endpoint in ("a2a_tasks_stream", "tasks_stream"):
            app.view_functions[endpoint] = self._task_stream_view
        for endpoint in ("a2a_tasks_cancel", "tasks_cancel"):
            app.view_functions[endpoint] = self._task_cancel_view
        for endpoint in ("a2a_root_post", "a2a_post"):  # the second calls the first directly, as in §18
            app.view_functions[endpoint] = self._v03_view

    def _task_stream_view(self):
        """tasks/sendSubscribe starts a task, tasks/resubscribe joins one; both answer with SSE."""
        rpc_id = None
        try:
            rpc_id, method, params = self._read_rpc("tasks/sendSubscribe")
            return self._task_stream(method, params, _task_sse)
        except RequestProblem as problem:
            return _rpc_error(rpc_id, problem)

    def _task_cancel_view(self):
        """tasks/cancel: stop the work at its current await, wait until it ended, return the Task."""
        rpc_id = None
        try:
            rpc_id, _, params = self._read_rpc("tasks/cancel")
            if str(params.get("id")) in self.tasks.keys() - self._task_runs.keys():
                return self._stock_cancel()  # a task from tasks/send: python-a2a's own bookkeeping
            return jsonify({"jsonrpc": "2.0", "id": rpc_id, "result": self._cancel(params).snapshot()})
        except RequestProblem as problem:
            return _rpc_error(rpc_id, problem)

    def _v03_view(self):
        """A2A v0.3 JSON-RPC on POST / and /a2a: message/stream, tasks/resubscribe, tasks/cancel (§20)."""
        rpc_id = None
        try:
            rpc_id, method, params = self._read_rpc("")
            if method not in ("message/stream", "tasks/resubscribe", "tasks/cancel"):
                return self._stock_root()  # anything else: python-a2a's own handling
            if method == "tasks/cancel":
                return jsonify({"jsonrpc": "2.0", "id": rpc_id, "result": _v03_result(self._cancel(params).snapshot())})
            if method == "message/stream":
                method, params = "tasks/sendSubscribe", _v03_send_params(params)
            return self._task_stream(method, params, lambda event: _sse(
                {"jsonrpc": "2.0", "id": rpc_id, "result": _v03_result(event)}, event_id=event["metadata"]["seq"]))
        except RequestProblem as problem:
            return _rpc_error(rpc_id, problem)

    def _task_stream(self, method: str, params: dict, frame: Callable[[dict], str]) -> Response:
        after = self._last_event_id()
        if method == "tasks/sendSubscribe":
            run, snapshot_first = self._start_task(params), False
        elif method == "tasks/resubscribe":
            run, snapshot_first = self._find_run(params), after is None
        else:
            raise _RpcProblem(404, -32601, f"method {method!r} not found here: "
                                            "use tasks/sendSubscribe or tasks/resubscribe")
        if after is not None and after >= len(run.events):  # a seq not sent yet: replaying "after" it would skip
            raise _RpcProblem(400, -32602, f"Last-Event-ID {after} names no update of task {run.task.id}: "
                                           f"updates 0-{len(run.events) - 1} have been sent")
        events = self._task_events(run, -1 if after is None else after, snapshot_first, frame)
        return Response(events, mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def _cancel(self, params: dict) -> _TaskRun:
        run = self._find_run(params)
        if run.final:
            state = a2a_state(run.task.status.state)
            raise _RpcProblem(409, -32002, f"task {run.task.id} is already {state}: it cannot be canceled")
        run.live.stop("canceled by the client")
        run.wait_final(self.cancel_wait_seconds)
        if run.final and run.task.status.state != TaskState.CANCELED:  # it ended first, on its own
            state = a2a_state(run.task.status.state)
            raise _RpcProblem(409, -32002, f"task {run.task.id} ended {state} before the cancel took effect")
        return run

    def _read_rpc(self, bare_method: str) -> tuple[Any, str, dict]:
        """(id, method, params) of a JSON-RPC body; a bare Task (python-a2a's client, §17) also works."""
        try:
            body = self._read_json_body()
        except RequestProblem as problem:
            raise _RpcProblem(problem.status, -32700 if problem.status == 400 else -32600, str(problem)) from None
        if not isinstance(body, dict):
            raise _RpcProblem(400, -32700, "request body must be a JSON object")
        if "jsonrpc" not in body:
            return None, bare_method, body
        if not isinstance(body.get("method"), str) or not isinstance(body.get("params"), dict):
            raise _RpcProblem(400, -32600, "a JSON-RPC request needs a method and a params object")
        return body.get("id"), body["method"], body["params"]

    def _last_event_id(self) -> Optional[int]:
        try:
            return last_event_id()
        except RequestProblem:
            raise _RpcProblem(400, -32602, "Last-Event-ID must be the seq of the last update seen") from None

    def _find_run(self, params: dict) -> _TaskRun:
        if not params.get("id"):
            raise _RpcProblem(400, -32602, "params.id (the task id) is required")
        run = self._task_runs.get(str(params["id"]))
        if run is None:
            raise _RpcProblem(404, -32001, f"task not found: {params['id']}")
        return run

    def _start_task(self, params: dict) -> _TaskRun:
        """Register the task, log "submitted", and start its work in a thread of its own."""
        try:
            message = parse_stream_request({"message": params.get("message")})
        except RequestProblem as problem:  # in JSON-RPC terms the params are wrong, not the request
            raise _RpcProblem(problem.status, -32602, f"params.message: {problem}") from None
        task = Task(id=str(params.get("id") or uuid.uuid4()), session_id=params.get("sessionId"),
                    message=params.get("message"))
        with self._live_lock:
            if task.id in self._task_runs:
                raise _RpcProblem(409, -32600, f"task id {task.id} is already in use")
            run = self._task_runs[task.id] = _TaskRun(task, self.run_task(message))
        self._track(run.live)  # close_streams() and live_streams now cover the task
        self.tasks[task.id] = task  # python-a2a's tasks/get sees it too
        run.publish("task")
        threading.Thread(target=self._work, args=(run,), name=f"task {task.id}", daemon=True).start()
        return run

    def _work(self, run: _TaskRun) -> None:
        """Pull the agent's updates one by one; the way the generator ends decides the final state."""
        try:
            while True:
                update = run.live.next(self.keepalive_seconds)
                if update is not _PING:
                    self._publish_update(run, update)
        except StopAsyncIteration:
            end = TaskStatus(state=TaskState.COMPLETED)
        except asyncio.CancelledError:
            end = TaskStatus(state=TaskState.CANCELED, message=_agent_message(run.live.stop_reason or "canceled"))
        except Exception as exc:
            end = TaskStatus(state=TaskState.FAILED, message=_agent_message(f"{type(exc).__name__}: {exc}"))
        run.live.close()  # the agent's finally blocks run first
        self._untrack(run.live)
        run.publish("status-update", end)

    @staticmethod
    def _publish_update(run: _TaskRun, update: Any) -> None:
        if not isinstance(update, TaskUpdate):
            raise TypeError(f"run_task must yield TaskUpdate objects, not {type(update).__name__}")
        if update.artifact is not None:
            run.publish("artifact-update", artifact=update.artifact)
        else:
            run.publish("status-update", TaskStatus(state=TaskState.WAITING,
                                                    message=_agent_message(update.text, update.metadata)))

    def _task_events(self, run: _TaskRun, after: int, snapshot_first: bool,
                     frame: Callable[[dict], str]) -> Iterator[str]:
        """One subscriber's SSE: the snapshot or the log after `after`, then live events to the end."""
        yield ": stream open\n\n"
        if snapshot_first:
            snapshot = run.snapshot()
            yield frame(snapshot)
            if TaskState(snapshot["status"]["state"]) in FINAL_STATES:
                return
            after = snapshot["metadata"]["seq"]
        while True:
            events = run.events_after(after, self.keepalive_seconds)
            if not events:
                yield ": ping\n\n"
                continue
            for event in events:
                yield frame(event)
            if TaskState(events[-1]["status"]["state"]) in FINAL_STATES:
                return
            after = events[-1]["metadata"]["seq"]


class TaskStreamingClient(StrictStreamingClient):
    """python-a2a's task-streaming API, strict: a cut stream or a failed call raises (§16, §17)."""

    async def tasks_send_subscribe(self, task: Task) -> AsyncIterator[Task]:
        """python-a2a's tasks_send_subscribe; raises if the stream ends before a final state."""
        async for update in _until_final(super().tasks_send_subscribe(task), self.url):
            yield update

    async def tasks_resubscribe(self, task_id: str, session_id: Optional[str] = None,
                                after: Optional[int] = None) -> AsyncIterator[Task]:
        """Rejoin a task's stream (§16); `after` = seq of the last update seen, so none repeats."""
        client = self
        if after is not None:  # python-a2a's method takes no headers: give a copy the Last-Event-ID
            client = copy.copy(self)
            client.headers = {**self.headers, "Last-Event-ID": str(after)}
        async for update in _until_final(StreamingClient.tasks_resubscribe(client, task_id, session_id), self.url):
            yield update

    async def cancel_task(self, task_id: str) -> Task:
        """tasks/cancel that raises when refused (python-a2a's A2AClient.cancel_task reports CANCELED)."""
        body = {"jsonrpc": "2.0", "id": str(uuid.uuid4()), "method": "tasks/cancel", "params": {"id": task_id}}
        try:
            async with self._create_session() as session:
                async with session.post(f"{self.url}/tasks/cancel", json=body) as response:
                    reply = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise A2AConnectionError(f"{self.url}/tasks/cancel: {type(exc).__name__}: {exc}") from exc
        if not isinstance(reply, dict) or "result" not in reply:
            raise A2AResponseError(f"tasks/cancel {task_id}: {(reply or {}).get('error', reply)}")
        return Task.from_dict(reply["result"])


async def _until_final(updates: AsyncIterator[Task], where: str) -> AsyncIterator[Task]:
    """Pass task updates through; raise where python-a2a would end quietly or invent a FAILED task."""
    last = None
    async with contextlib.aclosing(updates):  # closing early closes the HTTP stream too
        async for task in updates:
            if "seq" not in task.metadata:  # python-a2a's stand-in for an error, or an unnumbered stream
                error = (task.status.message or {}).get("error") if task.status.state == TaskState.FAILED else None
                raise A2AConnectionError(f"{where}: {error}") if error else A2AResponseError(
                    f"{where} sent a task update without metadata.seq: not a TaskStreamingAgent (§16), "
                    "so lost updates could not be noticed")
            last = task
            yield task
    if last is None or last.status.state not in FINAL_STATES:
        raise StreamTruncatedError(f"task stream from {where} ended before a final state: updates were lost")
