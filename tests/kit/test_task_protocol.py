"""The task protocol of TaskStreamingAgent (streaming_kit/tasks.py, rpc.py), on both serving paths:
every update once and in order, artifacts by id, cancel, failure, resubscribe, bad requests, v0.3.

The agent here is the test's own: six steps, a one-chunk artifact and a three-chunk one, and
directives in the request ("stall at step N", "fail at step N") that make it misbehave on cue.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import pytest

import streaming_kit as kit
from conftest import eventually, post_json, read_sse
from python_a2a import A2AError, A2AServer, StreamingClient, Task, TaskState

WAITING, DONE = TaskState.WAITING, TaskState.COMPLETED
STEPS = 6
SOURCES = "two sources, sent whole"
REPORT_PARTS = {4: "The first part, ", 5: "the middle part, ", 6: "and the end."}  # step -> the chunk it writes
REPORT = "".join(REPORT_PARTS.values())
FAILURE = "RuntimeError: step 5 broke on purpose"

# Every update of a task that runs to the end: (kind, state, step | (artifact id, append, lastChunk) | None).
SUCCESS_SEQUENCE = [
    ("task", TaskState.SUBMITTED, None),
    ("status-update", WAITING, 1), ("status-update", WAITING, 2),
    ("artifact-update", WAITING, ("sources", False, True)),
    ("status-update", WAITING, 3), ("status-update", WAITING, 4),
    ("artifact-update", WAITING, ("report", False, False)),
    ("status-update", WAITING, 5),
    ("artifact-update", WAITING, ("report", True, False)),
    ("status-update", WAITING, 6),
    ("artifact-update", WAITING, ("report", True, True)),
    ("status-update", DONE, None),
]


class SixSteps(kit.TaskStreamingAgent):
    """Reports six steps; "sources" (one chunk) after step 2, "report" (three chunks) after steps 4-6.
    "stall at step N" in the request waits at step N until cancelled; "fail at step N" raises there."""

    def __init__(self):
        super().__init__(name="six steps")
        self.started: list[tuple[str, int]] = []  # (request, step) of every step begun: what ran

    async def run_task(self, message):
        request = kit.message_text(message)
        for step in range(1, STEPS + 1):
            self.started.append((request, step))
            yield kit.TaskUpdate.progress(f"step {step}", step, STEPS)
            # sleep(0) lets other tasks run between steps, so concurrent tasks interleave
            await asyncio.sleep(300 if f"stall at step {step}" in request else 0)
            if f"fail at step {step}" in request:
                raise RuntimeError(f"step {step} broke on purpose")
            if step == 2:
                yield kit.TaskUpdate.chunk("sources", SOURCES, last_chunk=True)
            if step in REPORT_PARTS:
                yield kit.TaskUpdate.chunk("report", REPORT_PARTS[step], name="report.md",
                                           append=step > min(REPORT_PARTS), last_chunk=step == max(REPORT_PARTS))


class SixStepsOnStockViews(SixSteps):
    """The same agent with python-a2a's own task views left in place (§16)."""

    def setup_routes(self, app):
        A2AServer.setup_routes(self, app)


@pytest.fixture
def agent():
    return SixSteps()


@pytest.fixture
def url(serving, agent):
    with serving(agent) as base_url:
        yield base_url


def describe(task: Task) -> tuple:
    """One update as (kind, state, step | (artifact id, append, lastChunk) | None)."""
    kind = task.metadata["kind"]
    if kind == "artifact-update":
        (artifact,) = task.artifacts
        return kind, task.status.state, (artifact["artifactId"], artifact["append"], artifact["lastChunk"])
    step = ((task.status.message or {}).get("metadata") or {}).get("step")
    return kind, task.status.state, step


def new_task(request: str) -> Task:
    return Task(message=kit.text_message(request).to_dict())


async def collect(updates) -> list:
    return [update async for update in updates]


def sse_events(url: str, body: dict) -> list[tuple[str, dict]]:
    """POST body and read the whole SSE reply: its (event name, data) pairs."""
    return [(event, data) for event, _, data in read_sse(url, body)]


