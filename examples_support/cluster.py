"""06's machinery: the processes (redis-server, replicas, nginx), the checks, the tables, --report.

Not part of the kit, and not the lesson: 06_distributed_streaming.py holds the agent and the
client loop; this starts and stops everything around them and judges what they did.
Every child process is stopped on exit, on an error, on Ctrl-C and on SIGTERM.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import select
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import aiohttp
from examples_support import paint, print_table, stdout_gone
from examples_support.services import ServiceFailed, ServiceMissing, free_port, nginx_proxy, private_redis
from python_a2a import A2AError

REPLICAS = 3
START_SECONDS = 30.0
INSTALL = "apt-get install redis-server nginx"


# ---------------------------------------------------------------- processes
class ReplicaStartError(RuntimeError):
    """A replica exited or stayed silent instead of printing its address."""


class ReplicaProcess:
    """`python 06_distributed_streaming.py --serve --port 0 [--redis URL]` in its own process."""

    def __init__(self, name: str, script: str, redis_url: Optional[str], fast: bool, allow_host: Optional[str]):
        command = [sys.executable, str(Path(script).resolve()), "--serve", "--port", "0"]
        command += ["--redis", redis_url] if redis_url else []
        command += ["--fast"] if fast else []
        command += ["--allow-host", allow_host] if allow_host else []
        # stderr is inherited: a replica that crashes shows its traceback to the user
        self.name, self.url, self.killed = name, "", False
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)

    @property
    def address(self) -> str:
        return self.url.split("://", 1)[1]

    def wait_until_serving(self) -> None:
        ready, _, _ = select.select([self.process.stdout], [], [], START_SECONDS)
        line = self.process.stdout.readline() if ready else ""
        if " at http://" not in line:
            raise ReplicaStartError(f"{self.name} (pid {self.process.pid}) did not start: {line.strip() or 'no output'}")
        self.url = line.rsplit(" at ", 1)[1].strip()

    def kill(self) -> None:
        """A crash: SIGKILL, no clean-up in the replica; its open streams just break."""
        self.thaw()
        self.process.kill()
        self.killed = True

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)  # stuck: sockets open, nothing sent

    def thaw(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM (the kit's --serve exits cleanly on it), SIGKILL after 5 s; always reaped."""
        if self.process.poll() is None:
            self.thaw()  # a stopped process would hold SIGTERM pending
            self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


@contextlib.contextmanager
def replica_processes(script: str, redis_url: Optional[str], fast: bool, allow_host: Optional[str] = None,
                      count: int = REPLICAS):
    """Start `count` replicas at once, wait until each serves, stop them all when the block ends."""
    replicas: list[ReplicaProcess] = []
    try:
        for i in range(count):
            replicas.append(ReplicaProcess(f"replica-{'ABCDEFGH'[i]}", script, redis_url, fast, allow_host))
        for replica in replicas:
            replica.wait_until_serving()
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


def serve_replica(agent: Any, args: Any) -> int:
    """--serve: one replica until Ctrl-C or SIGTERM."""
    from examples_support import serve_until_interrupted
    from streaming_kit import quiet
    if not args.verbose:
        quiet()
    return serve_until_interrupted(agent, args.host, args.port)


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt  # so every `finally` runs on SIGTERM too


# ---------------------------------------------------------------- one run of the lesson
@dataclass
class Check:
    round: str
    what: str
    ok: bool


@dataclass
class Killer:
    """Called with each event a client gets: kills the replica that relays it (or `victim`) once
    `when(answer)` holds, and times the kill -> next event."""
    run: "Run"
    when: Callable[[Any], bool]
    victim: Optional[str] = None  # an address; None: the relay of the event that triggers
    runner: Optional[str] = None
    killed: Optional[str] = None
    killed_at: float = 0.0
    next_event_ms: Optional[float] = None
    after_seq: Optional[int] = None
    _text_seen: int = 0

    def __call__(self, answer: Any) -> None:
        relay = answer.relays[-1]
        if self.killed and self.next_event_ms is None:
            self.next_event_ms = round((time.perf_counter() - self.killed_at) * 1000, 1)
        self.run.say_event(relay, answer, self.killed is not None, len(answer.text) > self._text_seen)
        self._text_seen = len(answer.text)
        if self.killed is None and self.when(answer):
            self.killed, self.after_seq = self.victim or relay, answer.seqs[-1]
            self.run.replica_at(self.killed).kill()
            self.killed_at = time.perf_counter()
            print(paint(f"  killed {self.run.name(self.killed)} (SIGKILL) after seq {self.after_seq}", "red"))


