"""The client side: StrictStreamingClient streams from any agent and raises where others lose data (§10-§14).

It reads the agent's card and speaks whichever dialect the agent offers: python-a2a's /stream
(kit and python-a2a agents, whose card carries python-a2a's own capability flags), else A2A v1.0
SendStreamingMessage, else A2A v0.3 message/stream. The A2A dialects go through the official
a2a-sdk (card parsing with its v0.3 mapping, its JSON-RPC transports, its v0.3 <-> v1.0
conversion), imported on first use so `import streaming_kit` stays fast; this module adds what
the SDK leaves out: a stream that ends without a terminal state, or loses or repeats a chunk, raises.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import urllib.parse
import uuid
from typing import Any, AsyncIterator, Callable, Optional, Union

import aiohttp
from . import patches  # noqa: F401
from .messages import StreamTruncatedError, chunk_text, message_text, text_message
from python_a2a import (A2AConnectionError, A2AResponseError, A2AStreamingError, Message, MessageRole,
                        StreamingClient, Task, TaskState, TaskStatus, TextContent)

DIALECTS = ("python-a2a", "1.0", "0.3")  # python-a2a's /stream, A2A v1.0, A2A v0.3 (the order of preference)
PYTHON_A2A_MARKS = ("google_a2a_compatible", "parts_array_format")  # capability flags only python-a2a writes
CARD_PATHS = ("/.well-known/agent-card.json", "/agent.json")
V10_METHODS = {"message/stream": "SendStreamingMessage", "message/send": "SendMessage", "tasks/get": "GetTask",
               "tasks/cancel": "CancelTask", "tasks/resubscribe": "SubscribeToTask"}
ENDED = frozenset({"completed", "failed", "canceled", "rejected", "input-required", "auth-required"})


class TaskEndedError(A2AStreamingError):
    """The agent's task ended failed, canceled or rejected (or stopped to ask for input); the
    message is the task's own reason."""

    def __init__(self, state: str, reason: str, task_id: str = ""):
        super().__init__(reason or f"task {task_id} ended {state}")
        self.state, self.reason, self.task_id = state, reason, task_id


def choose_dialect(card: Optional[dict]) -> str:
    """The dialect to speak to the agent with this card (None: no card, a python-a2a server of old).

    python-a2a's capability flags mean /stream; else the best A2A JSON-RPC interface (1.0, then 0.3);
    a card naming no A2A interface at all is a /stream server's minimal card, as the kit always assumed."""
    if card is None or any(mark in (card.get("capabilities") or {}) for mark in PYTHON_A2A_MARKS):
        return "python-a2a"
    offered = a2a_versions(card)
    for version in ("1.0", "0.3"):
        if version in offered:
            return version
    if not card.get("supportedInterfaces") and not card.get("url"):
        return "python-a2a"  # a card that names no A2A interface at all: a /stream server with a minimal card
    raise A2AConnectionError(f"the agent card of {card.get('name')!r} offers no JSON-RPC interface of A2A "
                             "1.0 or 0.3, the only A2A transports this client speaks")


def a2a_versions(card: dict) -> set[str]:
    """The A2A versions ("1.0", "0.3") the card offers over JSON-RPC, as a2a-sdk reads the card."""
    return set(a2a_interfaces(card))


def a2a_interfaces(card: dict) -> dict[str, str]:
    """A2A version -> the URL of its JSON-RPC interface, read with a2a-sdk's parser (which maps a
    v0.3 card's url/preferredTransport to supportedInterfaces); A2AResponseError if it cannot read it."""
    from a2a.client.card_resolver import parse_agent_card
    try:
        parsed = parse_agent_card(copy.deepcopy(card))
    except Exception as exc:  # protobuf's ParseError: not a card the SDK can read
        raise A2AResponseError(f"invalid agent card: {exc}") from None
    interfaces: dict[str, str] = {}
    for interface in parsed.supported_interfaces:
        if interface.protocol_binding == "JSONRPC":
            interfaces.setdefault(_major_minor(interface.protocol_version), interface.url)
    return interfaces


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


