"""The task event log (streaming_kit/stores.py): the same tests for MemoryTaskLog and for RedisTaskLog
on a real, private redis-server (skipped when it is not installed, unless REQUIRE_REDIS=1)."""
import asyncio
import os
import threading
import uuid

import pytest

from examples_support.services import ServiceMissing, find_program, private_redis
from streaming_kit.stores import (MAX_EVENTS, BlockingTaskLog, MemoryTaskLog, RedisTaskLog, TaskIdInUse, TaskLogFull,
                                  TaskNotFound)


@pytest.fixture(scope="module")
def redis_url():
    try:
        find_program("redis-server", "redis-server")
    except ServiceMissing as missing:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(str(missing))
        pytest.skip(str(missing))
    with private_redis() as url:
        yield url


class Replicas:
    """Opens TaskLogs that share one log: memory: the same object; Redis: one client per replica."""

    def __init__(self, kind: str, redis_url: str = ""):
        self.kind, self.redis_url = kind, redis_url
        self.prefix = f"test:{uuid.uuid4().hex}:"  # each test its own keys on the shared server

    def open(self, count: int = 1, **bounds) -> list:
        if self.kind == "memory":
            return [MemoryTaskLog(**bounds)] * count
        bounds.pop("max_finished", None)  # Redis bounds finished tasks by their TTL
        return [RedisTaskLog(self.redis_url, prefix=self.prefix, **bounds) for _ in range(count)]

    async def until_readers_wait(self, count: int) -> None:
        """Returns once `count` read() calls are waiting for the next event (not still fetching the backlog)."""
        if self.kind == "memory":
            for _ in range(3):  # the readers run up to their await in one turn of the loop
                await asyncio.sleep(0)
            return
        import redis.asyncio
        async with redis.asyncio.from_url(self.redis_url) as probe:
            assert await until(lambda: probe.info("clients"), lambda info: info["blocked_clients"] >= count)


@pytest.fixture(params=["memory", "redis"])
def replicas(request):
    return Replicas(request.param, request.getfixturevalue("redis_url") if request.param == "redis" else "")


def run(scenario, *logs) -> None:
    """asyncio.run(scenario(*logs)), then close each log once."""
    async def main():
        try:
            await scenario(*logs)
        finally:
            for log in {id(log): log for log in logs}.values():
                await log.close()
    asyncio.run(main())