def raw_subscribe(url: str, request: str) -> list[tuple[str, dict]]:
    """tasks/sendSubscribe as plain JSON-RPC over urllib, on python-a2a's /a2a/tasks/stream."""
    body = {"jsonrpc": "2.0", "id": 7, "method": "tasks/sendSubscribe",
            "params": {"id": f"raw-{time.monotonic_ns()}",
                       "message": {"role": "user", "parts": [{"type": "text", "text": request}]}}}
    return sse_events(f"{url}/a2a/tasks/stream", body)


def v03_stream(url: str, request: str) -> list[dict]:
    """A2A v0.3 message/stream on POST /: the JSON-RPC envelopes of the SSE reply, in order."""
    body = {"jsonrpc": "2.0", "id": "req-1", "method": "message/stream",
            "params": {"message": {"kind": "message", "role": "user", "messageId": "m-1", "contextId": "ctx-1",
                                   "parts": [{"kind": "text", "text": request}]}}}
    return [data for _, data in sse_events(f"{url}/", body)]


# ---------------------------------------------------------------- every update, in order
@pytest.mark.timeout(30)
def test_success_sequence_is_exact(url):
    updates = asyncio.run(collect(kit.TaskStreamingClient(url).tasks_send_subscribe(new_task("report"))))
    assert [describe(u) for u in updates] == SUCCESS_SEQUENCE
    assert [u.metadata["seq"] for u in updates] == list(range(len(SUCCESS_SEQUENCE)))
    assert {u.id for u in updates} == {updates[0].id}


def assert_every_update(events: list[tuple[str, dict]]) -> None:
    assert [event for event, _ in events] == ["update"] * 11 + ["complete"]
    assert [data["status"]["state"] for _, data in events] == ["submitted"] + ["waiting"] * 10 + ["completed"]


@pytest.mark.timeout(30)
def test_raw_json_rpc_gets_every_update(url):
    assert_every_update(raw_subscribe(url, "report"))


@pytest.mark.xfail(strict=True, reason="§16: python-a2a's own task views send 2 updates")
@pytest.mark.timeout(30)
def test_raw_json_rpc_misses_updates_on_python_a2a_own_task_views():
    with kit.serve(SixStepsOnStockViews()) as base:  # setup_routes is Flask's: the WSGI path only
        assert_every_update(raw_subscribe(base, "report"))


@pytest.mark.timeout(30)
def test_python_a2a_own_client_methods_get_every_update(url):
    """Plain python-a2a StreamingClient (§17: it posts a bare Task): tasks_send_subscribe and stream_task."""
    client = StreamingClient(url)
    updates = asyncio.run(collect(client.tasks_send_subscribe(new_task("report"))))
    assert [describe(u) for u in updates] == SUCCESS_SEQUENCE
    chunks = asyncio.run(collect(client.stream_task(new_task("report"))))
    assert [c["status"] for c in chunks] == [state.value for _, state, _ in SUCCESS_SEQUENCE]
    report = [a for c in chunks for a in c["artifacts"] if a["artifactId"] == "report"]
    assert "".join(kit.artifact_text(a) for a in report) == REPORT


# ---------------------------------------------------------------- artifacts
async def server_copy(client: kit.TaskStreamingClient, task_id: str) -> dict[str, str]:
    """The artifacts as the server holds them: the first update of a resubscribe without `after`."""
    async with contextlib.aclosing(client.tasks_resubscribe(task_id)) as updates:
        async for snapshot in updates:
            return {a["artifactId"]: kit.artifact_text(a) for a in snapshot.artifacts}


@pytest.mark.timeout(30)
def test_artifact_assembled_from_appended_chunks(url):
    client = kit.TaskStreamingClient(url)
    task = new_task("report")
    updates = asyncio.run(collect(client.tasks_send_subscribe(task)))
    chunks = [u.artifacts[0] for u in updates if u.metadata["kind"] == "artifact-update"
              and u.artifacts[0]["artifactId"] == "report"]
    assert [(c["append"], c["lastChunk"]) for c in chunks] == [(False, False), (True, False), (True, True)]
    assert {c["name"] for c in chunks} == {"report.md"}
    assert "".join(kit.artifact_text(c) for c in chunks) == REPORT
    assert all(not u.artifacts for u in updates if u.metadata["kind"] == "status-update")  # no mixing
    assert asyncio.run(server_copy(client, task.id)) == {"sources": SOURCES, "report": REPORT}


