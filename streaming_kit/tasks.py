"""Tasks for every agent: A2A JSON-RPC (v0.3 and v1.0) and python-a2a's tasks/sendSubscribe (§16-§20).

Every StreamingAgent answers the official A2A methods on POST / (and /a2a): a plain agent's
stream_response chunks become one artifact under a stable artifactId; a TaskStreamingAgent's
run_task reports progress and artifact chunks itself. A task outlives any one connection (A2A
lets a client drop and resubscribe), so each task runs on the agent's task loop (one event loop
in one daemon thread for all tasks, not a thread per task) and every event it makes is numbered
and kept in a TaskLog. Each subscriber reads that log from where it is (Last-Event-ID = seq), so
every subscriber gets every event in order, exactly once.

Stock python-a2a sends only "submitted" and "complete" on a task stream and fakes resubscribe
(§16), its client posts a bare Task instead of JSON-RPC (§17), both task-stream views must be
replaced (§18), TaskState has no WORKING (§19), and POST / answers no A2A method (§20).
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator, Optional

import aiohttp
from flask import Response, jsonify, request
from . import a2a
from .a2a import FINAL_STATES, a2a_state, utc_timestamp
from .client import StrictStreamingClient, a2a_event_as_task
from .messages import RequestProblem, StreamTruncatedError, _RpcProblem, _sse, chunk_text, parse_stream_request
from .patches import replace_view
from .server import HANGUP, StreamingAgent, last_event_id
from python_a2a import A2AConnectionError, A2AResponseError, Message, StreamingClient, Task, TaskState

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
CARD_PATHS = ("/.well-known/agent-card.json", "/.well-known/agent.json", "/agent.json", "/a2a/agent.json")
ANSWER_ARTIFACT = "answer"  # the artifactId of a plain agent's streamed text


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


async def chunks_as_artifact(chunks: AsyncIterator[Any]) -> AsyncIterator[TaskUpdate]:
    """A plain agent's stream as one artifact: the first chunk starts it, each later one appends,
    and an empty last piece says lastChunk (so no chunk waits for the next to be known as last)."""
    yield TaskUpdate()  # "working": the agent has started
    started = False
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            yield TaskUpdate.chunk(ANSWER_ARTIFACT, chunk_text(chunk), append=started)
            started = True
    yield TaskUpdate.chunk(ANSWER_ARTIFACT, "", append=started, last_chunk=True)


def _agent_message(text: str, metadata: Optional[dict] = None) -> dict:
    return {"role": "agent", "parts": [{"type": "text", "text": text}], **({"metadata": metadata} if metadata else {})}


def _status(state: TaskState, message: Optional[dict] = None) -> dict:
    return {"state": state.value, "timestamp": utc_timestamp(), **({"message": message} if message else {})}


def _is_final(event: dict) -> bool:
    return TaskState(event["status"]["state"]) in FINAL_STATES


# ---------------------------------------------------------------- the log of events
class TaskNotFound(LookupError):
    """No task by that id here (never started, or expired)."""


class TaskIdInUse(ValueError):
    """A task with that id exists already."""


class MemoryTaskLog:
    """The events of this server's tasks, in memory, bounded: finished tasks are kept for
    keep_seconds and at most max_finished of them (oldest dropped first)."""

    def __init__(self, keep_seconds: float = 3600.0, max_finished: int = 1000):
        self.keep_seconds, self.max_finished = keep_seconds, max_finished
        self._events: dict[str, list[dict]] = {}
        self._snapshots: dict[str, dict] = {}
        self._finished: collections.OrderedDict[str, float] = collections.OrderedDict()  # id -> expiry
        self._changed: dict[str, asyncio.Event] = {}

    async def start(self, task_id: str, event: dict, snapshot: dict) -> None:
        self._expire()
        if task_id in self._events:
            raise TaskIdInUse(task_id)
        self._events[task_id], self._snapshots[task_id] = [event], snapshot
        self._changed[task_id] = asyncio.Event()

    async def append(self, task_id: str, seq: int, event: dict, snapshot: dict, final: bool = False) -> None:
        events = self._known(task_id)
        if seq != len(events):
            raise ValueError(f"task {task_id}: event {seq} appended after {len(events) - 1}")
        events.append(event)
        self._snapshots[task_id] = snapshot
        if final:
            self._finished[task_id] = time.monotonic() + self.keep_seconds
        changed = self._changed[task_id]
        changed.set()
        self._changed[task_id] = asyncio.Event()  # the next append wakes the next round of readers

    async def read(self, task_id: str, after: int, timeout: float) -> list[dict]:
        events = self._known(task_id)
        if len(events) <= after + 1 and task_id not in self._finished:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed[task_id].wait(), timeout)
            events = self._known(task_id)
        return events[after + 1:]

    async def snapshot(self, task_id: str) -> tuple[int, dict]:
        return len(self._known(task_id)) - 1, self._snapshots[task_id]

    def _known(self, task_id: str) -> list[dict]:
        self._expire()
        if task_id not in self._events:
            raise TaskNotFound(task_id)
        return self._events[task_id]

    def _expire(self) -> None:
        now = time.monotonic()
        while self._finished:
            task_id, expiry = next(iter(self._finished.items()))
            if expiry > now and len(self._finished) <= self.max_finished:
                break
            del self._finished[task_id]
            for table in (self._events, self._snapshots, self._changed):
                table.pop(task_id, None)

    async def close(self) -> None:
        pass


# ---------------------------------------------------------------- running tasks
class _RunningTask:
    """A task this server is running: its work on the task loop, and its numbered events."""

    def __init__(self, engine: "TaskEngine", task_id: str, session_id: Optional[str], work: AsyncIterator):
        self.engine, self.id, self.session_id, self.work = engine, task_id, session_id, work
        self.seq = -1
        self.artifacts: list[dict] = []
        self.status = _status(TaskState.SUBMITTED)
        self.stop_reason: Optional[str] = None
        self.job: Optional[asyncio.Task] = None
        self.ended = asyncio.Event()

    def stop(self, reason: str) -> None:
        """Cancel the work at its current await, from any thread (close_streams() calls this)."""
        self.stop_reason = self.stop_reason or reason
        with contextlib.suppress(RuntimeError):  # loop closed: nothing left to stop
            self.engine.loop.call_soon_threadsafe(lambda: self.job and self.job.cancel())

    def event(self, kind: str, artifacts: list[dict]) -> dict:
        status = dict(self.status)
        if kind == "artifact-update":  # content only: the progress text stays on status updates
            status.pop("message", None)
        event = {"id": self.id, "sessionId": self.session_id, "status": status,
                 "metadata": {"seq": self.seq, "kind": kind}}
        return {**event, "artifacts": artifacts} if artifacts else event

    def snapshot(self) -> dict:
        """The task as it stands, whole artifacts included (append=False); seq = its last event."""
        return self.event("task", [dict(a) for a in self.artifacts])

    def merge(self, chunk: dict) -> None:
        stored = next((a for a in self.artifacts if a["artifactId"] == chunk["artifactId"]), None)
        if stored is None or not chunk["append"]:
            if stored is not None:
                self.artifacts.remove(stored)
            self.artifacts.append({**chunk, "append": False})
        else:  # a new dict, so snapshots handed out earlier keep the text they had
            self.artifacts[self.artifacts.index(stored)] = {
                **stored, "parts": [{"type": "text", "text": artifact_text(stored) + artifact_text(chunk)}],
                "lastChunk": chunk["lastChunk"]}


class TaskEngine:
    """All tasks of one agent: one event loop in a daemon thread runs every task's work; request
    threads call in with call(). max_running bounds the tasks at work at once (past it: 503)."""

    keepalive_seconds = 15.0
    cancel_wait_seconds = 10.0

    def __init__(self, agent: StreamingAgent, log: Any = None, max_running: Optional[int] = None):
        self.agent = agent
        self.log = log or MemoryTaskLog()
        self.max_running = max_running
        self.running: dict[str, _RunningTask] = {}
        self.loop = asyncio.new_event_loop()
        self._thread: Optional[threading.Thread] = None
        self._starting = threading.Lock()

    def call(self, coroutine: Any, timeout: Optional[float] = None) -> Any:
        """Run a coroutine on the task loop from a request thread and wait for its result."""
        with self._starting:  # the loop's thread starts with the first task request, not with the agent
            if self._thread is None:
                self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                                name=f"tasks of {self.agent.agent_card.name}")
                self._thread.start()
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    # -- on the task loop
    async def start(self, params: dict, work_for: Callable[[Message], AsyncIterator]) -> dict:
        """Register the task, log "submitted", start its work; returns the first event."""
        try:
            message = parse_stream_request({"message": params.get("message")})
        except RequestProblem as problem:  # in JSON-RPC terms the params are wrong, not the request
            raise _RpcProblem(200, a2a.INVALID_PARAMS, f"params.message: {problem}") from None
        if self.max_running is not None and len(self.running) >= self.max_running:
            raise _RpcProblem(503, a2a.INTERNAL_ERROR, f"server busy: {len(self.running)} tasks running; "
                                                       "try again shortly")
        task = _RunningTask(self, str(params.get("id") or uuid.uuid4()), params.get("sessionId"), work_for(message))
        task.seq = 0
        first = task.snapshot()
        try:
            await self.log.start(task.id, first, first)
        except TaskIdInUse:
            raise _RpcProblem(200, a2a.INVALID_REQUEST, f"task id {task.id} is already in use") from None
        self.running[task.id] = task
        self.agent._track(task)  # close_streams() and live_streams now cover the task
        task.job = self.loop.create_task(self._work(task))
        return first

    async def _work(self, task: _RunningTask) -> None:
        """Pull the agent's updates one by one; the way the generator ends decides the final state."""
        try:
            async with contextlib.aclosing(task.work):
                async for update in task.work:
                    await self._publish_update(task, update)
            end = _status(TaskState.COMPLETED)
        except asyncio.CancelledError:
            end = _status(TaskState.CANCELED, _agent_message(task.stop_reason or "canceled"))
        except Exception as exc:  # the agent's error ends the task failed, with the reason
            end = _status(TaskState.FAILED, _agent_message(f"{type(exc).__name__}: {exc}"))
        try:
            task.status = end
            await self._publish(task, "status-update", final=True)
        finally:
            del self.running[task.id]
            self.agent._untrack(task)
            task.ended.set()

    async def _publish_update(self, task: _RunningTask, update: Any) -> None:
        if not isinstance(update, TaskUpdate):
            raise TypeError(f"run_task must yield TaskUpdate objects, not {type(update).__name__}")
        if update.artifact is not None:
            task.merge(update.artifact)
            await self._publish(task, "artifact-update", [update.artifact])
        else:
            message = _agent_message(update.text, update.metadata) if update.text or update.metadata else None
            task.status = _status(TaskState.WAITING, message)
            await self._publish(task, "status-update")

    async def _publish(self, task: _RunningTask, kind: str, artifacts: Optional[list] = None,
                       final: bool = False) -> None:
        task.seq += 1
        await self.log.append(task.id, task.seq, task.event(kind, artifacts or []), task.snapshot(), final)

    async def snapshot(self, task_id: str) -> dict:
        try:
            return (await self.log.snapshot(task_id))[1]
        except TaskNotFound:
            raise _RpcProblem(200, a2a.TASK_NOT_FOUND, f"task not found: {task_id} (unknown, or expired)") from None

    async def read(self, task_id: str, after: int, timeout: float) -> list[dict]:
        try:
            return await self.log.read(task_id, after, timeout)
        except TaskNotFound:
            raise _RpcProblem(200, a2a.TASK_NOT_FOUND, f"task not found: {task_id} (unknown, or expired)") from None

    async def wait_final(self, task_id: str) -> dict:
        """message/send: wait until the task ends; returns its final snapshot."""
        task = self.running.get(task_id)
        if task is not None:
            await task.ended.wait()
        return await self.snapshot(task_id)

    async def cancel(self, task_id: str) -> dict:
        snapshot = await self.snapshot(task_id)
        task = self.running.get(task_id)
        if task is None or _is_final(snapshot):
            state = a2a_state(TaskState(snapshot["status"]["state"]))
            raise _RpcProblem(200, a2a.TASK_NOT_CANCELABLE, f"task {task_id} is already {state}: it cannot be canceled")
        task.stop("canceled by the client")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(task.ended.wait()), self.cancel_wait_seconds)
        snapshot = await self.snapshot(task_id)
        if TaskState(snapshot["status"]["state"]) != TaskState.CANCELED:  # it ended first, on its own
            state = a2a_state(TaskState(snapshot["status"]["state"]))
            raise _RpcProblem(200, a2a.TASK_NOT_CANCELABLE, f"task {task_id} ended {state} before the cancel took effect")
        return snapshot

    # -- from a request thread
    def subscribe(self, task_id: str, after: int, snapshot_first: bool, sock: Any) -> Iterator[Optional[dict]]:
        """One subscriber: the snapshot (or the log after `after`), then live events to the final one.
        Yields None for a keepalive. Ends early when the client hangs up (the task goes on)."""
        if snapshot_first:
            snapshot = self.call(self.snapshot(task_id))
            yield snapshot
            if _is_final(snapshot):
                return
            after = snapshot["metadata"]["seq"]
        while True:
            events = self.call(self._read_or_hangup(task_id, after, sock))
            if events is None:  # the client is gone
                return
            if not events:
                yield None
                continue
            yield from events
            if _is_final(events[-1]):
                return
            after = events[-1]["metadata"]["seq"]

    async def _read_or_hangup(self, task_id: str, after: int, sock: Any) -> Optional[list[dict]]:
        """read(), or None as soon as the client's socket closes (so no thread waits for a gone client)."""
        if type(sock) is not socket.socket:
            return await self.read(task_id, after, self.keepalive_seconds)
        reading = asyncio.ensure_future(self.read(task_id, after, self.keepalive_seconds))
        gone = self.loop.create_future()
        fd = sock.fileno()

        def on_readable() -> None:
            try:
                data = sock.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                if data:  # bytes after the request: read them off so the socket stops being readable
                    sock.recv(len(data), socket.MSG_DONTWAIT)
                    return
            except BlockingIOError:
                return
            except OSError:
                pass
            if not gone.done():
                gone.set_result(None)
        self.loop.add_reader(fd, on_readable)
        try:
            await asyncio.wait({reading, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.loop.remove_reader(fd)
        if reading.done():
            return reading.result()
        reading.cancel()
        return None

    def close(self) -> None:
        for task in list(self.running.values()):
            task.stop("server shutting down")


# ---------------------------------------------------------------- the views
class A2AEndpoints:
    """The JSON-RPC views of one agent: A2A v0.3 / v1.0 on POST / and /a2a, python-a2a's task
    endpoints, and the agent card. Installed on every StreamingAgent by its setup_routes."""

    def __init__(self, agent: StreamingAgent, app: Any):
        self.agent = agent
        if getattr(agent, "task_engine", None) is None:  # one engine per agent, whichever app serves it
            agent.task_engine = TaskEngine(agent, agent.task_log, agent.max_running_tasks)
        self.engine = agent.task_engine
        self._stock_root = replace_view(app, "a2a_root_post", self.rpc_view)
        replace_view(app, "a2a_post", self.rpc_view)  # it calls the first directly, as in §18
        for endpoint in ("a2a_tasks_stream", "tasks_stream"):
            replace_view(app, endpoint, self.python_a2a_stream_view)
        self._stock_cancel = replace_view(app, "a2a_tasks_cancel", self.python_a2a_cancel_view)
        replace_view(app, "tasks_cancel", self.python_a2a_cancel_view)
        self._stock_get = replace_view(app, "a2a_tasks_get", self.python_a2a_get_view)
        replace_view(app, "tasks_get", self.python_a2a_get_view)
        for rule in list(app.url_map.iter_rules()):
            if rule.rule in CARD_PATHS and "GET" in rule.methods:
                replace_view(app, rule.endpoint, self.card_view)

    def work_for(self, message: Message) -> AsyncIterator[TaskUpdate]:
        if isinstance(self.agent, TaskStreamingAgent):
            return self.agent.run_task(message)
        return chunks_as_artifact(self.agent.stream_response(message))

    # -- the agent card
    def card_view(self):
        stock = self.agent.agent_card.to_dict()
        skills = [a2a.skill_dict(skill) for skill in (self.agent.agent_card.skills or [])]
        return jsonify(a2a.agent_card(stock, request.host_url.rstrip("/"), skills))

    # -- A2A JSON-RPC on POST / and /a2a
    def rpc_view(self):
        rpc_id, version = None, "0.3"
        try:
            body = self._body()
            if isinstance(body, dict) and "jsonrpc" not in body and _python_a2a_shape(body):
                try:
                    _check_python_a2a_body(body)  # python-a2a's handler answers 500 to what it cannot read
                except RequestProblem as problem:
                    return jsonify({"error": str(problem)}), problem.status
                return self._stock_root()  # a python-a2a client's message, task or conversation
            rpc_id, method, params = a2a.read_rpc(body)
            version = a2a.protocol_version(request.headers.get("A2A-Version"), method)
            known = a2a.METHODS.get(method)
            if known is None or known[0] != version:
                names = [name for name, (v, _) in a2a.METHODS.items() if v == version]
                raise _RpcProblem(200, a2a.METHOD_NOT_FOUND, f"method {method!r} not found (A2A {version}: "
                                                             f"{', '.join(names)})")
            return self._dispatch(known[1], rpc_id, params, version)
        except _RpcProblem as problem:
            return self._error(rpc_id, problem, version)
        except RequestProblem as problem:  # the body itself: too big, or not JSON
            return self._error(rpc_id, _as_rpc(problem), version)

    def _dispatch(self, action: str, rpc_id: Any, params: dict, version: str):
        if action in ("stream", "send"):
            send = a2a.send_params(params, version)
            first = self._start(send)
            if action == "stream":
                return self._sse(first["id"], rpc_id, version, after=-1, snapshot_first=False, first=first)
            if not send["blocking"]:
                return self._ok(rpc_id, self._send_result(first, version))
            return self._ok(rpc_id, self._send_result(self.engine.call(self.engine.wait_final(first["id"])), version))
        task_id = a2a.task_id_param(params)
        if action == "get":
            return self._ok(rpc_id, a2a.task_result(self.engine.call(self.engine.snapshot(task_id)), version))
        if action == "cancel":
            return self._ok(rpc_id, a2a.task_result(self.engine.call(self.engine.cancel(task_id)), version))
        after = self._after(task_id)  # subscribe: the log after Last-Event-ID, or the task as it stands first
        self.engine.call(self.engine.snapshot(task_id))  # unknown task: an error now, not an empty stream
        return self._sse(task_id, rpc_id, version, after=-1 if after is None else after,
                         snapshot_first=after is None or version == "1.0")

    def _start(self, params: dict) -> dict:
        task_id = params.pop("taskId", None)
        if task_id is not None:  # a message for a task that exists: this agent takes one message per task
            snapshot = self.engine.call(self.engine.snapshot(task_id))
            state = a2a_state(TaskState(snapshot["status"]["state"]))
            if _is_final(snapshot):
                raise _RpcProblem(200, a2a.INVALID_PARAMS, f"task {task_id} is in terminal state {state}: "
                                                           "send a message without taskId to start a new task")
            raise _RpcProblem(200, a2a.UNSUPPORTED_OPERATION, f"task {task_id} is {state}: this agent takes no "
                                                              "further messages on a running task")
        return self.engine.call(self.engine.start(params, self.work_for))

    @staticmethod
    def _send_result(snapshot: dict, version: str) -> dict:
        return a2a.v03_task(snapshot) if version == "0.3" else {"task": a2a.v10_task(snapshot)}

    def _sse(self, task_id: str, rpc_id: Any, version: str, after: int, snapshot_first: bool,
             first: Optional[dict] = None) -> Response:
        if first is not None and version == "1.0":
            snapshot_first = False  # the first event of a new task is the Task itself (§3.1.6)
        events = self.engine.subscribe(task_id, after, snapshot_first, _client_socket())

        def frames() -> Iterator[str]:
            yield ": stream open\n\n"
            for event in events:
                if event is None:
                    yield ": ping\n\n"
                else:
                    yield _sse(a2a.rpc_response(rpc_id, a2a.result(event, version)), event_id=event["metadata"]["seq"])
        return Response(frames(), mimetype="text/event-stream", headers=SSE_HEADERS)

    def _after(self, task_id: str) -> Optional[int]:
        """Last-Event-ID as a seq that this task has sent (a later one would skip events)."""
        try:
            after = last_event_id()
        except RequestProblem:
            raise _RpcProblem(200, a2a.INVALID_PARAMS, "Last-Event-ID must be the seq of the last event seen") from None
        if after is not None:
            last = self.engine.call(self.engine.snapshot(task_id))["metadata"]["seq"]
            if after > last:
                raise _RpcProblem(200, a2a.INVALID_PARAMS, f"Last-Event-ID {after} names no event of task {task_id}: "
                                                           f"updates 0-{last} have been sent")
        return after

    def _body(self) -> Any:
        return self.agent._read_json_body()

    @staticmethod
    def _ok(rpc_id: Any, body: dict):
        return jsonify(a2a.rpc_response(rpc_id, body))

    @staticmethod
    def _error(rpc_id: Any, problem: _RpcProblem, version: str):
        response = jsonify(a2a.rpc_error(rpc_id, problem.code, str(problem), version))
        response.status_code = problem.status
        if problem.status == 503:
            response.headers["Retry-After"] = "1"
        return response

    # -- python-a2a's own task endpoints (tasks/sendSubscribe, tasks/resubscribe, tasks/cancel, tasks/get)
    def python_a2a_stream_view(self):
        """tasks/sendSubscribe starts a task, tasks/resubscribe joins one; both answer with SSE."""
        rpc_id = None
        try:
            rpc_id, method, params = self._python_a2a_rpc("tasks/sendSubscribe")
            if method == "tasks/sendSubscribe":
                first = self._start({**params, "taskId": None})
                task_id, after, snapshot_first = first["id"], -1, False
            elif method == "tasks/resubscribe":
                task_id = a2a.task_id_param(params)
                found = self._after(task_id)
                after, snapshot_first = (-1 if found is None else found), found is None
                self.engine.call(self.engine.snapshot(task_id))
            else:
                raise _RpcProblem(200, a2a.METHOD_NOT_FOUND, f"method {method!r} not found here: "
                                                             "use tasks/sendSubscribe or tasks/resubscribe")
            events = self.engine.subscribe(task_id, after, snapshot_first, _client_socket())
            return Response(_python_a2a_frames(events), mimetype="text/event-stream", headers=SSE_HEADERS)
        except RequestProblem as problem:
            return self._error(rpc_id, _as_rpc(problem), "0.3")

    def python_a2a_cancel_view(self):
        """tasks/cancel: stop the work at its current await, wait until it ended, return the Task."""
        rpc_id = None
        try:
            rpc_id, _, params = self._python_a2a_rpc("tasks/cancel")
            task_id = a2a.task_id_param(params)
            if task_id in self.agent.tasks:
                return self._stock_cancel()  # a task from tasks/send: python-a2a's own bookkeeping
            return self._ok(rpc_id, self.engine.call(self.engine.cancel(task_id)))
        except RequestProblem as problem:
            return self._error(rpc_id, _as_rpc(problem), "0.3")

    def python_a2a_get_view(self):
        """tasks/get in python-a2a's shape (its own tasks from tasks/send are still its own)."""
        rpc_id = None
        try:
            rpc_id, _, params = self._python_a2a_rpc("tasks/get")
            task_id = a2a.task_id_param(params)
            if task_id in self.agent.tasks:
                return self._stock_get()
            return self._ok(rpc_id, self.engine.call(self.engine.snapshot(task_id)))
        except RequestProblem as problem:
            return self._error(rpc_id, _as_rpc(problem), "0.3")

    def _python_a2a_rpc(self, bare_method: str) -> tuple[Any, str, dict]:
        """(id, method, params) of a JSON-RPC body; a bare Task (python-a2a's client, §17) also works."""
        body = self._body()
        if not isinstance(body, dict):
            raise _RpcProblem(200, a2a.INVALID_REQUEST, "request body must be a JSON object")
        if "jsonrpc" not in body:
            return None, bare_method, body
        return a2a.read_rpc(body)


def _as_rpc(problem: RequestProblem) -> _RpcProblem:
    if isinstance(problem, _RpcProblem):
        return problem
    if problem.status == 400:  # not JSON: a JSON-RPC parse error, which official clients read with HTTP 200
        return _RpcProblem(200, a2a.PARSE_ERROR, str(problem))
    return _RpcProblem(problem.status, a2a.INVALID_REQUEST, str(problem))  # 413, 415: the transport refuses


def _python_a2a_frames(events: Iterator[Optional[dict]]) -> Iterator[str]:
    yield ": stream open\n\n"
    for event in events:
        if event is None:
            yield ": ping\n\n"
        else:
            yield _sse(event, "complete" if _is_final(event) else "update", event_id=event["metadata"]["seq"])


def _python_a2a_shape(body: dict) -> bool:
    """A body python-a2a's own POST / handler reads: a message, a conversation or a task."""
    return "content" in body or "messages" in body or ("parts" in body and "role" in body) or (
        "id" in body and ("message" in body or "status" in body))


def _check_python_a2a_body(body: dict) -> None:
    """RequestProblem(400) unless python-a2a's own POST / handler can read the body."""
    if "messages" in body:
        if not isinstance(body["messages"], list) or not body["messages"]:
            raise RequestProblem(400, "messages must be a non-empty list of messages")
        for message in body["messages"]:
            parse_stream_request(message)
    elif "content" in body or "parts" in body:
        parse_stream_request(body)
    else:  # a task
        if not isinstance(body["id"], str):
            raise RequestProblem(400, "a task's id must be a string")
        if "message" in body:
            parse_stream_request({"message": body["message"]})
        if not isinstance(body.get("status", {}), dict):
            raise RequestProblem(400, "a task's status must be an object")


def _client_socket() -> Any:
    return request.environ.get("werkzeug.socket") or request.environ.get("gunicorn.socket")


# ---------------------------------------------------------------- agents and clients
class TaskStreamingAgent(StreamingAgent):
    """A StreamingAgent whose tasks report progress and artifacts themselves (§16-§19).

    Write `async def run_task(self, message)` yielding TaskUpdates: returning completes the
    task, raising fails it (the reason goes in the status message), tasks/cancel cancels it
    at its current await. tasks/resubscribe replays what a client missed (Last-Event-ID) or,
    without it, starts with the task as it stands.
    """

    async def run_task(self, message: Message) -> AsyncIterator[TaskUpdate]:
        """The task's work, yielding TaskUpdates (override this)."""
        raise NotImplementedError(f"{type(self).__name__} must define run_task")
        yield  # pragma: no cover - makes this an async generator

    async def stream_response(self, message: Message) -> AsyncIterator[Any]:
        """/stream (and tasks/send) for a task agent: the text of its artifact chunks, in order."""
        async for update in self.run_task(message):
            if update.artifact:
                yield artifact_text(update.artifact)


class TaskStreamingClient(StrictStreamingClient):
    """python-a2a's task-streaming API, strict, for any agent: a cut stream or a failed call raises (§16, §17).

    Speaks python-a2a's task endpoints to kit and python-a2a agents and A2A (v1.0 or v0.3, through
    a2a-sdk) to any other, as its card says (or `dialect=`). Over A2A the agent names the task:
    the Task passed to tasks_send_subscribe gets the agent's id with the first update, and
    metadata.seq counts the updates this client received (a2a-sdk does not pass on event ids).
    """

    async def tasks_send_subscribe(self, task: Task) -> AsyncIterator[Task]:
        """python-a2a's tasks_send_subscribe; raises if the stream ends before a final state."""
        if await self.resolve_dialect() == "python-a2a":
            updates = super().tasks_send_subscribe(task)
        else:
            updates = self._a2a_updates(lambda sdk: sdk.stream(chunk_text(task.message or {}), task.session_id),
                                        first_seq=0, state="submitted", named=task)
        async for update in _until_final(updates, self.url):
            yield update

    async def tasks_resubscribe(self, task_id: str, session_id: Optional[str] = None,
                                after: Optional[int] = None) -> AsyncIterator[Task]:
        """Rejoin a task's stream (§16); `after` = seq of the last update seen, so none repeats
        (A2A: sent as Last-Event-ID, which the kit honours on v0.3; v1.0 starts with the task as it stands)."""
        if await self.resolve_dialect() != "python-a2a":
            updates = self._a2a_updates(lambda sdk: sdk.subscribe(task_id, after),
                                        first_seq=0 if after is None else after + 1, state="working")
        else:
            client = self
            if after is not None:  # python-a2a's method takes no headers: give a copy the Last-Event-ID
                client = copy.copy(self)
                client.headers = {**self.headers, "Last-Event-ID": str(after)}
            updates = StreamingClient.tasks_resubscribe(client, task_id, session_id)
        async for update in _until_final(updates, self.url):
            yield update

    async def cancel_task(self, task_id: str) -> Task:
        """tasks/cancel that raises when refused (python-a2a's A2AClient.cancel_task reports CANCELED)."""
        if await self.resolve_dialect() != "python-a2a":
            async with self.a2a_session(self.dialect) as sdk:
                return a2a_event_as_task(await sdk.cancel(task_id), seq=0)
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

    async def _a2a_updates(self, open_stream: Callable, first_seq: int, state: str,
                           named: Optional[Task] = None) -> AsyncIterator[Task]:
        """An A2A task stream as python-a2a Task updates, numbered from first_seq, up to the final one."""
        async with self.a2a_session(self.dialect) as sdk:
            async with contextlib.aclosing(open_stream(sdk)) as events:
                seq = first_seq
                async for event in events:
                    update = a2a_event_as_task(event, seq, state)
                    state = event.get("state") or state
                    if named is not None and seq == first_seq:  # the agent's id for the task sent
                        named.id, named.session_id = update.id, update.session_id or named.session_id
                    yield update
                    seq += 1
                    if update.status.state in FINAL_STATES:
                        return


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
        state = a2a_state(last.status.state) if last is not None else "none"
        raise StreamTruncatedError(f"task stream from {where} ended before a final state (last: {state}): "
                                   "updates were lost")
