"""The scenarios 03_streaming_llm_integration.py runs, and what it prints and writes about them:
the table, the verdict, the --report JSON.

Demo machinery only: the lesson is in the script. An outcome is what the script's client, ask(),
saw for one request (scenario, text, chunks, summary, error, seconds).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

from examples_support import paint, print_table
from streaming_kit.transforms import SECRETS

NO_SUMMARY = ("the stream ended without the summary chunk (provider, tokens, stop reason) that this "
              "demo's agent sends last")


async def scenarios(ask: Callable[..., Awaitable[Any]], url: str, providers: tuple[str, ...],
                    args: argparse.Namespace) -> int:
    """A clean run per provider, then fallback and a mid-stream failure on simulated providers
    (faults can only be injected there); the table, the one verdict, the report; the exit code."""
    clean = {p: await ask(url, f"{p} clean", providers=[p]) for p in providers}
    simulated = [p for p, o in clean.items() if (o.summary or {}).get("simulated")]
    checks: dict[str, Any] = {}
    if simulated:
        failing = simulated[:2]
        answerer = next(p for p in providers if p not in failing)  # 3 providers, at most 2 failing
        short_stall = min(args.stall_seconds, 0.2 if args.fast else 2.0)
        stall = {"stall_seconds": short_stall} if answerer in simulated else {}  # a real API may take its time
        checks = {"answerer": answerer, "partial_provider": simulated[0],
                  "fallback": await ask(url, "fallback", providers=failing + [answerer], **stall,
                                        faults=dict(zip(failing, ("error_before_first_token", "stall")))),
                  "partial": await ask(url, f"{simulated[0]} fails mid-stream", providers=[simulated[0]],
                                       faults={simulated[0]: "error_mid_stream"})}
    elif all(o.summary for o in clean.values()):
        print(paint("\n(no simulated provider: the failure scenarios need one)", "yellow"))
    outcomes = list(clean.values()) + [checks[k] for k in ("fallback", "partial") if k in checks]
    print_outcomes(outcomes)
    found = problems(clean, **checks)
    save(args.report, outcomes, found)
    print_verdict(found)
    return 1 if found else 0


def print_outcomes(outcomes: list) -> None:
    """The per-scenario table: who answered, tokens, first token, tokens/s, stop reason, time."""
    rows = []
    for outcome in outcomes:
        s = outcome.summary or {}
        answered = s.get("provider", "-") + ("" if s.get("simulated", True) else " (real)")
        first = f"{s['first_token_ms']} ms" if s.get("first_token_ms") is not None else "-"
        stop = s.get("stop_reason") or "-"
        if outcome.error:
            stop = "error (partial)" if outcome.text else "error (no text)"
        rows.append([outcome.scenario, answered, outcome.chunks, s.get("output_tokens", "-"), first,
                     s.get("tokens_per_s") or "-", stop, f"{outcome.seconds:.2f} s"])
    print()
    print_table(["scenario", "answered by", "chunks", "tokens", "first token", "tokens/s", "stop", "total"], rows)


def problems(clean: dict, fallback: Any = None, answerer: Optional[str] = None,
             partial: Any = None, partial_provider: Optional[str] = None) -> list[str]:
    """What the demo promises, checked: each clean answer whole and redacted; the fallback answered once
    by `answerer`, with its clean text; the mid-stream failure kept as a strict prefix, marked partial."""
    found = [problem for outcome in clean.values() for problem in _whole_answer(outcome)]
    if fallback is not None:
        found += _whole_answer(fallback)
        if fallback.summary and fallback.summary["provider"] != answerer:
            found.append(f"fallback: answered by {fallback.summary['provider']}, not {answerer}")
        elif fallback.summary and fallback.summary["simulated"] and fallback.text != clean[answerer].text:
            found.append("fallback: the text differs from the provider's clean run (duplicated or lost text)")
    if partial is not None:
        reference = clean[partial_provider].text
        if not partial.error or partial.summary:
            found.append(f"{partial.scenario}: the stream did not end with an error")
        elif not (partial.text and reference.startswith(partial.text) and partial.text != reference):
            found.append(f"{partial.scenario}: the text so far is not a strict prefix of the clean answer")
    return found


def _whole_answer(outcome: Any) -> list[str]:
    if outcome.error:
        return [f"{outcome.scenario}: the stream failed: {outcome.error}"]
    if not outcome.summary:
        return [f"{outcome.scenario}: {NO_SUMMARY}"]
    if not outcome.text.strip():
        return [f"{outcome.scenario}: no text"]
    if any(pattern.search(outcome.text) for pattern, _ in SECRETS):
        return [f"{outcome.scenario}: a secret reached the client"]
    return []


def print_verdict(found: list[str]) -> None:
    verdict = "FAILED - " + "; ".join(found) if found else "every scenario behaved as promised"
    print("\n" + paint(f"Verdict: {verdict}", "red" if found else "green"))


def save(path: Optional[Path], outcomes: list, found: list[str]) -> None:
    """--report: every outcome as JSON (text, chunks, the agent's summary, the error), and the verdict."""
    if path:
        figures = {"ok": not found, "problems": found, "scenarios": [vars(outcome) for outcome in outcomes]}
        path.write_text(json.dumps(figures, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"\nFigures written to {path}")