# ---------------------------------------------------------------- cancel, failure, resubscribe
@pytest.mark.timeout(30)
def test_cancel_stops_the_work(url, agent):
    request = "report; stall at step 3"
    client = kit.TaskStreamingClient(url)

    async def scenario():
        task, seen, cancelled = new_task(request), [], None
        async for update in client.tasks_send_subscribe(task):
            seen.append(update)
            if describe(update) == ("status-update", WAITING, 3):
                cancelled = await client.cancel_task(task.id)
        return seen, cancelled

    seen, cancelled = asyncio.run(scenario())
    assert cancelled.status.state == TaskState.CANCELED
    assert [describe(u) for u in seen] == SUCCESS_SEQUENCE[:5] + [("status-update", TaskState.CANCELED, None)]
    assert [step for req, step in agent.started if req == request] == [1, 2, 3]  # 4-6 never began
    assert agent.live_streams == 0  # the task's generator and loop are gone


@pytest.mark.timeout(30)
def test_cancel_refused_for_finished_or_unknown_task(url):
    client = kit.TaskStreamingClient(url)
    task = new_task("report")
    asyncio.run(collect(client.tasks_send_subscribe(task)))
    with pytest.raises(A2AError, match="-32002.*already completed"):
        asyncio.run(client.cancel_task(task.id))
    with pytest.raises(A2AError, match="-32001"):
        asyncio.run(client.cancel_task("no-such-task"))


class FinishesWhileCancelled(kit.TaskStreamingAgent):
    """Its work is done, but its clean-up (a task it started) is still running when a cancel
    arrives: the cancel is too late and must not claim the task."""

    def __init__(self):
        super().__init__(name="racer")
        self.cleaning_up = threading.Event()

    async def _slow_clean_up(self):
        self.cleaning_up.set()
        await asyncio.sleep(0.5)  # ends on its own: nothing is left pending when the test's server stops

    async def run_task(self, message):
        yield kit.TaskUpdate.progress("last step", 1, 1)
        asyncio.get_running_loop().create_task(self._slow_clean_up())  # not awaited: the work ends


@pytest.mark.timeout(30)
def test_cancel_that_loses_the_race_to_completion_is_refused_not_reported_cancelled(serving):
    agent = FinishesWhileCancelled()
    with serving(agent) as base_url:
        client = kit.TaskStreamingClient(base_url)

        async def scenario():
            task = new_task("go")
            following = asyncio.create_task(collect(client.tasks_send_subscribe(task)))
            await asyncio.get_running_loop().run_in_executor(None, agent.cleaning_up.wait, 10)
            with pytest.raises(A2AError, match="-32002.*(already|ended) completed"):
                await client.cancel_task(task.id)
            return await following

        assert asyncio.run(scenario())[-1].status.state == DONE


@pytest.mark.timeout(30)
def test_failure_ends_failed_with_the_reason(url, agent):
    request = "report; fail at step 5"
    updates = asyncio.run(collect(kit.TaskStreamingClient(url).tasks_send_subscribe(new_task(request))))
    final = updates[-1]
    assert final.status.state == TaskState.FAILED
    assert kit.artifact_text(final.status.message) == FAILURE
    assert [describe(u) for u in updates[:-1]] == SUCCESS_SEQUENCE[:8]
    assert [step for req, step in agent.started if req == request] == [1, 2, 3, 4, 5]


@pytest.mark.timeout(30)
def test_resubscribe_mid_task_loses_and_repeats_nothing(url):
    """Drop after step 2 of a task that then stalls at step 4; resubscribe replays the rest, live."""
    client = kit.TaskStreamingClient(url)

    async def scenario():
        task, seqs, steps = new_task("report; stall at step 4"), [], []
        first = client.tasks_send_subscribe(task)
        async for update in first:
            seqs.append(update.metadata["seq"])
            if describe(update)[2] == 2:
                break
        await first.aclose()
        async for update in client.tasks_resubscribe(task.id, after=seqs[-1]):
            seqs.append(update.metadata["seq"])
            steps.append(describe(update))
            if describe(update)[2] == 4:  # the task is running (stalled): end it
                await client.cancel_task(task.id)
        return seqs, steps

    seqs, steps = asyncio.run(scenario())
    assert seqs == list(range(len(seqs)))  # every update once, in order, across the reconnect
    assert steps[-1] == ("status-update", TaskState.CANCELED, None)
    assert ("status-update", WAITING, 3) in steps


