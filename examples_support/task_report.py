"""What 04_task_based_streaming.py prints about its tasks as they run, and its summary: the table,
the verdict, the --report JSON.

Demo output only: the lesson (the agent, the client loop, cancel, resubscribe) is in the script.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

from python_a2a import TaskState
from tqdm import tqdm

from examples_support import paint, print_table
from streaming_kit import FINAL_STATES, a2a_state

STATE_COLOURS = {TaskState.SUBMITTED: "cyan", TaskState.WAITING: "yellow", TaskState.COMPLETED: "green",
                 TaskState.CANCELED: "magenta", TaskState.FAILED: "red"}


def state_name(state: TaskState) -> str:
    """The official A2A name, with python-a2a's in brackets where they differ (fix 19: no WORKING)."""
    official = a2a_state(state)
    return official if official == state.value else f"{official} (python-a2a: {state.value})"


class TaskPrinter:
    """One task's updates as they arrive: coloured states, a line per step (and a tqdm bar on a
    terminal), each artifact once, when it is whole."""

    def __init__(self, label: str, steps: int):
        self.bar = tqdm(total=steps, desc=label, unit="step", disable=None, leave=False)

    def say(self, line: str) -> None:
        """Print a line without breaking the progress bar."""
        self.bar.write(line, file=sys.stdout)

    def state(self, state: TaskState, reason: str) -> None:
        self.say(paint(state_name(state), STATE_COLOURS.get(state, "white")))
        if reason:
            self.say(f"  reason: {reason}")
        if state in FINAL_STATES:
            self.bar.close()

    def step(self, step: int, steps: int, fraction: float, text: str) -> None:
        self.say(f"  step {step}/{steps} ({fraction:.0%})  {text}")
        self.bar.total, self.bar.n = steps, step  # set, not add: a replayed step cannot count twice
        self.bar.refresh()

    def artifact(self, name: str, chunks: int, text: str) -> None:
        self.say(paint(f"  artifact {name} ({chunks} chunk{'s' if chunks > 1 else ''}):", "cyan"))
        self.say(f"    | {text}")

    def close(self) -> None:
        self.bar.close()


def seconds_per_step(step_starts: list[float]) -> Optional[float]:
    """Mean time from one step's start to the next, by the agent's clock (None under two steps).

    Arrival times would be wrong here: updates replayed after a reconnect arrive all at once."""
    return (step_starts[-1] - step_starts[0]) / (len(step_starts) - 1) if len(step_starts) > 1 else None


def problems(view: Any, expected_state: TaskState, last_step: int, on_server: dict[str, str]) -> list[str]:
    """What a task's outcome gets wrong (empty: as expected)."""
    found = []
    if view.state != expected_state:
        found.append(f"ended {view.state and a2a_state(view.state)}, expected {a2a_state(expected_state)}")
    if view.seqs != list(range(len(view.seqs))) or view.repeated:
        found.append(f"updates out of order, missing or repeated: {view.seqs} (+{view.repeated} repeats)")
    if view.step != last_step:
        found.append(f"last step seen {view.step}, expected {last_step}")
    if {key: a["text"] for key, a in view.artifacts.items()} != on_server:
        found.append("assembled artifacts differ from the server's copy")
    return found


def outcome(scenario: str, view: Any, seconds: float, found: list[str]) -> dict:
    """One task as JSON (the --report entry); prints what the scenario showed and any problem."""
    unfinished = [a["name"] for a in view.artifacts.values() if not a["done"]]
    if scenario == "cancel" and not found:
        print(f"  cancelled at step {view.step}/{view.steps}; steps {view.step + 1}-{view.steps} never ran")
    if unfinished:
        print(f"  unfinished (no lastChunk, not shown): {', '.join(unfinished)}")
    for problem in found:
        print(paint(f"  problem: {problem}", "red"))
    return {"scenario": scenario, "states": [a2a_state(s) for s in view.states], "seqs": view.seqs,
            "repeated": view.repeated, "rejoined_after": view.rejoined_after, "step": view.step,
            "steps": view.steps, "reason": view.reason, "artifacts": view.artifacts,
            "seconds_per_step": seconds_per_step(view.step_starts), "seconds": round(seconds, 3),
            "problems": found}


def finish(outcomes: list[dict], report: Optional[Path]) -> int:
    """The table, the one verdict, the --report file; the exit code."""
    rows = [[o["scenario"], " > ".join(o["states"]), len(o["seqs"]), f"{o['step']}/{o['steps']}",
             f"{sum(a['done'] for a in o['artifacts'].values())} whole, "
             f"{sum(not a['done'] for a in o['artifacts'].values())} partial",
             "-" if o["seconds_per_step"] is None else f"{o['seconds_per_step']:.2f} s", f"{o['seconds']:.2f} s",
             "FAILED" if o["problems"] else "ok"] for o in outcomes]
    print()
    print_table(["task", "states seen", "updates", "steps", "artifacts", "per step", "total", "verdict"], rows)
    found = [f"{o['scenario']}: {problem}" for o in outcomes for problem in o["problems"]]
    if report:
        report.write_text(json.dumps({"ok": not found, "problems": found, "tasks": outcomes}, indent=2),
                          encoding="utf-8")
    failed = [o["scenario"] for o in outcomes if o["problems"]]
    verdict = f"FAILED - {', '.join(failed)}: see the problems above" if found else "every task streamed as expected"
    print("\n" + paint(f"Verdict: {verdict}", "red" if found else "green"))
    return 1 if found else 0
