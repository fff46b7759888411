"""The task event log: a task's numbered events, kept so any subscriber can resume from any point.

One small async interface, two implementations:
    MemoryTaskLog   one process (the kit's default): asyncio, used from one event loop
    RedisTaskLog    shared by every replica: a Redis Stream per task, read with XRANGE + XREAD BLOCK

Events and snapshots are opaque JSON-able dicts to the store. The caller numbers the events
(seq 0, 1, 2 ...) and there is one writer per task (the replica running it, holding its lease).
A subscriber with Last-Event-ID k calls read(task_id, after=k) in a loop and gets every later
event exactly once, in order, from whichever replica it reaches.

Taking over from a dead runner (a replica notices with tasks_with_expired_lease()):
    if await log.hold_lease(task_id, me, ttl):   # only one replica wins the lease
        seq, task = await log.snapshot(task_id)
        await log.append(task_id, seq + 1, failed_event, failed_task, final=True)
"""
from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional, Union

MAX_EVENTS = 10_000        # per task; a final event always fits (see TaskLogFull)
KEEP_SECONDS = 3600.0      # a finished task stays readable this long
MAX_FINISHED = 1000        # MemoryTaskLog: finished tasks kept (oldest go first)
REDIS_PREFIX = "a2a:task:"


class TaskNotFound(LookupError):
    """No task with this id: never started, or expired after it finished."""


class TaskIdInUse(ValueError):
    """start() with the id of a task that exists (running, or finished and not yet expired)."""


class TaskLogFull(ValueError):
    """The task has max_events events. The log refuses more instead of trimming the oldest: a
    trimmed log would hand a resubscriber a gap it cannot see, and the stream would look complete.
    The last slot is kept for a final event, so the runner can still end the task `failed`."""