@pytest.mark.timeout(30)
def test_resubscribe_without_last_seen_starts_with_current_state(url):
    client = kit.TaskStreamingClient(url)

    async def scenario():
        task, first_events = new_task("report; stall at step 3"), []
        async for update in client.tasks_send_subscribe(task):
            if describe(update)[2] == 3:
                break
        async for update in client.tasks_resubscribe(task.id):
            first_events.append(update)
            if len(first_events) == 1:
                await client.cancel_task(task.id)
        finished = await collect(client.tasks_resubscribe(task.id))
        return first_events, finished

    running, finished = asyncio.run(scenario())
    snapshot = running[0]
    assert (snapshot.metadata["kind"], snapshot.status.state) == ("task", WAITING)
    assert snapshot.metadata["seq"] == 4 and snapshot.artifacts[0]["artifactId"] == "sources"
    assert [u.status.state for u in running[1:]] == [TaskState.CANCELED]
    assert len(finished) == 1 and finished[0].status.state == TaskState.CANCELED


@pytest.mark.timeout(30)
def test_concurrent_tasks_do_not_mix(url):
    client = kit.TaskStreamingClient(url)

    async def three():
        return await asyncio.gather(*(collect(client.tasks_send_subscribe(new_task(f"report {n}")))
                                      for n in range(3)))

    for updates in asyncio.run(three()):
        assert len({u.id for u in updates}) == 1
        assert [describe(u) for u in updates] == SUCCESS_SEQUENCE