@dataclass
class Run:
    replicas: list
    proxy_url: Optional[str]
    redis_url: Optional[str]
    owns_replicas: bool
    notes: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    # -- where clients go
    @property
    def front(self) -> str:
        return f"nginx ({self.proxy_url})" if self.proxy_url else "the replicas directly (no nginx)"

    def alive(self) -> list:
        return [r for r in self.replicas if not r.killed]

    def replica_urls(self) -> list[str]:
        return [r.url for r in self.alive()]

    def entry(self, i: int) -> str:
        return self.proxy_url or self.replica_urls()[i % len(self.alive())]

    def entry_points(self, avoid: Optional[str] = None) -> list[str]:
        """Where a client connects, in order: the proxy; without one, the replicas, `avoid` last."""
        if self.proxy_url:
            return [self.proxy_url]
        return sorted(self.replica_urls(), key=lambda url: url.endswith(f"//{avoid}"))

    def replica_at(self, where: str) -> Any:
        return next(r for r in self.replicas if where in (r.url, r.address))

    def name(self, address: str) -> str:
        return next((r.name for r in self.replicas if address in (r.url, r.address)), address)

    def session(self, timeout: Optional[aiohttp.ClientTimeout] = None) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=timeout or aiohttp.ClientTimeout(total=None, sock_read=30))

    async def until(self, condition: Callable[[], Any], seconds: float = 15.0) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise A2AError(f"gave up after {seconds:g} s waiting for the first event")
            await asyncio.sleep(0.005)  # poll interval

    def killer(self, when: Callable[[Any], bool], victim: Optional[str] = None, runner: Optional[str] = None) -> Killer:
        return Killer(self, when, victim, runner)

    def can_fail_over(self, round_name: str) -> bool:
        why = ("it kills replicas, so it needs replicas this script started" if not self.owns_replicas else
               f"it needs the shared log: redis-server ({INSTALL}) or --redis URL" if not self.redis_url else
               "fewer than two replicas are left" if len(self.alive()) < 2 else "")
        if why:
            print(paint(f"\n  ({round_name}: skipped, {why})", "yellow"))
            self.notes.append(f"{round_name} skipped: {why}")
        return not why

    # -- output
    def heading(self, text: str) -> None:
        print("\n" + paint(f"== {text}", "cyan"), flush=True)

    def tag(self, relay: str, result: dict, first_lines: int = 5) -> None:
        """Print a source's first few chunks live, tagged with the replica (the rest would be noise)."""
        if result.get("kind") == "artifact-update":
            for line in "".join(p.get("text", "") for p in result["artifact"]["parts"]).splitlines():
                if line[:2].isdigit() and int(line[:2]) < first_lines:
                    print(f"  [{self.name(relay)}] {line}", flush=True)

    def say_event(self, relay: str, answer: Any, after_kill: bool, new_text: bool) -> None:
        line = answer.text.rstrip("\n").rsplit("\n", 1)[-1] if new_text else answer.state
        print(f"  seq {answer.seqs[-1]:>2} via {self.name(relay)}: {line}" + (paint("  (resumed)", "green")
                                                                              if after_kill else ""))

    def check(self, round_name: str, what: str, ok: bool) -> bool:
        self.checks.append(Check(round_name, what, bool(ok)))
        return bool(ok)

    # -- the checks of each round
    def check_balance(self, answers: list) -> None:
        served = {self.name(a.relays[0]): 0 for a in answers}
        for answer in answers:
            served[self.name(answer.relays[0])] += 1
        texts = {a.text for a in answers}
        print(f"  served by: {', '.join(f'{n} x{c}' for n, c in sorted(served.items()))}; "
              f"{len(texts)} different texts of {len(answers)}")
        self.facts["balance"] = {"served_by": served, "streams": len(answers), "distinct_texts": len(texts)}
        self.check("balance", f"every stream complete, spread over all {len(self.alive())} replicas",
                   all(_whole(a.text) and a.state == "completed" for a in answers) and len(served) == len(self.alive()))
        self.check("balance", "one prompt, a different text every time (so a re-run could not resume it)",
                   len(texts) == len(answers))

    def check_aggregate(self, parts: list, chunks: int, froze: bool) -> None:
        print_table(["source", "chunks", "status"], [[self.name(a.relays[0]) if a.relays else "?",
                                                       a.text.count("\n"), status] for a, status in parts])
        whole = parts[:-1] if froze else parts
        self.facts["aggregate"] = {"parts": [{"chunks": a.text.count("\n"), "status": s} for a, s in parts]}
        self.check("aggregate", "every live source complete, its chunks in order",
                   all(status == "complete" and _whole(a.text, chunks) for a, status in whole))
        if froze:
            stuck, status = parts[-1]
            self.check("aggregate", "the frozen source cut by its timeout, the others not stalled",
                       status.startswith("cut") and _in_order(stuck.text))

    def check_relay_kill(self, first: Any, second: Any, stored: tuple[str, str], killer: Killer) -> None:
        lost, duplicated = _gaps(second.seqs)
        equal = second.text == stored[0] == first.text
        after = [self.name(r) for r in second.relays[second.seqs.index(killer.after_seq) + 1:]] if killer.killed else []
        print(paint(f"  {lost} lost, {duplicated} duplicated, text {'==' if equal else '!='} stored (tasks/get); "
                    f"kill -> next event {killer.next_event_ms} ms, from {after[0] if after else 'nobody'}",
                    "green" if equal and not (lost or duplicated) else "red"))
        self.facts["relay"] = {"runner": self.name(killer.runner or ""), "killed": self.name(killer.killed or ""),
                               "killed_after_seq": killer.after_seq, "resumed_via": after[:1], "lost": lost,
                               "duplicated": duplicated, "text_equals_stored": equal, "state": second.state,
                               "kill_to_next_event_ms": killer.next_event_ms}
        self.check("relay", "the replica killed was relaying the stream, not running the task",
                   killer.killed and killer.killed != killer.runner and after and after[0] != self.name(killer.killed))
        self.check("relay", "0 lost, 0 duplicated, text == stored, for both clients",
                   equal and not (lost or duplicated) and second.state == first.state == stored[1] == "completed")

    def check_runner_kill(self, first: Any, second: Any, killer: Killer, lease: float, took: float) -> None:
        states = {first.state, second.state}
        print(paint(f"  both clients: {', '.join(sorted(states))} {took:.1f} s after the kill (lease {lease:g} s): "
                    f"{second.reason}", "green" if states == {"failed"} else "red"))
        lost, duplicated = _gaps(second.seqs)
        self.facts["runner"] = {"killed": self.name(killer.killed or ""), "states": sorted(states),
                                "reason": second.reason, "kill_to_final_s": round(took, 2), "lease_s": lease,
                                "lost": lost, "duplicated": duplicated}
        self.check("runner", "every subscriber sees the task end failed, with the reason",
                   states == {"failed"} and "lease" in second.reason and "lease" in first.reason)
        self.check("runner", "it ended within the lease (plus one renewal period and slack)",
                   took <= lease * 4 / 3 + 2 and not (lost or duplicated))


