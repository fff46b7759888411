"""Task-based streaming: a task that reports its steps, streams its results, and can be
cancelled, fail, or be picked up again after a dropped connection.

A "report writer" agent works through six steps. Over A2A's tasks/sendSubscribe the client
receives the task's whole life as it happens, and this demo runs four such tasks:

    success      submitted -> working (step k/6) -> artifacts -> completed
    cancel       the agent stalls at step 3; the client sends tasks/cancel; steps 4-6 never run
    fail         step 5 raises; the task ends "failed" with the reason in its status message
    resubscribe  the client drops the connection after step 2, then tasks/resubscribe picks up
                 exactly after the last update it saw: nothing lost, nothing repeated

You will see coloured state changes, one line per step (a tqdm bar on a terminal), and each
artifact printed once, when its last chunk arrives. The report artifact comes in three chunks
with one stable id (append=True, lastChunk=True on the last); the progress text travels in
status messages and never mixes with it. A table sums up each task.

python-a2a has no "working" task state: it says "waiting" (TaskState.WAITING). This script
prints the official A2A name with python-a2a's in brackets. The same agent also answers the
current A2A method, message/stream (v0.3 JSON-RPC on POST /), with the same updates.

    python 04_task_based_streaming.py                      # all four tasks, one process
    python 04_task_based_streaming.py --fast --scenario cancel
    python 04_task_based_streaming.py --serve              # only the agent, on http://127.0.0.1:8104
"""
import asyncio
import contextlib
import re
import sys
import time
from typing import NamedTuple, Optional

from tqdm import tqdm

from streaming_kit import (FINAL_STATES, TaskStreamingAgent, TaskStreamingClient, TaskUpdate, a2a_state, artifact_text, message_text, text_message)
from examples_support import demo_parser, paint, print_table, run_demo
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


def directive(word: str, request: str) -> Optional[int]:
    """The step number in "<word> at step N" inside the request, if any."""
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
            update = TaskUpdate.progress(title, step, len(STEPS))
            # When the step began, by the agent's clock: still true when the update is replayed later.
            update.metadata["started_s"] = round(time.perf_counter() - began, 4)
            yield update
            await asyncio.sleep(STALL_SECONDS if step == stall_at else self.step_seconds)
            if step == fail_at:
                raise RuntimeError(f"{title.lower()} failed: the reviewer rejected the draft")
            if step == 2:
                yield TaskUpdate.chunk("sources", SOURCES, last_chunk=True)
            if step in REPORT_CHUNKS:
                yield TaskUpdate.chunk("report", REPORT_CHUNKS[step], name="report.md",
                                       append=step > min(REPORT_CHUNKS), last_chunk=step == max(REPORT_CHUNKS))


STATE_COLOURS = {TaskState.SUBMITTED: "cyan", TaskState.WAITING: "yellow", TaskState.COMPLETED: "green",
                 TaskState.CANCELED: "magenta", TaskState.FAILED: "red"}


def state_name(state: TaskState) -> str:
    """The official A2A name, with python-a2a's in brackets where they differ."""
    official = a2a_state(state)
    return official if official == state.value else f"{official} (python-a2a: {state.value})"


