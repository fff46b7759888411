"""04_task_based_streaming.py and the kit's task streaming: every update, in order, for every scenario."""
import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import ROOT, library_noise, load_script, run_script
from examples_support import task_report
from streaming_kit import (TaskStreamingAgent, TaskStreamingClient, TaskUpdate, artifact_text,
                           serve, text_message)
from python_a2a import A2AError, A2AServer, StreamingClient, Task, TaskState, TaskStatus

SCRIPT = "04_task_based_streaming.py"
demo = load_script(SCRIPT)
WAITING, DONE = TaskState.WAITING, TaskState.COMPLETED

# The success scenario, update by update: (kind, state, step or artifact id, append, lastChunk).
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
REPORT = "".join(demo.REPORT_CHUNKS.values())


def describe(task: Task) -> tuple:
    """One update as (kind, state, step | (artifact id, append, lastChunk) | None)."""
    kind = task.metadata["kind"]
    if kind == "artifact-update":
        (artifact,) = task.artifacts
        return kind, task.status.state, (artifact["artifactId"], artifact["append"], artifact["lastChunk"])
    step = ((task.status.message or {}).get("metadata") or {}).get("step")
    return kind, task.status.state, step


def new_task(request: str) -> Task:
    return Task(message=text_message(request).to_dict())


async def collect(updates) -> list[Task]:
    return [update async for update in updates]


@pytest.fixture
def agent():
    return demo.ReportAgent(step_seconds=0)


@pytest.fixture
def url(agent):
    with serve(agent) as base_url:
        yield base_url


class StockTaskViews(demo.ReportAgent):
    """The same agent with python-a2a's own views left in place (§16)."""

    def setup_routes(self, app):
        A2AServer.setup_routes(self, app)