def _whole(text: str, chunks: int = 24) -> bool:
    return _in_order(text) and text.count("\n") == chunks


def _in_order(text: str) -> bool:
    return [line[:2] for line in text.splitlines()] == [f"{i:02d}" for i in range(text.count("\n"))]


def _gaps(seqs: list[int]) -> tuple[int, int]:
    """(missing seqs between 0 and the highest, seqs received more than once)."""
    return len(set(range(max(seqs, default=-1) + 1)) - set(seqs)), len(seqs) - len(set(seqs))


# ---------------------------------------------------------------- metrics and the report
def scrape(replica: Any) -> dict:
    """The replica's own counters, read from its /metrics (what Prometheus would scrape)."""
    from prometheus_client.parser import text_string_to_metric_families
    if replica.killed:
        return {"replica": replica.name, "url": replica.url, "status": "killed"}
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"{replica.url}/metrics", timeout=5) as r:
        samples = {(s.name, s.labels.get("reason", "")): s.value
                   for family in text_string_to_metric_families(r.read().decode()) for s in family.samples}
    mean_ms = lambda name: round(1000 * samples[(f"{name}_sum", "")] / samples[(f"{name}_count", "")], 1) \
        if samples.get((f"{name}_count", "")) else None
    return {"replica": replica.name, "url": replica.url, "status": "up",
            "streams": int(samples[("a2a_streams_started_total", "")]),
            "completed": int(samples[("a2a_streams_completed_total", "")]),
            "cut": int(sum(v for (n, _), v in samples.items() if n == "a2a_streams_failed_total")),
            "events": int(samples[("a2a_chunks_sent_total", "")]),
            "first_event_ms_mean": mean_ms("a2a_first_chunk_seconds"),
            "gap_ms_mean": mean_ms("a2a_chunk_gap_seconds")}  # a killed replica's counts die with it


