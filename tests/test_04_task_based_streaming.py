"""04_task_based_streaming.py as a user runs it: the script, its --report JSON, its view and verdict.
The kit's task protocol that 04 teaches is tested on an agent of its own in tests/kit/test_task_protocol.py."""
import asyncio
import json

import pytest

from conftest import library_noise, load_script, run_script, serve_script
from examples_support import task_report
from streaming_kit import TaskStreamingAgent, TaskUpdate, serve
from python_a2a import A2AServer, Task, TaskState, TaskStatus

SCRIPT = "04_task_based_streaming.py"
demo = load_script(SCRIPT)
WAITING = TaskState.WAITING
REPORT = "".join(demo.REPORT_CHUNKS.values())


class StockTaskViews(demo.ReportAgent):
    """The same agent with python-a2a's own views left in place (§16)."""

    def setup_routes(self, app):
        A2AServer.setup_routes(self, app)


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
    with serve_script(SCRIPT) as server:  # and SIGTERM stops it with exit status 0
        assert server.name == "Report writer" and server.url.startswith("http://127.0.0.1:"), server.url
        result, report = run_with_report(tmp_path, "--url", server.url, "--scenario", "cancel")
        assert result.returncode == 0, result.stdout + result.stderr
        (task,) = report["tasks"]
        assert (task["states"][-1], task["step"]) == ("canceled", 3)
    assert library_noise(server.stdout + server.stderr) == []


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


# ---------------------------------------------------------------- the client's view of a task, its verdict
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