class TaskWatcher:
    """What the client has seen of one task: updates by seq, states, steps, artifacts by id."""

    def __init__(self, label: str):
        self.seqs: list[int] = []
        self.repeated = 0
        self.states: list[TaskState] = []
        self.step, self.steps = 0, len(STEPS)
        self.step_starts: list[float] = []  # the agent's "started_s" of each step seen
        self.artifacts: dict[str, dict] = {}  # id -> {"name", "text", "chunks", "done"}
        self.reason = ""
        self.bar = tqdm(total=self.steps, desc=label, unit="step", disable=None, leave=False)

    @property
    def last_seq(self) -> int:
        return self.seqs[-1] if self.seqs else -1

    @property
    def state(self) -> Optional[TaskState]:
        return self.states[-1] if self.states else None

    def apply(self, task: Task) -> None:
        """Take one update; one seen before (same seq) is counted and ignored."""
        seq = task.metadata["seq"]
        if seq in self.seqs:
            self.repeated += 1
            return
        self.seqs.append(seq)
        self._state(task)
        if task.metadata["kind"] == "status-update" and task.status.message:
            self._progress(task.status.message)
        for artifact in task.artifacts:
            self._artifact(artifact)

    def _state(self, task: Task) -> None:
        state = task.status.state
        if state == self.state:
            return
        self.states.append(state)
        self.say(paint(state_name(state), STATE_COLOURS.get(state, "white")))
        if state in FINAL_STATES:
            self.reason = artifact_text(task.status.message or {})
            if self.reason:
                self.say(f"  reason: {self.reason}")
            self.bar.close()

    def _progress(self, message: dict) -> None:
        progress = message.get("metadata") or {}
        if "step" not in progress:
            return
        self.step, self.steps = progress["step"], progress["steps"]
        if "started_s" in progress:
            self.step_starts.append(progress["started_s"])
        self.say(f"  step {self.step}/{self.steps} ({progress.get('progress', 0):.0%})  {artifact_text(message)}")
        self.bar.total = self.steps
        self.bar.n = self.step  # steps are numbered: set the count, so a replayed step cannot count twice
        self.bar.refresh()

    def _artifact(self, chunk: dict) -> None:
        """Assemble by artifactId: append adds, otherwise replaces; print once, at lastChunk."""
        seen = self.artifacts.setdefault(chunk["artifactId"], {"name": chunk.get("name"), "text": "", "chunks": 0,
                                                               "done": False})
        seen["text"] = (seen["text"] if chunk.get("append") else "") + artifact_text(chunk)
        seen["chunks"] += 1
        if chunk.get("lastChunk") and not seen["done"]:
            seen["done"] = True
            chunks = f"{seen['chunks']} chunk" + ("s" if seen["chunks"] > 1 else "")
            self.say(paint(f"  artifact {seen['name']} ({chunks}):", "cyan"))
            self.say(f"    | {seen['text']}")

    def say(self, line: str) -> None:
        """Print a line without breaking the progress bar."""
        self.bar.write(line, file=sys.stdout)

    def seconds_per_step(self) -> Optional[float]:
        """Mean time from one step's start to the next, by the agent's clock (None under two steps).

        Arrival times would be wrong here: updates replayed after a reconnect arrive all at once."""
        starts = self.step_starts
        return (starts[-1] - starts[0]) / (len(starts) - 1) if len(starts) > 1 else None


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


async def follow(client: TaskStreamingClient, task: Task, watcher: TaskWatcher, scenario: str,
                 pause: float) -> None:
    """Send the task with tasks/sendSubscribe and follow it the way the scenario says."""
    cancel_sent = False
    # aclosing: leaving the loop early (or by an error) closes the HTTP stream; the task keeps running
    async with contextlib.aclosing(client.tasks_send_subscribe(task)) as updates:
        async for update in updates:
            watcher.apply(update)
            if scenario == "cancel" and watcher.step == 3 and not cancel_sent:
                watcher.say(paint("  client: tasks/cancel", "magenta"))
                await client.cancel_task(task.id)  # returns once the agent's work has stopped
                cancel_sent = True
            if scenario == "resubscribe" and watcher.step == 2:
                break  # the connection drops here
    if scenario == "resubscribe":
        watcher.say(paint(f"  connection dropped after update #{watcher.last_seq}; resubscribing", "magenta"))
        await asyncio.sleep(pause)  # meanwhile the agent keeps working
        resumed_after = watcher.last_seq
        async with contextlib.aclosing(client.tasks_resubscribe(task.id, after=resumed_after)) as updates:
            async for update in updates:
                watcher.apply(update)
        watcher.say(f"  resubscribe delivered updates #{resumed_after + 1}-#{watcher.last_seq} "
                     f"({watcher.repeated} repeated)")