# ---------------------------------------------------------------- bad requests
@pytest.mark.timeout(30)
def test_bad_task_requests_get_json_rpc_errors(url):
    stream = f"{url}/tasks/stream"
    rpc = lambda method, params: {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    cases = [
        (b"{not json", 200, -32700),  # JSON-RPC errors come with HTTP 200, as official clients expect
        (rpc("tasks/unknown", {}), 200, -32601),
        (rpc("tasks/sendSubscribe", {"id": "x"}), 200, -32602),  # no message: invalid params
        (rpc("tasks/resubscribe", {}), 200, -32602),
        (rpc("tasks/resubscribe", {"id": "missing"}), 200, -32001),
    ]
    for body, status, code in cases:
        got_status, _, reply = post_json(stream, body)
        assert got_status == status and "error" in reply, (body, got_status, reply)
        assert code is None or reply["error"]["code"] == code
    assert post_json(stream, rpc("tasks/resubscribe", {"id": "x"}), {"Last-Event-ID": "abc"})[2]["error"]["code"] == -32602
    assert len(raw_subscribe(url, "still serving")) == 12


@pytest.mark.timeout(30)
@pytest.mark.parametrize("last_seen", ["-3", "12", "50"])
def test_resubscribe_after_an_update_never_sent_is_refused_not_silently_shortened(url, last_seen):
    task = new_task("report")
    assert len(asyncio.run(collect(kit.TaskStreamingClient(url).tasks_send_subscribe(task)))) == 12  # seqs 0-11
    body = {"jsonrpc": "2.0", "id": 1, "method": "tasks/resubscribe", "params": {"id": task.id}}
    status, _, reply = post_json(f"{url}/tasks/stream", body, {"Last-Event-ID": last_seen})
    assert status == 200 and reply["error"]["code"] == -32602, reply
    assert "Last-Event-ID" in reply["error"]["message"]
    assert last_seen.startswith("-") or "updates 0-11 have been sent" in reply["error"]["message"]


# ---------------------------------------------------------------- the rest of the agent
def stored_state(agent: kit.TaskStreamingAgent, task_id: str) -> dict:
    """The task's status as the agent's task log holds it (read directly: its server is gone)."""
    return asyncio.run(agent.task_engine.log.snapshot(task_id))[1]["status"]


@pytest.mark.timeout(30)
def test_shutdown_cancels_a_running_task(serving, agent):
    """The server ending while a task is stalled ends the task (no thread left waiting 300 s)."""
    async def start_and_leave(base):
        task = new_task("report; stall at step 2")
        updates = kit.TaskStreamingClient(base).tasks_send_subscribe(task)
        async for update in updates:
            if describe(update)[2] == 2:
                break
        await updates.aclose()
        return task.id

    with serving(agent) as base:
        task_id = asyncio.run(start_and_leave(base))
    assert eventually(lambda: stored_state(agent, task_id)["state"] == TaskState.CANCELED.value)
    assert kit.artifact_text(stored_state(agent, task_id)["message"]) == "server shutting down"
    assert agent.live_streams == 0


@pytest.mark.timeout(30)
def test_stream_endpoint_gives_the_artifact_text(url):
    chunks = asyncio.run(collect(kit.StrictStreamingClient(url).stream_response("report")))
    assert [c["content"] for c in chunks] == [SOURCES, *REPORT_PARTS.values()]


# ---------------------------------------------------------------- A2A v0.3 message/stream (§20)
@pytest.mark.timeout(30)
def test_v03_message_stream_speaks_the_current_protocol(url):
    envelopes = v03_stream(url, "report")
    assert {(e["jsonrpc"], e["id"]) for e in envelopes} == {("2.0", "req-1")}
    results = [e["result"] for e in envelopes]
    kinds = [r["kind"] for r in results]
    assert kinds == [{"task": "task", "status-update": "status-update", "artifact-update": "artifact-update"}[k]
                     for k, _, _ in SUCCESS_SEQUENCE]
    assert results[0]["status"]["state"] == "submitted" and results[0]["contextId"] == "ctx-1"
    assert [r["status"]["state"] for r in results if r["kind"] == "status-update"] == ["working"] * 6 + ["completed"]
    assert [r["final"] for r in results if r["kind"] == "status-update"] == [False] * 6 + [True]
    report = [r for r in results if r["kind"] == "artifact-update" and r["artifact"]["artifactId"] == "report"]
    assert [(r["append"], r["lastChunk"]) for r in report] == [(False, False), (True, False), (True, True)]
    assert "".join(r["artifact"]["parts"][0]["text"] for r in report) == REPORT
    assert all(p["kind"] == "text" for r in report for p in r["artifact"]["parts"])


@pytest.mark.timeout(30)
def test_v03_cancel_and_other_root_posts(url):
    status, _, reply = post_json(f"{url}/", {"jsonrpc": "2.0", "id": 2, "method": "tasks/cancel", "params": {"id": "nope"}})
    assert status == 200 and reply["error"]["code"] == -32001
    status, _, reply = post_json(f"{url}/a2a", {"jsonrpc": "2.0", "id": 3, "method": "message/stream", "params": {}})
    assert status == 200 and reply["error"]["code"] == -32602
    status, _, reply = post_json(f"{url}/", kit.text_message("report").to_dict())  # plain python-a2a message: as before
    assert status == 200 and REPORT in json.dumps(reply)


class WithHelpers(kit.TaskStreamingAgent):
    """Starts an asyncio task of its own (a helper that never ends by itself), then works on."""

    def __init__(self):
        super().__init__(name="with helpers")
        self.helpers_started = self.helpers_stopped = 0

    async def helper(self):
        self.helpers_started += 1
        try:
            await asyncio.sleep(300)
        finally:
            self.helpers_stopped += 1

    async def run_task(self, message):
        asyncio.create_task(self.helper())
        yield kit.TaskUpdate.progress("helper started", 1, 2)
        await asyncio.sleep(300 if "stall" in kit.message_text(message) else 0)
        yield kit.TaskUpdate.progress("done", 2, 2)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("request_text, ending", [("stall", "cancel"), ("finish", "end")])
def test_the_tasks_a_task_started_stop_with_it(serving, request_text, ending):
    """As on /stream, what run_task started and left running is cancelled when the task ends,
    cancelled or finished (its finally blocks have run), not left running on the shared loop."""
    agent = WithHelpers()
    with serving(agent) as url:
        client = kit.TaskStreamingClient(url)

        async def scenario():
            task, states = new_task(request_text), []
            async for update in client.tasks_send_subscribe(task):
                states.append(update.status.state)
                if ending == "cancel" and len(states) == 2:
                    await client.cancel_task(task.id)
            return states

        states = asyncio.run(scenario())
        assert states[-1] == (TaskState.CANCELED if ending == "cancel" else DONE)
        assert agent.helpers_started == 1
        assert eventually(lambda: agent.helpers_stopped == 1, seconds=5), "the task's helper still runs"