class StrictStreamingClient(StreamingClient):
    """A client for any streaming agent that raises instead of silently re-sending or truncating (§10–§14).

    `timeout` is an idle limit (no bytes for that long), not a cap on the whole stream.
    Yields content chunks ({"content", "index", "append"}) in order, each once; raises
    StreamTruncatedError when the stream ends without its end (lastChunk, or a terminal task
    state), TaskEndedError when the agent's task fails, A2AStreamingError on an error event.
    `dialect` forces one of DIALECTS; by default the agent's card decides, on first use.
    To leave a stream early and hang up at once, iterate inside `contextlib.aclosing(...)`.
    """

    def __init__(self, url: str, headers: Optional[dict] = None, timeout: float = 60.0,
                 connect_timeout: float = 10.0, dialect: Optional[str] = None):
        if dialect is not None and dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}, not {dialect!r}")
        super().__init__(url, headers=headers, timeout=timeout)
        self.connect_timeout = connect_timeout
        self.dialect = dialect
        self.card: Optional[dict] = None  # the agent card as served, once read

    def _create_session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout, sock_read=self.timeout)
        return aiohttp.ClientSession(headers=self.headers, timeout=timeout)

    # -- which dialect
    async def resolve_dialect(self) -> str:
        """The dialect this client speaks to the agent: forced, or chosen from its card (read once)."""
        if self.dialect is None:
            self.card = await self.fetch_card()
            self.dialect = choose_dialect(self.card)
        return self.dialect

    async def fetch_card(self) -> Optional[dict]:
        """The agent card (A2A's well-known path, then python-a2a's /agent.json); None if neither serves one."""
        try:
            async with self._create_session() as session:
                for path in CARD_PATHS:
                    async with session.get(f"{self.url}{path}") as response:
                        if response.status == 200:
                            with contextlib.suppress(ValueError, aiohttp.ContentTypeError):
                                card = await response.json(content_type=None)
                                if isinstance(card, dict):
                                    return card
        except aiohttp.ClientConnectorError as exc:
            raise A2AConnectionError(f"cannot connect to {self.url}: is the server running? ({exc.strerror})") from exc
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise A2AConnectionError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        return None

    def a2a_session(self, version: str, streaming: bool = True) -> "A2ASession":
        """An a2a-sdk client for this agent in A2A `version` ("1.0" or "0.3"), with this client's limits."""
        return A2ASession(self, version, streaming)

    # -- non-streaming
    async def send_message_async(self, message: Union[Message, str]) -> Message:
        """Non-streaming request; raises A2AConnectionError instead of returning "Error: ..." text."""
        message = text_message(message) if isinstance(message, str) else message
        dialect = await self.resolve_dialect()
        if dialect != "python-a2a":
            async with self.a2a_session(dialect, streaming=False) as sdk:
                text = await sdk.send(message_text(message))
            return Message(content=TextContent(text=text), role=MessageRole.AGENT,
                           parent_message_id=message.message_id, conversation_id=message.conversation_id)
        try:
            async with self._create_session() as session:
                async with session.post(self.url, json=message.to_dict()) as response:
                    await _raise_for_status(response, self.url)
                    return Message.from_dict(await response.json(content_type=None))
        except aiohttp.ClientConnectorError as exc:
            raise A2AConnectionError(f"cannot connect to {self.url}: is the server running? ({exc.strerror})") from exc
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise A2AConnectionError(f"{self.url}: {type(exc).__name__}: {exc}") from exc

    # -- streaming
    async def stream_response(self, message: Union[Message, str], chunk_callback: Optional[Callable] = None,
                              after_index: Optional[int] = None) -> AsyncIterator[dict]:
        """Stream the answer; after_index resumes after that chunk (/stream: Last-Event-ID, and the
        agent skips; A2A, which has no chunk numbers: the agent runs again and this client skips)."""
        message = text_message(message) if isinstance(message, str) else message
        if await self.resolve_dialect() == "python-a2a":
            chunks = self._stream_python_a2a(message, after_index)
        else:
            chunks = self._stream_a2a(message, after_index)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                if chunk_callback:
                    chunk_callback(chunk)
                yield chunk

    async def _stream_python_a2a(self, message: Message, after_index: Optional[int]) -> AsyncIterator[dict]:
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

    async def _stream_a2a(self, message: Message, after_index: Optional[int]) -> AsyncIterator[dict]:
        skip = -1 if after_index is None else after_index
        answer = AnswerChecker(self.url)
        async with self.a2a_session(self.dialect) as sdk:
            async with contextlib.aclosing(sdk.stream(message_text(message))) as events:
                async for event in events:
                    for text in answer.feed(event):
                        index = answer.chunks - 1
                        if index > skip:
                            yield {"content": text, "index": index, "append": True}
                    if answer.state in ENDED:
                        break
        answer.finish()