def post_json(url: str, body, headers=None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def raw_subscribe(url: str, request: str) -> list[tuple[str, dict]]:
    """tasks/sendSubscribe as plain JSON-RPC over urllib: the (event, data) pairs of the SSE reply."""
    body = {"jsonrpc": "2.0", "id": 7, "method": "tasks/sendSubscribe",
            "params": {"id": f"raw-{time.monotonic_ns()}", "message": {"role": "user",
                                                                       "parts": [{"type": "text", "text": request}]}}}
    req = urllib.request.Request(f"{url}/a2a/tasks/stream", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as response:
        blocks = response.read().decode().split("\n\n")
    events = []
    for block in blocks:
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "data" in fields:
            events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


# ---------------------------------------------------------------- the script, as a user runs it
def run_with_report(tmp_path, *args: str) -> tuple:
    """Run the script with --report; its result and the tasks it reported, by scenario."""
    report_file = tmp_path / "tasks.json"
    result = run_script(SCRIPT, *args, "--report", str(report_file))
    report = json.loads(report_file.read_text(encoding="utf-8")) if report_file.exists() else None
    return result, report


@pytest.mark.timeout(60)
def test_script_runs_all_four_scenarios(tmp_path):
    result, report = run_with_report(tmp_path, "--fast")
    out = result.stdout
    assert result.returncode == 0, result.stderr + out
    assert library_noise(out + result.stderr) == [] and result.stderr == ""
    assert out.strip().splitlines()[-1] == "Verdict: every task streamed as expected"
    assert report["ok"] and report["problems"] == []
    tasks = {task["scenario"]: task for task in report["tasks"]}
    assert list(tasks) == ["success", "cancel", "fail", "resubscribe"]
    assert {name: task["states"][-1] for name, task in tasks.items()} == {
        "success": "completed", "cancel": "canceled", "fail": "failed", "resubscribe": "completed"}
    assert all(task["states"] == ["submitted", "working", task["states"][-1]] for task in tasks.values())
    assert {name: task["step"] for name, task in tasks.items()} == {"success": 6, "cancel": 3, "fail": 5,
                                                                      "resubscribe": 6}
    for name in ("success", "resubscribe"):  # every update once, in order; both artifacts whole
        assert tasks[name]["seqs"] == list(range(12)) and tasks[name]["repeated"] == 0
        assert {key: (a["text"], a["done"]) for key, a in tasks[name]["artifacts"].items()} == {
            "sources": (demo.SOURCES, True), "report": (REPORT, True)}
    assert tasks["resubscribe"]["rejoined_after"] == 2  # dropped after step 2, missed nothing
    assert tasks["fail"]["reason"] == "RuntimeError: reviewing failed: the reviewer rejected the draft"
    assert not tasks["fail"]["artifacts"]["report"]["done"]  # no lastChunk: not shown
    assert "working (python-a2a: waiting)" in out  # the lines the README promises
    assert "cancelled at step 3/6; steps 4-6 never ran" in out
    assert "resubscribe delivered updates #3-#11 (0 repeated)" in out
    assert out.count(REPORT) == 2  # printed once each by success and resubscribe, never by cancel/fail


@pytest.mark.timeout(30)
@pytest.mark.parametrize("args, complaint", [
    (["--scenario", "nope"], "invalid choice: 'nope'"),
    (["--serve", "--scenario", "cancel"], "--scenario belongs to the client run"),
    (["--report", "tasks.txt"], "must end in .json")])
def test_bad_arguments_are_usage_errors(args, complaint):
    result = run_script(SCRIPT, *args)
    assert result.returncode == 2 and complaint in result.stderr, result.stderr


@pytest.mark.timeout(60)
def test_serve_then_url_in_another_process(tmp_path):
    server = subprocess.Popen([sys.executable, str(ROOT / SCRIPT), "--serve", "--port", "0"], cwd=ROOT,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = server.stdout.readline()  # blocks until the server announces itself
        assert first_line.startswith("Serving Report writer at http://127.0.0.1:"), first_line
        served_at = first_line.split(" at ")[1].strip()
        result, report = run_with_report(tmp_path, "--url", served_at, "--scenario", "cancel")
        assert result.returncode == 0, result.stdout + result.stderr
        (task,) = report["tasks"]
        assert (task["states"][-1], task["step"]) == ("canceled", 3)
    finally:
        server.terminate()
        assert server.wait(timeout=10) == 0
    assert library_noise(server.stdout.read() + server.stderr.read()) == []


@pytest.mark.timeout(60)
def test_url_of_another_examples_agent_is_refused_in_one_line():
    with serve(load_script("basic_streaming.py").WordStreamer(delay=0)) as url:
        result = run_script(SCRIPT, "--url", url, "--fast", timeout=50)
    assert (result.returncode, result.stdout) == (1, "")  # it ran four tasks of "problems" (and then hung)
    line, = result.stderr.splitlines()
    assert f'{url} serves "Basic streaming agent", not "Report writer"' in line and len(line) < 160


@pytest.mark.timeout(60)
def test_a_dead_url_is_one_line_saying_cannot_connect():
    with serve(demo.ReportAgent(step_seconds=0)) as url:
        pass  # closed again: nothing answers there now
    result = run_script(SCRIPT, "--url", url, "--fast")
    assert (result.returncode, result.stdout) == (1, "")  # it printed aiohttp's "Cannot connect to host ... ssl:default"
    line, = result.stderr.splitlines()
    assert line.startswith(f"error: cannot connect to {url}: is the server running?")


@pytest.mark.timeout(30)
def test_demo_client_fails_against_stock_task_views(capsys):
    """The demo's own checks catch §16/§17: against python-a2a's views it exits 1, not 0."""
    args = demo.command_line().parse_args([])
    code = demo.run_demo(args, StockTaskViews, lambda base: demo.run_scenarios(base, "success"))
    assert code == 1
    assert "sent a task update without metadata.seq: not a TaskStreamingAgent" in capsys.readouterr().err


# ---------------------------------------------------------------- every update, in order
@pytest.mark.timeout(30)
def test_success_sequence_is_exact(url):
    updates = asyncio.run(collect(TaskStreamingClient(url).tasks_send_subscribe(new_task("report"))))
    assert [describe(u) for u in updates] == SUCCESS_SEQUENCE
    assert [u.metadata["seq"] for u in updates] == list(range(len(SUCCESS_SEQUENCE)))
    assert {u.id for u in updates} == {updates[0].id}


@pytest.mark.parametrize("server", [
    demo.ReportAgent,
    pytest.param(StockTaskViews, marks=pytest.mark.xfail(strict=True, reason="§16: stock sends 2 updates")),
])
@pytest.mark.timeout(30)
def test_raw_json_rpc_gets_every_update(server):
    with serve(server(step_seconds=0)) as base:
        events = raw_subscribe(base, "report")
    assert [event for event, _ in events] == ["update"] * 11 + ["complete"]
    assert [data["status"]["state"] for _, data in events] == ["submitted"] + ["waiting"] * 10 + ["completed"]


@pytest.mark.timeout(30)
def test_python_a2a_own_client_methods_get_every_update(url):
    """Plain python-a2a StreamingClient (§17: it posts a bare Task): tasks_send_subscribe and stream_task."""
    client = StreamingClient(url)
    updates = asyncio.run(collect(client.tasks_send_subscribe(new_task("report"))))
    assert [describe(u) for u in updates] == SUCCESS_SEQUENCE
    chunks = asyncio.run(collect(client.stream_task(new_task("report"))))
    assert [c["status"] for c in chunks] == [state.value for _, state, _ in SUCCESS_SEQUENCE]
    report = [a for c in chunks for a in c["artifacts"] if a["artifactId"] == "report"]
    assert "".join(artifact_text(a) for a in report) == REPORT


# ---------------------------------------------------------------- artifacts
@pytest.mark.timeout(30)
def test_artifact_assembled_from_appended_chunks(url):
    client = TaskStreamingClient(url)
    task = new_task("report")
    updates = asyncio.run(collect(client.tasks_send_subscribe(task)))
    chunks = [u.artifacts[0] for u in updates if u.metadata["kind"] == "artifact-update"
              and u.artifacts[0]["artifactId"] == "report"]
    assert [(c["append"], c["lastChunk"]) for c in chunks] == [(False, False), (True, False), (True, True)]
    assert {c["name"] for c in chunks} == {"report.md"}
    assert "".join(artifact_text(c) for c in chunks) == REPORT
    assert all(not u.artifacts for u in updates if u.metadata["kind"] == "status-update")  # no mixing
    assert asyncio.run(demo.server_copy(client, task.id)) == {"sources": demo.SOURCES, "report": REPORT}


def new_view() -> "demo.TaskView":
    return demo.TaskView(task_report.TaskPrinter("unit", len(demo.STEPS)))


def test_view_assembles_by_id_and_prints_each_artifact_once(capsys):
    view = new_view()
    chunk = lambda seq, text, append, last: Task(metadata={"seq": seq, "kind": "artifact-update"}, artifacts=[
        {"artifactId": "a", "name": "a.txt", "parts": [{"type": "text", "text": text}],
         "append": append, "lastChunk": last}])
    for update in (chunk(0, "x", False, False), chunk(1, "y", True, False), chunk(1, "y", True, False),
                   chunk(2, "z", True, True)):
        view.apply(update)
    view.apply(Task(metadata={"seq": 3, "kind": "task"}, artifacts=[  # a snapshot replaces, not appends
        {"artifactId": "a", "name": "a.txt", "parts": [{"type": "text", "text": "xyz"}],
         "append": False, "lastChunk": True}]))
    assert view.artifacts["a"]["text"] == "xyz" and view.repeated == 1
    assert capsys.readouterr().out.count("| xyz") == 1


def _step_update(seq: int, step: int, started_s: float) -> Task:
    message = {"role": "agent", "parts": [{"type": "text", "text": f"step {step}"}],
               "metadata": {"step": step, "steps": 6, "progress": step / 6, "started_s": started_s}}
    return Task(metadata={"seq": seq, "kind": "status-update"},
                status=TaskStatus(state=WAITING, message=message))


def test_view_times_steps_by_the_agents_clock_not_by_arrival():
    view = new_view()
    for seq, step in enumerate(range(1, 7)):  # all arrive at once, as a replay after a reconnect does
        view.apply(_step_update(seq, step, started_s=0.5 * (step - 1)))
    assert task_report.seconds_per_step(view.step_starts) == pytest.approx(0.5)
    assert view.out.bar.n == 6


def test_view_without_two_steps_has_no_step_time():
    view = new_view()
    assert task_report.seconds_per_step(view.step_starts) is None
    view.apply(_step_update(0, 1, started_s=0.0))
    assert task_report.seconds_per_step(view.step_starts) is None


@pytest.mark.timeout(30)
def test_fast_resubscribe_rejoins_a_task_that_is_still_running(monkeypatch, tmp_path):
    """--fast must still show the lesson: the client comes back while the agent works on."""
    agents, steps_begun_at_rejoin = [], []

    class RecordedAgent(demo.ReportAgent):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            agents.append(self)

    rejoin = demo.TaskStreamingClient.tasks_resubscribe

    def spy(client, task_id, *args, **kwargs):
        steps_begun_at_rejoin.append(len(agents[0].started))
        return rejoin(client, task_id, *args, **kwargs)

    monkeypatch.setattr(demo, "ReportAgent", RecordedAgent)
    monkeypatch.setattr(demo.TaskStreamingClient, "tasks_resubscribe", spy)
    report_file = tmp_path / "tasks.json"
    assert demo.main(["--fast", "--scenario", "resubscribe", "--report", str(report_file)]) == 0
    assert steps_begun_at_rejoin[0] < len(demo.STEPS)  # the first rejoin found steps still to run
    (task,) = json.loads(report_file.read_text())["tasks"]
    assert (task["rejoined_after"], task["seqs"], task["repeated"]) == (2, list(range(12)), 0)


# ---------------------------------------------------------------- cancel, failure, resubscribe
@pytest.mark.timeout(30)
def test_cancel_stops_the_work(url, agent):
    request = "report; stall at step 3"
    client = TaskStreamingClient(url)

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
    client = TaskStreamingClient(url)
    task = new_task("report")
    asyncio.run(collect(client.tasks_send_subscribe(task)))
    with pytest.raises(A2AError, match="-32002.*already completed"):
        asyncio.run(client.cancel_task(task.id))
    with pytest.raises(A2AError, match="-32001"):
        asyncio.run(client.cancel_task("no-such-task"))


class FinishesWhileCancelled(TaskStreamingAgent):
    """Its work is done, but its clean-up (a task it started) is still running when a cancel
    arrives: the cancel is too late and must not claim the task."""

    def __init__(self):
        super().__init__(name="racer")
        self.cleaning_up = threading.Event()

    async def _slow_clean_up(self):
        self.cleaning_up.set()
        await asyncio.sleep(0.5)  # ends on its own: nothing is left pending when the test's server stops

    async def run_task(self, message):
        yield TaskUpdate.progress("last step", 1, 1)
        asyncio.get_running_loop().create_task(self._slow_clean_up())  # not awaited: the work ends


@pytest.mark.timeout(30)
def test_cancel_that_loses_the_race_to_completion_is_refused_not_reported_cancelled():
    agent = FinishesWhileCancelled()
    with serve(agent) as base_url:
        client = TaskStreamingClient(base_url)

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
    updates = asyncio.run(collect(TaskStreamingClient(url).tasks_send_subscribe(new_task(request))))
    final = updates[-1]
    assert final.status.state == TaskState.FAILED
    assert artifact_text(final.status.message) == "RuntimeError: reviewing failed: the reviewer rejected the draft"
    assert [describe(u) for u in updates[:-1]] == SUCCESS_SEQUENCE[:8]
    assert [step for req, step in agent.started if req == request] == [1, 2, 3, 4, 5]


@pytest.mark.timeout(30)
def test_resubscribe_mid_task_loses_and_repeats_nothing(url, agent):
    """Drop after step 2 of a task that then stalls at step 4; resubscribe replays the rest, live."""
    client = TaskStreamingClient(url)

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
    client = TaskStreamingClient(url)

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
    client = TaskStreamingClient(url)

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
        got_status, reply = post_json(stream, body)
        assert got_status == status and "error" in reply, (body, got_status, reply)
        assert code is None or reply["error"]["code"] == code
    assert post_json(stream, rpc("tasks/resubscribe", {"id": "x"}), {"Last-Event-ID": "abc"})[1]["error"]["code"] == -32602
    assert len(raw_subscribe(url, "still serving")) == 12


@pytest.mark.timeout(30)
@pytest.mark.parametrize("last_seen", ["-3", "12", "50"])
def test_resubscribe_after_an_update_never_sent_is_refused_not_silently_shortened(url, last_seen):
    task = new_task("report")
    assert len(asyncio.run(collect(TaskStreamingClient(url).tasks_send_subscribe(task)))) == 12  # seqs 0-11
    body = {"jsonrpc": "2.0", "id": 1, "method": "tasks/resubscribe", "params": {"id": task.id}}
    status, reply = post_json(f"{url}/tasks/stream", body, {"Last-Event-ID": last_seen})
    assert status == 200 and reply["error"]["code"] == -32602, reply
    assert "Last-Event-ID" in reply["error"]["message"]
    assert last_seen.startswith("-") or "updates 0-11 have been sent" in reply["error"]["message"]


# ---------------------------------------------------------------- the rest of the agent
@pytest.mark.timeout(30)
def test_shutdown_cancels_a_running_task(agent):
    """serve() ending while a task is stalled ends the task (no thread left waiting 300 s)."""
    async def start_and_leave(base):
        task = new_task("report; stall at step 2")
        updates = TaskStreamingClient(base).tasks_send_subscribe(task)
        async for update in updates:
            if describe(update)[2] == 2:
                break
        await updates.aclose()
        return task.id

    with serve(agent) as base:
        task_id = asyncio.run(start_and_leave(base))
    final = agent.task_engine.call(agent.task_engine.wait_final(task_id), timeout=10)
    assert final["status"]["state"] == TaskState.CANCELED.value
    assert artifact_text(final["status"]["message"]) == "server shutting down"
    assert agent.live_streams == 0


@pytest.mark.timeout(30)
def test_stream_endpoint_gives_the_artifact_text(url):
    from streaming_kit import StrictStreamingClient
    chunks = asyncio.run(collect(StrictStreamingClient(url).stream_response("report")))
    assert [c["content"] for c in chunks] == [demo.SOURCES, *demo.REPORT_CHUNKS.values()]


# ---------------------------------------------------------------- A2A v0.3 message/stream (§20)
def v03_stream(url: str, request: str) -> list[dict]:
    """message/stream on POST /: the JSON-RPC envelopes of the SSE reply, in order."""
    body = {"jsonrpc": "2.0", "id": "req-1", "method": "message/stream",
            "params": {"message": {"kind": "message", "role": "user", "messageId": "m-1", "contextId": "ctx-1",
                                   "parts": [{"kind": "text", "text": request}]}}}
    req = urllib.request.Request(f"{url}/", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as response:
        text = response.read().decode()
    return [json.loads(line[len("data: "):]) for line in text.splitlines() if line.startswith("data: ")]


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
    status, reply = post_json(f"{url}/", {"jsonrpc": "2.0", "id": 2, "method": "tasks/cancel", "params": {"id": "nope"}})
    assert status == 200 and reply["error"]["code"] == -32001
    status, reply = post_json(f"{url}/a2a", {"jsonrpc": "2.0", "id": 3, "method": "message/stream", "params": {}})
    assert status == 200 and reply["error"]["code"] == -32602
    status, reply = post_json(f"{url}/", text_message("report").to_dict())  # plain python-a2a message: as before
    assert status == 200 and REPORT in json.dumps(reply)


@pytest.mark.timeout(30)
def test_a_task_that_skips_its_steps_fails_the_verdict_in_one_short_line(capsys):
    class Hasty(TaskStreamingAgent):  # the demo's name, but no steps and no artifacts
        async def run_task(self, message):
            yield TaskUpdate.progress("done already", 1, 1)

    with serve(Hasty(name="Report writer")) as url:
        assert asyncio.run(demo.run_scenarios(url, "success")) == 1
    out = capsys.readouterr().out
    assert "problem: last step seen 1, expected 6" in out
    assert out.strip().splitlines()[-1] == "Verdict: FAILED - success: see the problems above"
