"""04 - Task-based streaming: a task that reports its steps, streams its results, and can be
cancelled, fail, or be picked up again after a dropped connection.

A "report writer" agent works through six steps; four tasks run (--scenario picks one). You will see:
  1. the agent (a TaskStreamingAgent) yield a progress update per step and its results as artifact
     chunks; returning completes the task, raising fails it;
  2. the client send the task with tasks/sendSubscribe and receive its whole life as it happens:
     submitted -> working (step k/6) -> artifacts -> completed, every update once, in order;
  3. each artifact assembled by its id and printed once, when its lastChunk arrives: the report
     comes in three chunks (append=True after the first); progress text never mixes with it;
  4. cancel: at step 3 the client sends tasks/cancel; the work stops there, steps 4-6 never run;
  5. fail: step 5 raises; the task ends "failed" with the reason in its status message;
  6. resubscribe: the client drops the connection after step 2; tasks/resubscribe with the last
     update it saw replays exactly what it missed, then live updates: nothing lost or repeated;
  7. a table per task, then one verdict (exit 1 if a task did not stream as expected).

python-a2a has no "working" state: it says "waiting", so states print as "working (python-a2a:
waiting)". The same agent answers A2A JSON-RPC v0.3 and v1.0 on POST / (message/stream,
tasks/resubscribe, tasks/cancel): official A2A clients stream, rejoin and cancel the same tasks.

    python 04_task_based_streaming.py --fast
    python 04_task_based_streaming.py --fast --scenario cancel --report tasks.json
    python 04_task_based_streaming.py --serve              # only the agent, on http://127.0.0.1:8104
"""
import asyncio
import re
import sys
import time
from contextlib import aclosing
from typing import NamedTuple, Optional

from streaming_kit import (FINAL_STATES, TaskStreamingAgent, TaskStreamingClient, TaskUpdate, artifact_text,
                           message_text, text_message)
from examples_support import demo_parser, output_file, paint, run_demo, task_report
from examples_support.task_report import TaskPrinter
from python_a2a import Task, TaskState

DEFAULT_PORT = 8104
STEPS = ("Reading the request", "Gathering sources", "Outlining", "Drafting", "Reviewing", "Finishing")
SOURCES = "A2A specification v0.1 (tasks/sendSubscribe); python-a2a 0.5.10 source"
REPORT_CHUNKS = {  # step -> the part of the report that step writes
    4: "Streaming a task means reporting its life, not only its answer. ",
    5: "Each step sends a status update; results travel as artifact chunks with a stable id. ",
    6: "The last chunk says lastChunk, so the reader knows the artifact is whole.",
}
STALL_SECONDS = 300.0  # "stall at step N": a source that never answers; only a cancel ends it


# --8<-- [start:agent]
def directive(word: str, request: str) -> Optional[int]:
    """The step number in "<word> at step N" inside the request, if any (the demo's way to misbehave)."""
    found = re.search(rf"\b{word} at step (\d+)", request)
    return int(found.group(1)) if found else None


class ReportAgent(TaskStreamingAgent):
    """Writes a short report in six steps, streaming its progress and the report itself."""

    def __init__(self, step_seconds: float = 0.4):
        super().__init__(name="Report writer")
        self.step_seconds = step_seconds
        self.started: list[tuple[str, int]] = []  # (request, step) for every step begun: proof for tests

    async def run_task(self, message):
        request = message_text(message)
        stall_at, fail_at = directive("stall", request), directive("fail", request)
        began = time.perf_counter()
        for step, title in enumerate(STEPS, start=1):
            self.started.append((request, step))
            update = TaskUpdate.progress(title, step, len(STEPS))  # 1. a status update: "working", step k/6
            # When the step began, by the agent's clock: still true when the update is replayed later.
            update.metadata["started_s"] = round(time.perf_counter() - began, 4)
            yield update
            await asyncio.sleep(STALL_SECONDS if step == stall_at else self.step_seconds)  # 4. a cancel lands here
            if step == fail_at:
                raise RuntimeError(f"{title.lower()} failed: the reviewer rejected the draft")  # 5. -> "failed"
            if step == 2:
                yield TaskUpdate.chunk("sources", SOURCES, last_chunk=True)  # 1. an artifact in one chunk
            if step in REPORT_CHUNKS:  # 3. one artifact id, three chunks: append after the first, lastChunk on the end
                yield TaskUpdate.chunk("report", REPORT_CHUNKS[step], name="report.md",
                                       append=step > min(REPORT_CHUNKS), last_chunk=step == max(REPORT_CHUNKS))
        # returning completes the task
