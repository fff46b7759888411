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
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Optional

import aiohttp
from . import a2a
from .a2a import FINAL_STATES, a2a_state, utc_timestamp
from .client import StrictStreamingClient, a2a_event_as_task
from .messages import RequestProblem, StreamTruncatedError, _RpcProblem, chunk_text, parse_stream_request
from .server import _OWNER, HANGUP, StreamingAgent, agent_loop, cancel_owned, own_tasks
from .stores import TaskIdInUse, TaskNotFound  # one pair of classes for every log (RedisTaskLog's too)
from python_a2a import A2AConnectionError, A2AResponseError, Message, StreamingClient, Task, TaskState

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

    # one process: nobody else runs these tasks, so there is no lease to keep or to lose
    async def hold_lease(self, task_id: str, owner: str, ttl: float) -> bool:
        return True

    async def lease_holder(self, task_id: str) -> Optional[str]:
        return None

    async def tasks_with_expired_lease(self) -> list[str]:
        return []

    async def close(self) -> None:
        pass


# ---------------------------------------------------------------- running tasks
_NO_MORE = object()


async def _next_update(task: "_RunningTask") -> Any:
    """The agent's next update (_NO_MORE at its end), its code running as the task's owner: the asyncio
    tasks it starts are the task's, cancelled when it ends, as a stream's are (the kit's own
    bookkeeping between updates is not)."""
    owner = _OWNER.set(task)
    try:
        return await anext(task.work, _NO_MORE)
    finally:
        _OWNER.reset(owner)