class AnswerChecker:
    """Reads A2A events (see a2a_event) as one answer: the text of each new chunk, in order.

    A2A numbers no chunks, so this checks what it can: an artifact's first chunk starts it
    (append false), later ones append, none comes after its lastChunk, and a Task's copy of an
    artifact holds exactly the text streamed for it. finish() raises unless the task completed.
    """

    def __init__(self, where: str):
        self.where = where
        self.texts: dict[str, str] = {}  # artifactId -> text so far
        self.closed: set[str] = set()  # artifacts whose lastChunk arrived
        self.state: Optional[str] = None
        self.reason, self.task_id, self.chunks = "", "", 0

    def feed(self, event: dict) -> list[str]:
        """The new chunks' text in this event; raises when a chunk was lost or repeated."""
        self.task_id = self.task_id or event.get("task_id", "")
        if event["kind"] == "message":  # the agent answered with a message instead of a task
            self.state = "completed"
            return self._count([event["text"]])
        if event.get("state"):
            self.state, self.reason = event["state"], event.get("reason", "")
        if event["kind"] == "artifact":
            return self._count(self._chunk(event))
        if event["kind"] == "task":
            return self._count([text for artifact_id, text in event["artifacts"] if self._whole(artifact_id, text)])
        return []

    def _count(self, texts: list[str]) -> list[str]:
        self.chunks += len(texts)
        return texts

    def _chunk(self, event: dict) -> list[str]:
        artifact_id, text = event["artifact_id"], event["text"]
        problem = None
        if artifact_id in self.closed:
            problem = "a chunk arrived after its lastChunk: a chunk was repeated"
        elif event["append"] and artifact_id not in self.texts:
            problem = "its first chunk to arrive appends to text that never came: chunks were lost"
        elif not event["append"] and artifact_id in self.texts:
            problem = "it started again (append false) mid-stream: a chunk was repeated, or the text replaced"
        if problem:
            raise A2AStreamingError(f"{self.where}: artifact {artifact_id!r}: {problem}")
        self.texts[artifact_id] = self.texts.get(artifact_id, "") + text
        if event["last_chunk"]:
            self.closed.add(artifact_id)
            if not text:
                return []  # an empty last piece only closes the artifact, like /stream's end marker
        return [text]

    def _whole(self, artifact_id: str, text: str) -> bool:
        """A Task's artifact: new (its text is one chunk), or the same text as streamed."""
        if artifact_id not in self.texts:
            self.texts[artifact_id] = text
            self.closed.add(artifact_id)
            return True
        if self.texts[artifact_id] != text:
            raise A2AStreamingError(f"{self.where}: the task's artifact {artifact_id!r} holds {len(text)} characters, "
                                    f"the stream brought {len(self.texts[artifact_id])}: chunks were lost or repeated")
        return False

    def finish(self) -> None:
        """Raise unless the task completed: TaskEndedError with its reason, or StreamTruncatedError."""
        if self.state == "completed":
            return
        if self.state in ENDED:
            raise TaskEndedError(self.state, self.reason, self.task_id)
        raise StreamTruncatedError(f"stream from {self.where} ended after {self.chunks} chunks without a terminal "
                                   f"task state (last: {self.state or 'none'}): its tail may be lost")