# --8<-- [end:agent]


# --8<-- [start:client]
class TaskView:
    """What the client has seen of one task: updates by seq, states, the step, artifacts by id."""

    def __init__(self, printer: TaskPrinter):
        self.seqs: list[int] = []
        self.repeated = 0
        self.states: list[TaskState] = []
        self.step, self.steps = 0, len(STEPS)
        self.step_starts: list[float] = []  # the agent's "started_s" of each step seen
        self.artifacts: dict[str, dict] = {}  # id -> {"name", "text", "chunks", "done"}
        self.reason = ""  # a final state's message: why it failed or was cancelled
        self.rejoined_after: Optional[int] = None
        self.out = printer

    @property
    def last_seq(self) -> int:
        return self.seqs[-1] if self.seqs else -1

    @property
    def state(self) -> Optional[TaskState]:
        return self.states[-1] if self.states else None

    def apply(self, task: Task) -> None:
        """Take one update (a python-a2a Task with metadata seq and kind); one seen before is counted, ignored."""
        if task.metadata["seq"] in self.seqs:
            self.repeated += 1
            return
        self.seqs.append(task.metadata["seq"])
        if task.status.state != self.state:
            self.states.append(task.status.state)
            final = task.status.state in FINAL_STATES
            self.reason = artifact_text(task.status.message or {}) if final else ""
            self.out.state(task.status.state, self.reason)
        progress = (task.status.message or {}).get("metadata") or {}
        if task.metadata["kind"] == "status-update" and "step" in progress:
            self.step, self.steps = progress["step"], progress["steps"]
            self.step_starts += [progress["started_s"]] if "started_s" in progress else []
            self.out.step(self.step, self.steps, progress.get("progress", 0), artifact_text(task.status.message))
        for chunk in task.artifacts:
            self.add_chunk(chunk)

    def add_chunk(self, chunk: dict) -> None:
        """3. Assemble by artifactId: append adds, otherwise replaces; whole at lastChunk."""
        seen = self.artifacts.setdefault(chunk["artifactId"], {"name": chunk.get("name"), "text": "", "chunks": 0,
                                                               "done": False})
        seen["text"] = (seen["text"] if chunk.get("append") else "") + artifact_text(chunk)
        seen["chunks"] += 1
        if chunk.get("lastChunk") and not seen["done"]:
            seen["done"] = True
            self.out.artifact(seen["name"], seen["chunks"], seen["text"])


async def follow(client: TaskStreamingClient, task: Task, view: TaskView, cancel_at: Optional[int] = None,
                 drop_at: Optional[int] = None) -> None:
    """2. Send the task with tasks/sendSubscribe and apply each update until a final state; at step
    cancel_at send tasks/cancel, at step drop_at leave (the connection drops, the task runs on)."""
    cancel_sent = False
    async with aclosing(client.tasks_send_subscribe(task)) as updates:  # leaving closes the HTTP stream
        async for update in updates:
            view.apply(update)
            if view.step == cancel_at and not cancel_sent:
                cancel_sent = True
                await cancel(client, task.id, view)
            if view.step == drop_at:
                return
# --8<-- [end:client]


# --8<-- [start:cancel]
async def cancel(client: TaskStreamingClient, task_id: str, view: TaskView) -> None:
    """4. tasks/cancel: returns once the agent's work has stopped (raises if refused: a task that
    already ended, or an unknown id); the subscribed stream then ends with "canceled"."""
    view.out.say(paint("  client: tasks/cancel", "magenta"))
    await client.cancel_task(task_id)