def _dump(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"))


class TaskLog:
    """The interface every store implements (see the module docstring).

    Bounds: max_events per task (past it append raises TaskLogFull; the last slot is kept for a
    final event) and keep_seconds, how long a finished task stays readable before it expires.
    """

    def __init__(self, max_events: int = MAX_EVENTS, keep_seconds: float = KEEP_SECONDS):
        if max_events < 2:
            raise ValueError("max_events must be at least 2 (the first event and a final one)")
        if not (math.isfinite(keep_seconds) and keep_seconds > 0):
            raise ValueError("keep_seconds must be a positive, finite number")
        self.max_events = max_events
        self.keep_seconds = keep_seconds

    async def start(self, task_id: str, event: dict, snapshot: dict) -> None:
        """Create the task with its event seq 0; TaskIdInUse if the id exists."""
        raise NotImplementedError

    async def append(self, task_id: str, seq: int, event: dict, snapshot: dict, final: bool = False) -> None:
        """Add event `seq` (the last seq + 1) and the task as it stands after it, atomically.

        final=True marks the last event: the task expires keep_seconds later. ValueError for a
        seq out of order or an append after the final event; TaskLogFull past max_events."""
        raise NotImplementedError

    async def read(self, task_id: str, after: int, timeout: float) -> list[dict]:
        """The events with seq > after (after=-1: from the start), oldest first.

        If there are none yet, waits up to timeout seconds for the next; [] on timeout, or at
        once when the task is final (nothing more will come). TaskNotFound if unknown/expired."""
        raise NotImplementedError

    async def snapshot(self, task_id: str) -> tuple[int, dict]:
        """(seq of the last event, the task as it stands after it)."""
        raise NotImplementedError

    async def is_final(self, task_id: str) -> bool:
        raise NotImplementedError

    async def hold_lease(self, task_id: str, owner: str, ttl: float) -> bool:
        """Take the task's lease or refresh it for ttl seconds; False if another owner holds it.

        The runner refreshes it well within ttl while it works. Take it before start(), so the
        task is never seen without a lease; a final append releases it."""
        raise NotImplementedError

    async def lease_holder(self, task_id: str) -> Optional[str]:
        """The owner of the lease, None when there is none (expired or released)."""
        raise NotImplementedError

    async def tasks_with_expired_lease(self) -> list[str]:
        """Unfinished tasks whose lease has lapsed: their runner is gone."""
        raise NotImplementedError

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> "TaskLog":
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.close()

    def _check_append(self, task_id: str, last: int, was_final: bool, seq: int, final: bool) -> None:
        """The rules both stores enforce before writing event `seq`."""
        if type(seq) is not int:
            raise ValueError(f"task {task_id}: an event seq is an int, got {seq!r}")
        if was_final:
            raise ValueError(f"task {task_id} has ended: nothing can follow its final event")
        if seq != last + 1:
            raise ValueError(f"task {task_id}: expected event seq {last + 1}, got {seq}")
        if seq >= self.max_events - (0 if final else 1):
            raise TaskLogFull(f"task {task_id} has reached max_events={self.max_events}; only a final "
                              f"event fits (raise max_events for longer tasks)")

    @staticmethod
    def _check_read(after: int) -> None:
        if type(after) is not int or after < -1:
            raise ValueError(f"after must be an event seq, or -1 for the start; got {after!r}")

    @staticmethod
    def _check_ttl(ttl: float) -> None:
        if not (isinstance(ttl, (int, float)) and math.isfinite(ttl) and ttl > 0):
            raise ValueError(f"a lease ttl is a positive, finite number of seconds; got {ttl!r}")


# ---------------------------------------------------------------- one process
@dataclass
class _MemoryTask:
    events: list[str]                    # JSON text, so every reader gets its own copy
    snapshot: str
    final: bool = False
    expires_at: float = math.inf
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set (and replaced) on each append


class MemoryTaskLog(TaskLog):
    """The log in this process's memory. Use it from one event loop (BlockingTaskLog gives threads one).

    max_finished: finished tasks kept; past it the one that finished first goes (running ones never).
    """

    def __init__(self, max_events: int = MAX_EVENTS, keep_seconds: float = KEEP_SECONDS,
                 max_finished: int = MAX_FINISHED):
        super().__init__(max_events, keep_seconds)
        self.max_finished = max_finished
        self._tasks: dict[str, _MemoryTask] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()  # oldest first
        self._leases: dict[str, tuple[str, float]] = {}  # task id -> (owner, deadline)

    async def start(self, task_id: str, event: dict, snapshot: dict) -> None:
        self._drop_expired()
        if task_id in self._tasks:
            raise TaskIdInUse(f"task id {task_id} is in use")
        self._tasks[task_id] = _MemoryTask(events=[_dump(event)], snapshot=_dump(snapshot))

    async def append(self, task_id: str, seq: int, event: dict, snapshot: dict, final: bool = False) -> None:
        task = self._task(task_id)
        self._check_append(task_id, len(task.events) - 1, task.final, seq, final)
        task.events.append(_dump(event))
        task.snapshot = _dump(snapshot)
        if final:
            self._finish(task_id, task)
        task.changed.set()  # wakes every reader waiting on this task
        task.changed = asyncio.Event()

    async def read(self, task_id: str, after: int, timeout: float) -> list[dict]:
        self._check_read(after)
        task = self._task(task_id)
        if len(task.events) <= after + 1 and not task.final:
            try:
                await asyncio.wait_for(task.changed.wait(), timeout)
            except asyncio.TimeoutError:
                return []
            task = self._task(task_id)
        return [json.loads(text) for text in task.events[after + 1:]]

    async def snapshot(self, task_id: str) -> tuple[int, dict]:
        task = self._task(task_id)
        return len(task.events) - 1, json.loads(task.snapshot)

    async def is_final(self, task_id: str) -> bool:
        return self._task(task_id).final

    async def hold_lease(self, task_id: str, owner: str, ttl: float) -> bool:
        self._check_ttl(ttl)
        holder = await self.lease_holder(task_id)
        if holder not in (None, owner):
            return False
        self._leases[task_id] = (owner, time.monotonic() + ttl)
        return True

    async def lease_holder(self, task_id: str) -> Optional[str]:
        owner, deadline = self._leases.get(task_id, (None, 0.0))
        if owner is not None and deadline <= time.monotonic():
            del self._leases[task_id]
            return None
        return owner

    async def tasks_with_expired_lease(self) -> list[str]:
        unfinished = [task_id for task_id, task in self._tasks.items() if not task.final]
        return [task_id for task_id in unfinished if await self.lease_holder(task_id) is None]

    def _task(self, task_id: str) -> _MemoryTask:
        self._drop_expired()
        task = self._tasks.get(task_id)
        if task is None:
            raise TaskNotFound(f"no task {task_id} (unknown, or expired after it finished)")
        return task

    def _finish(self, task_id: str, task: _MemoryTask) -> None:
        task.final = True
        task.expires_at = time.monotonic() + self.keep_seconds
        self._leases.pop(task_id, None)
        self._finished[task_id] = None
        while len(self._finished) > self.max_finished:
            self._tasks.pop(self._finished.popitem(last=False)[0], None)

    def _drop_expired(self) -> None:
        """Finished tasks expire in the order they finished (keep_seconds is the same for all)."""
        now = time.monotonic()
        while self._finished:
            oldest = next(iter(self._finished))
            if self._tasks[oldest].expires_at > now:
                break
            del self._finished[oldest], self._tasks[oldest]


# ---------------------------------------------------------------- every replica
class RedisTaskLog(TaskLog):
    """The log in Redis (6.2 or later), shared by every replica that connects to it.

    Keys per task: {prefix}{id}:events   a Stream, entry id 0-{seq+1}, so XRANGE by seq is exact
                   {prefix}{id}:snapshot a hash: seq, task (JSON), final (0/1)
                   {prefix}{id}:lease    the runner's name, with a TTL (PX)
    and {prefix}unfinished, the set of tasks not yet final. A final event puts a TTL of
    keep_seconds on the task's keys: Redis itself bounds how many finished tasks are kept.
    Writes that must happen together run in a MULTI/EXEC transaction guarded by WATCH, so a
    second writer (a replica that took over) makes the other one fail instead of interleaving.
    Not for Redis Cluster: a transaction spans a task's keys and the unfinished set. Give Redis a
    maxmemory-policy of noeviction (the default) or volatile-*: allkeys-* could evict a running task.

    Each waiting read() holds one pooled connection for up to its timeout (XREAD BLOCK).
    The client is bound to the event loop it is first used on (BlockingTaskLog gives threads one).
    """

    def __init__(self, url_or_client: Union[str, Any], prefix: str = REDIS_PREFIX, max_events: int = MAX_EVENTS,
                 keep_seconds: float = KEEP_SECONDS):
        super().__init__(max_events, keep_seconds)
        from redis import asyncio as aioredis, exceptions  # here: the memory log needs no redis installed
        self._conflict = exceptions.WatchError  # a WATCHed key changed before EXEC
        self._owns_client = isinstance(url_or_client, str)
        # a client passed in stays the caller's to close
        self.redis = aioredis.from_url(url_or_client, decode_responses=True) if self._owns_client else url_or_client
        self.prefix = prefix
        self._unfinished = f"{prefix}unfinished"

    def _keys(self, task_id: str) -> tuple[str, str, str]:
        base = f"{self.prefix}{task_id}"
        return f"{base}:events", f"{base}:snapshot", f"{base}:lease"

    async def start(self, task_id: str, event: dict, snapshot: dict) -> None:
        events, snap, _ = self._keys(task_id)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(snap)
                if await pipe.exists(snap):
                    raise TaskIdInUse(f"task id {task_id} is in use")
                pipe.multi()
                pipe.delete(events)  # a stream that outlived its snapshot would refuse entry 0-1
                pipe.xadd(events, {"event": _dump(event)}, id="0-1")
                pipe.hset(snap, mapping={"seq": 0, "task": _dump(snapshot), "final": 0})
                pipe.sadd(self._unfinished, task_id)
                await pipe.execute()
        except self._conflict:  # another replica started the same id meanwhile
            raise TaskIdInUse(f"task id {task_id} is in use") from None

    async def append(self, task_id: str, seq: int, event: dict, snapshot: dict, final: bool = False) -> None:
        events, snap, lease = self._keys(task_id)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(snap)
                last, was_final = await pipe.hmget(snap, ["seq", "final"])
                if last is None:
                    raise TaskNotFound(f"no task {task_id} (unknown, or expired after it finished)")
                self._check_append(task_id, int(last), _text(was_final) == "1", seq, final)
                pipe.multi()
                pipe.xadd(events, {"event": _dump(event)}, id=f"0-{seq + 1}")
                pipe.hset(snap, mapping={"seq": seq, "task": _dump(snapshot), "final": int(final)})
                if final:
                    pipe.srem(self._unfinished, task_id)
                    pipe.delete(lease)
                    pipe.expire(events, math.ceil(self.keep_seconds))
                    pipe.expire(snap, math.ceil(self.keep_seconds))
                await pipe.execute()
        except self._conflict:
            raise ValueError(f"task {task_id} was written by another writer meanwhile") from None

    async def read(self, task_id: str, after: int, timeout: float) -> list[dict]:
        self._check_read(after)
        events, snap, _ = self._keys(task_id)
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip for both
            pipe.hget(snap, "final")
            pipe.xrange(events, min=f"(0-{after + 1}")  # "(": exclusive, so seq > after
            final, backlog = await pipe.execute()
        if final is None:
            raise TaskNotFound(f"no task {task_id} (unknown, or expired after it finished)")
        if backlog or _text(final) == "1" or timeout <= 0:
            return _decode(backlog)
        # XREAD answers at once if an event arrived since the XRANGE, so none slips between them.
        reply = await self.redis.xread({events: f"0-{after + 1}"}, block=max(1, round(timeout * 1000)))
        if isinstance(reply, dict):  # RESP3 clients answer {stream: [entries]}
            reply = list(reply.items())
        return _decode(reply[0][1]) if reply else []

    async def snapshot(self, task_id: str) -> tuple[int, dict]:
        seq, task = await self.redis.hmget(self._keys(task_id)[1], ["seq", "task"])
        if seq is None:
            raise TaskNotFound(f"no task {task_id} (unknown, or expired after it finished)")
        return int(seq), json.loads(task)

    async def is_final(self, task_id: str) -> bool:
        final = await self.redis.hget(self._keys(task_id)[1], "final")
        if final is None:
            raise TaskNotFound(f"no task {task_id} (unknown, or expired after it finished)")
        return _text(final) == "1"

    async def hold_lease(self, task_id: str, owner: str, ttl: float) -> bool:
        self._check_ttl(ttl)
        lease = self._keys(task_id)[2]
        for _ in range(3):  # WATCH fails if the key changed (or expired) meanwhile: look again
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(lease)
                    holder = _text(await pipe.get(lease))
                    if holder not in (None, owner):
                        return False
                    pipe.multi()
                    pipe.set(lease, owner, px=max(1, round(ttl * 1000)))
                    await pipe.execute()
                    return True
            except self._conflict:
                continue
        return False

    async def lease_holder(self, task_id: str) -> Optional[str]:
        return _text(await self.redis.get(self._keys(task_id)[2]))

    async def tasks_with_expired_lease(self) -> list[str]:
        task_ids = sorted(_text(t) for t in await self.redis.smembers(self._unfinished))
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.exists(self._keys(task_id)[2])
            held = await pipe.execute()
        return [task_id for task_id, has_lease in zip(task_ids, held) if not has_lease]

    async def close(self) -> None:
        if self._owns_client:
            await self.redis.aclose()


def _text(value: Any) -> Optional[str]:
    """Redis replies are str or bytes depending on the client's decode_responses."""
    return value.decode() if isinstance(value, bytes) else value


def _decode(entries: list) -> list[dict]:
    return [json.loads(next(iter(fields.values()))) for _, fields in entries]


# ---------------------------------------------------------------- from threads
class BlockingTaskLog:
    """A TaskLog for threaded code (Flask views): the log runs on a private event loop thread,
    and each method (same names) blocks until its result is ready. One per log, closed once.

        log = BlockingTaskLog(RedisTaskLog(url))
        events = log.read(task_id, after=seq, timeout=15)
    """

    def __init__(self, log: TaskLog):
        self.log = log
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="task log", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str):
        method = getattr(self.log, name)  # AttributeError for a name the log does not have
        if not asyncio.iscoroutinefunction(method):
            return method  # a plain attribute (max_events ...) as it is

        def call(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(method(*args, **kwargs), self._loop).result()
        return call

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.log.close(), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