# ---------------------------------------------------------------- A2A through a2a-sdk
class A2ASession:
    """One a2a-sdk 1.3.0 client (ClientFactory + ClientConfig(streaming=True)) for one A2A version.

    The SDK picks a card's 1.0 interface whenever there is one, so the card's interfaces are first
    narrowed to the version wanted; the factory then builds its JsonRpcTransport (1.0) or its
    CompatJsonRpcTransport (0.3). Its errors come out as the kit's, with the same messages.
    """

    def __init__(self, owner: StrictStreamingClient, version: str, streaming: bool = True):
        self.owner, self.version, self.where, self.streaming = owner, version, owner.url, streaming
        self.events_seen = 0
        self._http: Any = None
        self._client: Any = None

    async def __aenter__(self) -> "A2ASession":
        import httpx
        from a2a.client import ClientConfig, ClientFactory
        from a2a.client.card_resolver import parse_agent_card
        if self.owner.card is None:
            self.owner.card = await self.owner.fetch_card()
        if self.owner.card is None:
            raise A2AConnectionError(f"{self.where} serves no agent card at {CARD_PATHS[0]}: not an A2A agent")
        card = parse_agent_card(copy.deepcopy(self.owner.card))
        wanted = [i for i in card.supported_interfaces
                  if i.protocol_binding == "JSONRPC" and _major_minor(i.protocol_version) == self.version]
        if not wanted:
            raise A2AConnectionError(f"the agent card at {self.where} offers no JSON-RPC interface of A2A {self.version}")
        del card.supported_interfaces[:]
        card.supported_interfaces.extend(wanted)
        self.where = wanted[0].url
        headers = {k: v for k, v in self.owner.headers.items() if k.lower() != "content-type"}
        self._http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(
            self.owner.timeout, connect=self.owner.connect_timeout))
        self._client = ClientFactory(ClientConfig(streaming=self.streaming, httpx_client=self._http)).create(card)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        with contextlib.suppress(Exception):
            await self._client.close()
        await self._http.aclose()

    def _message(self, text: str, context_id: Optional[str] = None) -> Any:
        from a2a.types.a2a_pb2 import Message as A2AMessage, Part, Role, SendMessageRequest
        message = A2AMessage(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)])
        if context_id:
            message.context_id = context_id
        return SendMessageRequest(message=message)

    def stream(self, text: str, context_id: Optional[str] = None) -> AsyncIterator[dict]:
        """message/stream (0.3) or SendStreamingMessage (1.0): the events, as a2a_event dicts."""
        return self._events(self._client.send_message(self._message(text, context_id)), "message/stream")

    def subscribe(self, task_id: str, after: Optional[int] = None) -> AsyncIterator[dict]:
        """tasks/resubscribe (0.3) or SubscribeToTask (1.0); `after` goes as Last-Event-ID (the kit honours it)."""
        from a2a.client import ClientCallContext
        from a2a.types.a2a_pb2 import SubscribeToTaskRequest
        context = ClientCallContext(service_parameters={"Last-Event-ID": str(after)}) if after is not None else None
        return self._events(self._client.subscribe(SubscribeToTaskRequest(id=task_id), context=context),
                            "tasks/resubscribe")

    async def send(self, text: str) -> str:
        """message/send (0.3) or SendMessage (1.0), waiting for the end: the answer's text."""
        async with contextlib.aclosing(self._events(self._client.send_message(self._message(text)), "message/send")) as events:
            event = await anext(events)  # with streaming off, the SDK yields the one answer
        if event["kind"] == "message":
            return event["text"]
        if event["state"] not in ENDED:
            raise A2AResponseError(f"{self.where} answered message/send with task {event['task_id']} still "
                                   f"{event['state']}: the agent did not finish it")
        if event["state"] != "completed":
            raise TaskEndedError(event["state"], event["reason"], event["task_id"])
        return "".join(text for _, text in event["artifacts"])

    async def cancel(self, task_id: str) -> dict:
        """tasks/cancel (0.3) or CancelTask (1.0): the task as it stands after, as an a2a_event dict."""
        from a2a.types.a2a_pb2 import CancelTaskRequest
        with self._errors("tasks/cancel"):
            return a2a_event_of_task(await self._client.cancel_task(CancelTaskRequest(id=task_id)))

    async def get(self, task_id: str) -> dict:
        """tasks/get (0.3) or GetTask (1.0), as an a2a_event dict."""
        from a2a.types.a2a_pb2 import GetTaskRequest
        with self._errors("tasks/get"):
            return a2a_event_of_task(await self._client.get_task(GetTaskRequest(id=task_id)))

    async def _events(self, responses: AsyncIterator[Any], method: str) -> AsyncIterator[dict]:
        self.events_seen = 0
        with self._errors(method):
            async with contextlib.aclosing(responses):
                async for response in responses:
                    self.events_seen += 1
                    yield a2a_event(response)

    @contextlib.contextmanager
    def _errors(self, method: str) -> Any:
        """The SDK's exceptions as the kit's, naming the agent, the method and what went wrong."""
        method = V10_METHODS.get(method, method) if self.version == "1.0" else method
        from a2a.client.errors import A2AClientError, A2AClientTimeoutError
        from a2a.utils.errors import A2AError as SdkError
        import httpx
        try:
            yield
        except A2AClientTimeoutError as exc:
            raise A2AStreamingError(f"no data from {self.where} for {self.owner.timeout:g} s") from exc
        except A2AClientError as exc:
            cause = exc.__cause__
            if isinstance(cause, httpx.ConnectError):
                raise A2AConnectionError(f"cannot connect to {self.owner.url}: is the server running? ({cause})") from exc
            if isinstance(cause, httpx.HTTPStatusError):
                status, body = cause.response.status_code, " ".join(cause.response.text[:300].split())
                if "html" in cause.response.headers.get("content-type", ""):
                    body = "an HTML page, not an A2A answer"
                error = A2AResponseError if status >= 500 else A2AConnectionError
                raise error(f"HTTP {status} from {self.where} ({method}): {body}") from exc
            if isinstance(cause, httpx.TransportError) and self.events_seen:
                raise StreamTruncatedError(f"stream from {self.where} broke after {self.events_seen} events "
                                           f"({type(cause).__name__}): its tail was lost") from exc
            raise A2AConnectionError(f"{self.where} ({method}): {exc}") from exc
        except SdkError as exc:  # a JSON-RPC error the agent sent
            raise A2AResponseError(f"{self.where} answered {method} with an error: {exc}") from exc
        except (ValueError, TypeError) as exc:  # an event the SDK cannot read (a bad timestamp, ...)
            raise A2AResponseError(f"{self.where} sent a {method} event a2a-sdk cannot read: {exc}") from exc