def report(run: Run, report_path: Optional[str]) -> int:
    run.heading("per replica, from each one's /metrics")
    metrics = [scrape(r) for r in run.replicas]
    keys = ["replica", "status", "streams", "completed", "cut", "events", "first_event_ms_mean", "gap_ms_mean"]
    print_table(keys, [[m.get(k, "") for k in keys] for m in metrics])
    run.heading("summary")
    print_table(["round", "check", "verdict"], [[c.round, c.what, paint("PASS", "green") if c.ok else paint("FAIL", "red")]
                                                for c in run.checks])
    for note in run.notes:
        print(paint(f"note: {note}", "yellow"))
    passed = bool(run.checks) and all(c.ok for c in run.checks)
    if report_path:
        document = {"services": {"redis": run.redis_url, "nginx": run.proxy_url}, "notes": run.notes,
                    "replicas": metrics, "checks": [c.__dict__ for c in run.checks], **run.facts, "passed": passed}
        Path(report_path).write_text(json.dumps(document, indent=2) + "\n")
    return 0 if passed else 1


# ---------------------------------------------------------------- the whole run
@contextlib.contextmanager
def _service(start: Callable[[], Any], what: str, notes: list):
    """Yield the service's URL, or None (with a note saying what to install) when it is not installed."""
    try:
        with start() as url:
            yield url
    except ServiceMissing as missing:
        notes.append(f"{missing}; for the whole lesson: {INSTALL}")
        print(paint(f"{missing}: {what}", "yellow"), flush=True)
        yield None


def run_lesson(script: str, args: Any, lesson: Callable) -> int:
    """Start redis-server, the replicas and nginx (or use --url / --redis), run the lesson, report."""
    from streaming_kit import quiet
    if not args.verbose:
        quiet()
    args.source_timeout = args.source_timeout or (1.0 if args.fast else 2.0)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with contextlib.ExitStack() as stack:
            run = _start(stack, script, args)
            finished = asyncio.run(_unless_terminated(lesson(run, args)))
            signal.signal(signal.SIGTERM, _interrupt)  # asyncio put the default back: stop children still
            return report(run, args.report) if finished else 130
    except (A2AError, ReplicaStartError, ServiceFailed) as exc:
        print(paint(f"error: {exc}", "red", sys.stderr), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `| head`: everything is stopped all the same
        return stdout_gone()
    finally:
        signal.signal(signal.SIGTERM, previous)


async def _unless_terminated(lesson: Any) -> bool:
    """Run the lesson; SIGTERM cancels it (a KeyboardInterrupt raised inside some task would leave
    the others' errors printed). False when it was cancelled."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    try:
        await lesson
        return True
    except asyncio.CancelledError:
        return False
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _start(stack: contextlib.ExitStack, script: str, args: Any) -> Run:
    notes: list[str] = []
    if args.url:
        replicas = [_Remote(f"replica-{'ABCDEFGH'[i]}", url) for i, url in enumerate(args.url)]
        return Run(replicas, None, args.redis, owns_replicas=False, notes=notes)
    redis_url = args.redis or stack.enter_context(
        _service(private_redis, "the replicas keep their tasks apart; failover rounds skipped", notes))
    proxy_port = free_port()  # chosen first: replicas must accept the Host nginx passes on
    print(f"Starting {REPLICAS} replicas on {'the log at ' + redis_url if redis_url else 'their own memory'} ...",
          flush=True)
    replicas = stack.enter_context(replica_processes(script, redis_url, args.fast, f"127.0.0.1:{proxy_port}"))
    for replica in replicas:
        print(f"  {replica.name}: pid {replica.process.pid} at {replica.url}")
    proxy_url = stack.enter_context(_service(lambda: nginx_proxy([r.url for r in replicas], proxy_port),
                                             "clients go to the replicas directly", notes))
    if proxy_url:
        print(f"  nginx at {proxy_url} (deploy/nginx/06.conf)")
    return Run(replicas, proxy_url, redis_url, owns_replicas=True, notes=notes)


@dataclass
class _Remote:
    """A replica running elsewhere (--url): used, never killed."""
    name: str
    url: str
    killed: bool = False

    @property
    def address(self) -> str:
        return self.url.split("://", 1)[1]