class _RunningTask:
    """A task this server is running: its work on the task loop, and its numbered events."""

    def __init__(self, engine: "TaskEngine", task_id: str, session_id: Optional[str], work: AsyncIterator):
        self.engine, self.id, self.session_id, self.work = engine, task_id, session_id, work
        self.seq = -1
        self.artifacts: list[dict] = []
        self.status = _status(TaskState.SUBMITTED)
        self.stop_reason: Optional[str] = None
        self.job: Optional[asyncio.Task] = None
        self.children: set[asyncio.Task] = set()  # tasks the agent's code started (see server.own_tasks)
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
    """All tasks of one agent, run on one event loop: the process's agent loop (a daemon thread that
    also runs every /stream) when request threads call in with call(), or an asyncio server's own loop
    (adopt_running_loop). max_running bounds the tasks at work at once (past it: 503)."""

    keepalive_seconds = 15.0
    cancel_wait_seconds = 10.0
    lease_seconds = 5.0  # a shared log: a task whose runner has not renewed its lease this long has lost it

    def __init__(self, agent: StreamingAgent, log: Any = None, max_running: Optional[int] = None):
        self.agent = agent
        self.log = log or MemoryTaskLog()
        self.max_running = max_running
        self.running: dict[str, _RunningTask] = {}
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # this engine, in leases
        self._lease_keeper: Optional[asyncio.Task] = None
        self.loop: Optional[asyncio.AbstractEventLoop] = None  # chosen on first use (see below)
        self._choosing = threading.Lock()

    def adopt_running_loop(self) -> None:
        """Run the tasks on the caller's event loop (an asyncio server's) instead of the agent loop thread."""
        loop = asyncio.get_running_loop()
        with self._choosing:
            if self.loop is None:
                self.loop = loop
            elif self.loop is not loop:
                raise RuntimeError("this agent's tasks already run on another loop: serve it by one path at a time")

    def call(self, coroutine: Any, timeout: Optional[float] = None) -> Any:
        """Run a coroutine on the task loop from a request thread and wait for its result."""
        with self._choosing:  # request threads: the process's agent loop, which also runs every /stream
            if self.loop is None:
                self.loop = agent_loop().loop
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
        # the lease first: a task without one would look orphaned to the other replicas
        await self.log.hold_lease(task.id, self.owner, self.lease_seconds)
        try:
            await self.log.start(task.id, first, first)
        except TaskIdInUse:
            raise _RpcProblem(200, a2a.INVALID_REQUEST, f"task id {task.id} is already in use") from None
        self.running[task.id] = task
        self.agent._track(task)  # close_streams() and live_streams now cover the task
        self._watch_leases()
        own_tasks(self.loop)  # once per loop: the tasks run_task starts are noted, to be cancelled at its end
        task.job = self.loop.create_task(self._work(task))
        return first

    async def _work(self, task: _RunningTask) -> None:
        """Pull the agent's updates one by one; the way the generator ends decides the final state."""
        try:
            async with contextlib.aclosing(task.work):
                while (update := await _next_update(task)) is not _NO_MORE:
                    await self._publish_update(task, update)
            end = _status(TaskState.COMPLETED)
        except asyncio.CancelledError:
            end = _status(TaskState.CANCELED, _agent_message(task.stop_reason or "canceled"))
        except Exception as exc:  # the agent's error ends the task failed, with the reason
            end = _status(TaskState.FAILED, _agent_message(f"{type(exc).__name__}: {exc}"))
        try:
            await cancel_owned(task)  # what the agent left running has stopped before the task ends
            task.status = end
            with contextlib.suppress(ValueError):  # another replica ended it first (this one lost its lease)
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
        state = a2a_state(TaskState(snapshot["status"]["state"]))
        if _is_final(snapshot):
            raise _RpcProblem(200, a2a.TASK_NOT_CANCELABLE, f"task {task_id} is already {state}: it cannot be canceled")
        if task is None:  # a shared log: the task runs on another replica, which alone can stop its work
            raise _RpcProblem(200, a2a.UNSUPPORTED_OPERATION, f"task {task_id} is {state} on another replica: "
                                                              "send tasks/cancel to the replica that runs it")
        task.stop("canceled by the client")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(task.ended.wait()), self.cancel_wait_seconds)
        snapshot = await self.snapshot(task_id)
        if TaskState(snapshot["status"]["state"]) != TaskState.CANCELED:  # it ended first, on its own
            state = a2a_state(TaskState(snapshot["status"]["state"]))
            raise _RpcProblem(200, a2a.TASK_NOT_CANCELABLE, f"task {task_id} ended {state} before the cancel took effect")
        return snapshot

    async def events(self, task_id: str, after: int, snapshot_first: bool,
                     gone: Optional[asyncio.Future] = None) -> AsyncIterator[list[dict]]:
        """One subscriber, in batches: the snapshot (or the log after `after`), then live events up to
        the final one. An empty batch means nothing happened for keepalive_seconds. Ends as soon as
        `gone` is done (the client hung up; the task goes on)."""
        if task_id not in self.running and not _is_final(await self.snapshot(task_id)):
            self._watch_leases()  # it runs elsewhere (a shared log): end it if its runner dies
        if snapshot_first:
            snapshot = await self.snapshot(task_id)
            yield [snapshot]
            if _is_final(snapshot):
                return
            after = snapshot["metadata"]["seq"]
        while gone is None or not gone.done():
            reading = asyncio.ensure_future(self.read(task_id, after, self.keepalive_seconds))
            await asyncio.wait({reading} if gone is None else {reading, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                reading.cancel()
                return
            events = reading.result()
            yield events
            if events and _is_final(events[-1]):
                return
            if events:
                after = events[-1]["metadata"]["seq"]

    def watch_socket(self, sock: Any) -> tuple[Optional[asyncio.Future], Callable[[], None]]:
        """(a future done when the client closes sock, a function to stop watching), on the task loop.
        Bytes a client sends after its request are read off, so they do not hide a later close."""
        if type(sock) is not socket.socket:  # a plain socket: werkzeug's and gunicorn's are
            return None, lambda: None
        gone, fd = self.loop.create_future(), sock.fileno()

        def on_readable() -> None:
            try:
                data = sock.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                if data:
                    sock.recv(len(data), socket.MSG_DONTWAIT)
                    return
            except BlockingIOError:
                return
            except OSError:
                pass
            self.loop.remove_reader(fd)
            if not gone.done():
                gone.set_result(HANGUP)
        self.loop.add_reader(fd, on_readable)

        def unwatch() -> None:
            self.loop.remove_reader(fd)
        return gone, unwatch

    def _watch_leases(self) -> None:
        if self._lease_keeper is None:
            self._lease_keeper = self.loop.create_task(self._keep_leases())

    async def _keep_leases(self) -> None:
        """Renew the leases of the tasks running here; end, as failed, tasks whose runner is gone
        (another replica that stopped renewing), so their subscribers are not left waiting forever."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                running = list(self.running)  # all at once: one slow renewal must not let the others lapse
                held = await asyncio.gather(*(self.log.hold_lease(task_id, self.owner, self.lease_seconds)
                                              for task_id in running), return_exceptions=True)
                for task_id, kept in zip(running, held):
                    if kept is False and task_id in self.running:  # another replica has ended it: stop the work
                        self.running[task_id].stop("this replica lost the task's lease to another one")
                for task_id in await self.log.tasks_with_expired_lease():
                    if task_id not in self.running:
                        await self._end_orphan(task_id)
            except Exception:  # the shared log is unreachable for now: try again next round
                continue

    async def _end_orphan(self, task_id: str) -> None:
        seq, snapshot = await self.log.snapshot(task_id)
        if _is_final(snapshot):
            return
        reason = _agent_message("the replica running this task stopped (its lease expired); send the message again")
        status = _status(TaskState.FAILED, reason)
        event = {"id": task_id, "sessionId": snapshot.get("sessionId"), "status": status,
                 "metadata": {"seq": seq + 1, "kind": "status-update"}}
        ended = {**snapshot, "status": status, "metadata": {"seq": seq + 1, "kind": "task"}}
        with contextlib.suppress(ValueError):  # another replica ended it first
            await self.log.append(task_id, seq + 1, event, ended, final=True)

    def close(self) -> None:
        for task in list(self.running.values()):
            task.stop("server shutting down")


def engine_for(agent: StreamingAgent) -> TaskEngine:
    """The agent's one TaskEngine (made on first use), whichever server serves the agent."""
    if getattr(agent, "task_engine", None) is None:
        agent.task_engine = TaskEngine(agent, agent.task_log, agent.max_running_tasks)
    return agent.task_engine


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