# --8<-- [end:cancel]


# --8<-- [start:resubscribe]
async def resubscribe(client: TaskStreamingClient, task_id: str, view: TaskView) -> None:
    """6. tasks/resubscribe after the last update seen (its seq goes as Last-Event-ID): the updates
    missed while away, then live ones, until a final state."""
    view.rejoined_after = view.last_seq
    view.out.say(paint(f"  connection dropped after update #{view.last_seq}; resubscribing", "magenta"))
    async with aclosing(client.tasks_resubscribe(task_id, after=view.last_seq)) as updates:
        async for update in updates:
            view.apply(update)
    view.out.say(f"  resubscribe delivered updates #{view.rejoined_after + 1}-#{view.last_seq} "
                 f"({view.repeated} repeated)")


async def server_copy(client: TaskStreamingClient, task_id: str) -> dict[str, str]:
    """The task's artifacts as the server holds them: resubscribing without `after` starts with a
    snapshot of the task; for a finished task that is the only update, with every artifact whole."""
    async with aclosing(client.tasks_resubscribe(task_id)) as updates:
        async for snapshot in updates:
            return {a["artifactId"]: artifact_text(a) for a in snapshot.artifacts}
    return {}
# --8<-- [end:resubscribe]


class Scenario(NamedTuple):
    request: str                # what the client asks
    expected_state: TaskState   # the final state it expects
    last_step: int              # the last step it expects to see


SCENARIOS = {
    "success": Scenario("Write a report on task streaming.", TaskState.COMPLETED, 6),
    "cancel": Scenario("Write a report on task streaming; stall at step 3.", TaskState.CANCELED, 3),
    "fail": Scenario("Write a report on task streaming; fail at step 5.", TaskState.FAILED, 5),
    "resubscribe": Scenario("Write a report on task streaming.", TaskState.COMPLETED, 6),
}


async def run_scenario(client: TaskStreamingClient, scenario: str, pause: float) -> dict:
    """One task, start to finish, checked against the server's copy: its --report entry."""
    expected, started = SCENARIOS[scenario], time.perf_counter()
    print(paint(f"\n== {scenario}: {expected.request}", "cyan"))
    task, view = Task(message=text_message(expected.request).to_dict()), TaskView(TaskPrinter(scenario, len(STEPS)))
    try:
        await follow(client, task, view, cancel_at=3 if scenario == "cancel" else None,
                     drop_at=2 if scenario == "resubscribe" else None)
        if scenario == "resubscribe":
            await asyncio.sleep(pause)  # meanwhile the agent works on
            await resubscribe(client, task.id, view)
    finally:
        view.out.close()  # also when the stream fails before a final state
    found = task_report.problems(view, expected.expected_state, expected.last_step, await server_copy(client, task.id))
    return task_report.outcome(scenario, view, time.perf_counter() - started, found)


async def run_scenarios(url: str, scenario: str = "all", pause: float = 0.0, report=None) -> int:
    """The chosen scenario (or all four), then the table, the one verdict and the report; the exit code."""
    client = TaskStreamingClient(url)
    scenarios = list(SCENARIOS) if scenario == "all" else [scenario]
    return task_report.finish([await run_scenario(client, name, pause) for name in scenarios], report)


def command_line():
    parser = demo_parser(__doc__, DEFAULT_PORT)
    parser.client_option("--scenario", choices=[*SCENARIOS, "all"], default="all",
                         help="which task to run (default: all four)")
    parser.client_option("--report", type=output_file(".json"), metavar="FILE.json", help="write every task as JSON")
    return parser


def main(argv=None) -> int:
    args = command_line().parse_args(argv)
    step_seconds = 0.05 if args.fast else 0.4  # short but not zero: "resubscribe" must rejoin a running task
    return run_demo(args, lambda: ReportAgent(step_seconds),
                    lambda url: run_scenarios(url, args.scenario, 2.5 * step_seconds, args.report), own_agent_only=True)


if __name__ == "__main__":
    sys.exit(main())
