"""Task streaming: TaskStreamingAgent and TaskStreamingClient (tasks/sendSubscribe, resubscribe, cancel)."""
from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator, Optional

import aiohttp
from flask import Response, jsonify
from . import patches  # noqa: F401
from .patches import replace_view
from .a2a import FINAL_STATES, a2a_state, _v03_parts, _v03_result, _v03_send_params
from .client import StrictStreamingClient
from .messages import RequestProblem, StreamTruncatedError, _RpcProblem, _sse, parse_stream_request
from .server import _PING, StreamingAgent, _AgentRun, last_event_id
from python_a2a import (A2AConnectionError, A2AResponseError, Message, StreamingClient, Task, TaskState,
                        TaskStatus)

# Stock python-a2a sends only "submitted" and "complete" on a task stream and fakes resubscribe
# (§16), its client posts a bare Task instead of JSON-RPC (§17), both task-stream views must be
# replaced (§18), and TaskState has no WORKING (§19). TaskStreamingAgent runs each task's async
# generator of TaskUpdates in the task's own thread (a task outlives any one connection: A2A
# lets a client drop and resubscribe) and keeps a log of every event, so every subscriber gets
# every update in order. Events are python-a2a Task dicts with metadata {"seq", "kind"}.


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
        for endpoint in ("a2a_tasks_stream", "tasks_stream"):
            replace_view(app, endpoint, self._task_stream_view)
        self._stock_cancel = replace_view(app, "a2a_tasks_cancel", self._task_cancel_view)
        replace_view(app, "tasks_cancel", self._task_cancel_view)
        self._stock_root = replace_view(app, "a2a_root_post", self._v03_view)
        replace_view(app, "a2a_post", self._v03_view)  # it calls the first directly, as in §18

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