def a2a_event(response: Any) -> dict:
    """One a2a-sdk StreamResponse as a plain dict: kind "task", "status", "artifact" or "message",
    states in v0.3 spelling ("working", "input-required"), text joined from the text parts."""
    kind = response.WhichOneof("payload")
    if kind == "task":
        return a2a_event_of_task(response.task)
    if kind == "status_update":
        update = response.status_update
        return {"kind": "status", "task_id": update.task_id, "context_id": update.context_id,
                "state": _state(update.status.state), "reason": _text(update.status.message.parts)}
    if kind == "artifact_update":
        update = response.artifact_update
        return {"kind": "artifact", "task_id": update.task_id, "context_id": update.context_id,
                "artifact_id": update.artifact.artifact_id, "name": update.artifact.name,
                "text": _text(update.artifact.parts), "append": update.append, "last_chunk": update.last_chunk}
    if kind == "message":
        return {"kind": "message", "task_id": response.message.task_id, "text": _text(response.message.parts)}
    raise A2AResponseError(f"an A2A stream event with no payload ({kind!r})")


def a2a_event_of_task(task: Any) -> dict:
    return {"kind": "task", "task_id": task.id, "context_id": task.context_id, "state": _state(task.status.state),
            "reason": _text(task.status.message.parts),
            "artifacts": [(artifact.artifact_id, _text(artifact.parts)) for artifact in task.artifacts]}


def a2a_event_as_task(event: dict, seq: int, state: str = "working") -> Task:
    """An a2a_event dict as the python-a2a Task update the kit's task streams carry (metadata seq, kind);
    `state` is the task's state so far, for an artifact event (which has none of its own)."""
    state = event.get("state") or state
    status_message = ({"role": "agent", "parts": [{"type": "text", "text": event["reason"]}]}
                      if event.get("reason") else None)
    if event["kind"] == "message":  # an answer without a task: its text is the whole outcome
        state, status_message = "completed", {"role": "agent", "parts": [{"type": "text", "text": event["text"]}]}
    if event["kind"] == "artifact":
        artifacts = [_artifact(event["artifact_id"], event["text"], event["append"], event["last_chunk"], event["name"])]
    else:
        artifacts = [_artifact(artifact_id, text) for artifact_id, text in event.get("artifacts", [])]
    kind = {"task": "task", "artifact": "artifact-update"}.get(event["kind"], "status-update")
    return Task(id=event.get("task_id") or "", session_id=event.get("context_id") or None,
                status=TaskStatus(state=_PYTHON_A2A_STATES.get(state, TaskState.UNKNOWN), message=status_message),
                artifacts=artifacts, metadata={"seq": seq, "kind": kind})


_PYTHON_A2A_STATES = {"submitted": TaskState.SUBMITTED, "working": TaskState.WAITING, "completed": TaskState.COMPLETED,
                      "failed": TaskState.FAILED, "rejected": TaskState.FAILED, "canceled": TaskState.CANCELED,
                      "input-required": TaskState.INPUT_REQUIRED, "auth-required": TaskState.INPUT_REQUIRED}


def _artifact(artifact_id: str, text: str, append: bool = False, last_chunk: bool = False, name: str = "") -> dict:
    return {"artifactId": artifact_id, "name": name or artifact_id, "append": append, "lastChunk": last_chunk,
            "parts": [{"type": "text", "text": text}]}


def _state(value: int) -> str:
    from a2a.types.a2a_pb2 import TaskState
    return TaskState.Name(value).removeprefix("TASK_STATE_").lower().replace("_", "-")


def _text(parts: Any) -> str:
    return "".join(part.text for part in parts if part.HasField("text"))


# ---------------------------------------------------------------- python-a2a's /stream
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
    body = " ".join((await response.text())[:300].split())
    if "html" in response.headers.get("Content-Type", ""):  # §14: not an A2A endpoint at all
        body = "an HTML page, not an A2A answer"
        if urllib.parse.urlsplit(where).path.count("/") > 1:  # e.g. .../a2a/stream: a path was passed
            body += "; pass the server's base URL (e.g. http://127.0.0.1:8100), without a path"
    error = A2AResponseError if response.status >= 500 else A2AConnectionError
    raise error(f"HTTP {response.status} from {where}: {body}")