async def until(probe, check=bool, seconds: float = 10.0):
    """eventually() for coroutines: await probe() until check(result) holds; returns the last check."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not check(await probe()):
        if asyncio.get_running_loop().time() > deadline:
            return check(await probe())
        await asyncio.sleep(0.01)
    return True


def event(seq: int) -> dict:
    return {"seq": seq, "text": f"chunk {seq} é ✓"}


def task(seq: int, state: str = "working") -> dict:
    return {"id": "t", "state": state, "text": "".join(f"chunk {i} " for i in range(seq + 1))}


async def write(log, task_id: str, last: int, final: bool = True) -> None:
    """Start task_id and append events 1..last (the last one final)."""
    await log.start(task_id, event(0), task(0))
    for seq in range(1, last + 1):
        await log.append(task_id, seq, event(seq), task(seq), final=final and seq == last)


async def read_to_the_end(log, task_id: str, after: int = -1) -> list[dict]:
    """What a subscriber does: read from `after` until the task is final and nothing more comes."""
    received = []
    while True:
        events = await log.read(task_id, after, timeout=5)
        received += events
        after = events[-1]["seq"] if events else after
        if not events and await log.is_final(task_id):
            return received


# ---------------------------------------------------------------- order, exactly once
def test_events_come_back_in_order_exactly_once_from_any_point(replicas):
    async def scenario(log):
        await write(log, "t", 30)
        assert await log.read("t", -1, timeout=1) == [event(s) for s in range(31)]
        for after in (0, 1, 17, 29):
            assert await log.read("t", after, timeout=1) == [event(s) for s in range(after + 1, 31)]
        assert await log.read("t", 30, timeout=1) == []
    run(scenario, *replicas.open())


def test_snapshot_is_the_task_after_the_last_event(replicas):
    async def scenario(log):
        await log.start("t", event(0), task(0))
        assert await log.snapshot("t") == (0, task(0))
        for seq in range(1, 4):
            await log.append("t", seq, event(seq), task(seq))
            assert await log.snapshot("t") == (seq, task(seq))
        assert not await log.is_final("t")
    run(scenario, *replicas.open())


def test_a_reader_gets_the_backlog_then_live_events(replicas):
    async def scenario(log):
        await write(log, "t", 5, final=False)  # the backlog
        reader = asyncio.create_task(read_to_the_end(log, "t"))
        for seq in range(6, 40):
            await log.append("t", seq, event(seq), task(seq), final=seq == 39)
            await asyncio.sleep(0)  # let the reader catch some events live
        assert [e["seq"] for e in await reader] == list(range(40))
    run(scenario, *replicas.open())


def test_read_waits_for_the_next_event(replicas):
    async def scenario(log):
        await log.start("t", event(0), task(0))
        reader = asyncio.create_task(log.read("t", 0, timeout=30))
        await replicas.until_readers_wait(1)
        await log.append("t", 1, event(1), task(1))
        assert await reader == [event(1)]
    run(scenario, *replicas.open())


def test_read_returns_nothing_when_no_event_comes_in_time(replicas):
    async def scenario(log):
        await log.start("t", event(0), task(0))
        assert await log.read("t", 0, timeout=0.05) == []
        assert await log.read("t", 0, timeout=0) == []
    run(scenario, *replicas.open())


def test_two_readers_each_get_every_event_once(replicas):
    async def scenario(log):
        await log.start("t", event(0), task(0))
        readers = [asyncio.create_task(read_to_the_end(log, "t")) for _ in range(2)]
        await replicas.until_readers_wait(2)
        for seq in range(1, 25):
            await log.append("t", seq, event(seq), task(seq), final=seq == 24)
        for reader in readers:
            assert [e["seq"] for e in await reader] == list(range(25))
    run(scenario, *replicas.open())


def test_a_reader_on_one_replica_follows_the_writer_on_another(replicas):
    async def scenario(writer, reader_log):
        await writer.start("t", event(0), task(0))
        reader = asyncio.create_task(read_to_the_end(reader_log, "t"))
        await replicas.until_readers_wait(1)
        for seq in range(1, 20):
            await writer.append("t", seq, event(seq), task(seq), final=seq == 19)
        assert [e["seq"] for e in await reader] == list(range(20))
        assert await reader_log.snapshot("t") == (19, task(19))
        resumed = await read_to_the_end(reader_log, "t", after=12)  # Last-Event-ID 12 on another replica
        assert [e["seq"] for e in resumed] == list(range(13, 20))
    run(scenario, *replicas.open(2))


def test_threads_use_the_log_through_blocking_task_log(replicas):
    log = BlockingTaskLog(replicas.open()[0])
    try:
        log.start("t", event(0), task(0))
        received = []

        def subscriber():
            after = -1
            while after < 9:
                events = log.read("t", after, timeout=5)
                received.extend(events)
                after = events[-1]["seq"] if events else after
        thread = threading.Thread(target=subscriber)
        thread.start()
        for seq in range(1, 10):
            log.append("t", seq, event(seq), task(seq), final=seq == 9)
        thread.join(timeout=30)
        assert [e["seq"] for e in received] == list(range(10))
        assert log.is_final("t") and log.max_events == MAX_EVENTS
    finally:
        log.close()


# ---------------------------------------------------------------- wrong writes change nothing
@pytest.mark.parametrize("bad_seq", [0, 1, 3, -1])
def test_an_append_out_of_order_is_refused_and_writes_nothing(replicas, bad_seq):
    async def scenario(log):
        await write(log, "t", 1, final=False)
        with pytest.raises(ValueError, match="expected event seq 2"):
            await log.append("t", bad_seq, {"wrong": True}, {"wrong": True})
        assert await log.snapshot("t") == (1, task(1))
        assert await log.read("t", -1, timeout=0) == [event(0), event(1)]
    run(scenario, *replicas.open())


def test_nothing_follows_the_final_event(replicas):
    async def scenario(log):
        await write(log, "t", 2)
        with pytest.raises(ValueError, match="has ended"):
            await log.append("t", 3, event(3), task(3))
        assert await log.snapshot("t") == (2, task(2))
    run(scenario, *replicas.open())


def test_of_two_writers_racing_for_one_seq_exactly_one_wins(replicas):
    async def scenario(*logs):
        for round_ in range(20):  # the race is decided differently from run to run
            task_id = f"t{round_}"
            await logs[0].start(task_id, event(0), task(0))
            attempts = [log.append(task_id, 1, {"seq": 1, "by": n}, {"by": n}) for n, log in enumerate(logs)]
            results = await asyncio.gather(*attempts, return_exceptions=True)
            winners = [n for n, result in enumerate(results) if result is None]
            assert len(winners) == 1 and all(isinstance(r, ValueError) for r in results if r is not None)
            assert await logs[1].snapshot(task_id) == (1, {"by": winners[0]})
            assert await logs[1].read(task_id, 0, timeout=0) == [{"seq": 1, "by": winners[0]}]
    run(scenario, *replicas.open(2))


def test_a_task_id_is_used_once(replicas):
    async def scenario(first, second):
        await first.start("t", event(0), task(0))
        with pytest.raises(TaskIdInUse):
            await second.start("t", {"other": True}, {"other": True})
        results = await asyncio.gather(first.start("u", event(0), task(0)), second.start("u", event(0), task(0)),
                                       return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["NoneType", "TaskIdInUse"]
        await first.append("t", 1, event(1), task(1), final=True)
        with pytest.raises(TaskIdInUse):  # finished but not yet expired: still taken
            await second.start("t", event(0), task(0))
        assert await second.read("t", -1, timeout=0) == [event(0), event(1)]
    run(scenario, *replicas.open(2))


def test_bad_arguments_are_refused_before_anything_is_written(replicas):
    async def scenario(log):
        await log.start("t", event(0), task(0))
        for after in (-2, "0", 1.0, None):
            with pytest.raises(ValueError, match="after must be"):
                await log.read("t", after, timeout=0)
        for ttl in (0, -1, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="ttl"):
                await log.hold_lease("t", "replica-a", ttl)
        with pytest.raises(ValueError, match="is an int"):
            await log.append("t", 1.0, event(1), task(1))
        assert await log.snapshot("t") == (0, task(0)) and await log.lease_holder("t") is None
    run(scenario, *replicas.open())


def test_an_unknown_task_is_not_found(replicas):
    async def scenario(log):
        for call in (log.read("nope", -1, timeout=5), log.snapshot("nope"), log.is_final("nope"),
                     log.append("nope", 1, event(1), task(1))):
            with pytest.raises(TaskNotFound):
                await call
    run(scenario, *replicas.open())


# ---------------------------------------------------------------- bounds and expiry
def test_a_finished_task_expires_after_keep_seconds(replicas):
    async def scenario(log):
        await write(log, "t", 3)
        assert await log.is_final("t")
        assert await asyncio.wait_for(log.read("t", 3, timeout=60), 10) == []  # final: no wait for more

        async def gone():
            try:
                await log.snapshot("t")
                return False
            except TaskNotFound:
                return True
        assert await until(gone)
        with pytest.raises(TaskNotFound):
            await log.read("t", -1, timeout=0)
        await write(log, "t", 1, final=False)  # the id is free again, for a new task
        assert await log.snapshot("t") == (1, task(1))
    run(scenario, *replicas.open(keep_seconds=0.3))


def test_a_task_is_bounded_to_max_events_but_a_final_event_always_fits(replicas):
    async def scenario(log):
        await write(log, "t", 3, final=False)
        with pytest.raises(TaskLogFull, match="max_events=5"):
            await log.append("t", 4, event(4), task(4))
        await log.append("t", 4, event(4), task(4, "failed"), final=True)
        assert await log.read("t", -1, timeout=0) == [event(s) for s in range(5)]  # nothing trimmed
        assert await log.snapshot("t") == (4, task(4, "failed"))
    run(scenario, *replicas.open(max_events=5))


def test_memory_keeps_at_most_max_finished_tasks():
    async def scenario(log):
        await log.start("running", event(0), task(0))
        for n in range(5):
            await write(log, f"done{n}", 1)
        for n in (0, 1):
            with pytest.raises(TaskNotFound):
                await log.snapshot(f"done{n}")
        for task_id in ("done2", "done3", "done4", "running"):  # an unfinished task is never evicted
            assert (await log.snapshot(task_id))[0] in (0, 1)
    run(scenario, MemoryTaskLog(max_finished=3))


def test_redis_puts_a_ttl_on_every_key_of_a_finished_task_only(redis_url):
    async def scenario(log):
        await log.hold_lease("t", "replica-a", ttl=30)
        await write(log, "t", 2, final=False)
        keys = [f"{log.prefix}t:events", f"{log.prefix}t:snapshot"]
        assert [await log.redis.ttl(key) for key in keys] == [-1, -1]  # running: kept
        await log.append("t", 3, event(3), task(3), final=True)
        assert all(0 < ttl <= 120 for ttl in [await log.redis.ttl(key) for key in keys])
        assert not await log.redis.exists(f"{log.prefix}t:lease")
        assert not await log.redis.sismember(f"{log.prefix}unfinished", "t")
    run(scenario, RedisTaskLog(redis_url, prefix=f"test:{uuid.uuid4().hex}:", keep_seconds=120))


# ---------------------------------------------------------------- leases
def test_a_lease_is_taken_refreshed_and_lapses(replicas):
    async def scenario(a, b):
        assert await a.hold_lease("t", "replica-a", ttl=30)
        await a.start("t", event(0), task(0))
        assert not await b.hold_lease("t", "replica-b", ttl=30)
        assert await b.lease_holder("t") == "replica-a"
        assert await a.hold_lease("t", "replica-a", ttl=0.2)  # a refresh (here: a short one)
        assert await b.tasks_with_expired_lease() == []
        assert await until(lambda: b.lease_holder("t"), lambda holder: holder is None)
        assert await b.tasks_with_expired_lease() == ["t"]
        assert await b.hold_lease("t", "replica-b", ttl=30)  # the lapsed lease is free to take
        assert await a.lease_holder("t") == "replica-b"
    run(scenario, *replicas.open(2))


def test_a_replica_ends_the_task_of_a_dead_runner_and_the_runner_cannot_write_after(replicas):
    async def scenario(a, b):
        await a.hold_lease("t", "replica-a", ttl=0.2)
        await write(a, "t", 3, final=False)
        await a.start("done", event(0), task(0))
        await a.append("done", 1, event(1), task(1), final=True)
        subscriber = asyncio.create_task(read_to_the_end(b, "t"))
        # replica-a stops refreshing (it died); replica-b's sweep notices and ends the task
        assert await until(b.tasks_with_expired_lease, lambda ids: ids == ["t"])
        assert await b.hold_lease("t", "replica-b", ttl=30)
        seq, _ = await b.snapshot("t")
        await b.append("t", seq + 1, {"seq": seq + 1, "state": "failed"}, task(seq, "failed"), final=True)
        assert [e["seq"] for e in await subscriber] == [0, 1, 2, 3, 4]
        with pytest.raises(ValueError):  # the runner was only slow after all: its late write is refused
            await a.append("t", 4, event(4), task(4))
        assert await a.snapshot("t") == (4, task(3, "failed"))
        assert await b.tasks_with_expired_lease() == []
    run(scenario, *replicas.open(2))