async def server_copy(client: TaskStreamingClient, task_id: str) -> dict[str, str]:
    """The finished task's artifacts as the server holds them.

    Resubscribing without `after` starts with a snapshot of the task; for a finished task that
    snapshot is the only update, and it holds every artifact whole."""
    async with contextlib.aclosing(client.tasks_resubscribe(task_id)) as updates:
        async for snapshot in updates:
            return {a["artifactId"]: artifact_text(a) for a in snapshot.artifacts}
    return {}


def problems(scenario: str, watcher: TaskWatcher, on_server: dict[str, str]) -> list[str]:
    """What the scenario's outcome gets wrong (empty: as expected)."""
    expected = SCENARIOS[scenario]
    found = []
    if watcher.state != expected.expected_state:
        found.append(f"ended {watcher.state and a2a_state(watcher.state)}, "
                     f"expected {a2a_state(expected.expected_state)}")
    if watcher.seqs != list(range(len(watcher.seqs))) or watcher.repeated:
        found.append(f"updates out of order, missing or repeated: {watcher.seqs} (+{watcher.repeated} repeats)")
    if watcher.step != expected.last_step:
        found.append(f"last step seen {watcher.step}, expected {expected.last_step}")
    if {key: a["text"] for key, a in watcher.artifacts.items()} != on_server:
        found.append("assembled artifacts differ from the server's copy")
    return found


async def run_scenario(client: TaskStreamingClient, scenario: str, pause: float) -> list:
    """Run one task start to finish, check it, and return its row of the summary table."""
    request = SCENARIOS[scenario].request
    print(paint(f"\n== {scenario}: {request}", "cyan"))
    task = Task(message=text_message(request).to_dict())
    watcher = TaskWatcher(scenario)
    started = time.perf_counter()
    try:
        await follow(client, task, watcher, scenario, pause)
    finally:
        watcher.bar.close()  # also when the stream fails before a final state
    elapsed = time.perf_counter() - started
    found = problems(scenario, watcher, await server_copy(client, task.id))
    if scenario == "cancel" and not found:
        print(f"  cancelled at step {watcher.step}/{watcher.steps}; steps {watcher.step + 1}-{watcher.steps} never ran")
    unfinished = [a["name"] for a in watcher.artifacts.values() if not a["done"]]
    if unfinished:
        print(f"  unfinished (no lastChunk, not shown): {', '.join(unfinished)}")
    for problem in found:
        print(paint(f"  problem: {problem}", "red"))
    done = sum(a["done"] for a in watcher.artifacts.values())
    per_step = watcher.seconds_per_step()
    return [scenario, " > ".join(a2a_state(s) for s in watcher.states), len(watcher.seqs),
            f"{watcher.step}/{watcher.steps}", f"{done} whole, {len(unfinished)} partial",
            "-" if per_step is None else f"{per_step:.2f} s", f"{elapsed:.2f} s", "ok" if not found else "FAILED"]


async def run_scenarios(url: str, scenarios: list[str], pause: float) -> int:
    client = TaskStreamingClient(url)
    rows = [await run_scenario(client, scenario, pause) for scenario in scenarios]
    print()
    print_table(["task", "states seen", "updates", "steps", "artifacts", "per step", "total", "verdict"], rows)
    passed = all(row[-1] == "ok" for row in rows)
    print("\n" + paint("Verdict: every task streamed as expected" if passed else "Verdict: see the problems above",
                       "green" if passed else "red"))
    return 0 if passed else 1


def main(argv=None) -> int:
    parser = demo_parser("Task-based streaming: progress, artifacts, cancel, failure and resubscribe "
                         "over tasks/sendSubscribe.", DEFAULT_PORT)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all",
                        help="which task to run (default: all four)")
    args = parser.parse_args(argv)
    # --fast keeps steps short but not zero, so "resubscribe" still rejoins a task that is running
    step_seconds = 0.05 if args.fast else 0.4
    scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    return run_demo(args, lambda: ReportAgent(step_seconds),
                    lambda url: run_scenarios(url, scenarios, pause=2.5 * step_seconds))


if __name__ == "__main__":
    sys.exit(main())
