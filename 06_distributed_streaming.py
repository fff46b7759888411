"""06 — distributed streaming: replicas, load balancing, aggregation, failover, metrics.

What you'll see (`python 06_distributed_streaming.py`, about 14 s; `--fast` about 9 s):
  * three replicas of one agent started as separate OS processes on free ports;
  * single     one stream, printed live as it arrives;
  * balance    round-robin and least-active-streams balancing done by the client with
               aiohttp, and a health check that takes a killed replica out of rotation
               and puts it back once it is restarted;
  * aggregate  one question split into parts, part i asked of replica i, all at once (so
               each replica gets its own prompt, "... (part i of n)"); the streams are
               merged live, tagged by source, and the combined result is the parts joined
               in order; one replica is frozen (SIGSTOP) mid-stream and its per-source
               timeout ends it without stalling the others;
  * failover   the replica serving a stream is killed (SIGKILL) mid-stream; the client
               resumes on another replica after the last chunk it holds (Last-Event-ID)
               and proves "0 lost, 0 duplicated, text identical";
  * a per-replica metrics table (requests, streams, chunks, errors, time to first chunk and
    gap between chunks, p50/p95) and a verdict.

Other ways to run it:
  --serve [--port 8106]     one replica, until Ctrl-C (run several on different ports)
  --url URL --url URL ...   balance over replicas already running elsewhere
  --mode single|balance|aggregate|failover|all,  --report metrics.json
Production: the same agent under gunicorn with threaded workers (see create_wsgi_app):
  gunicorn -k gthread --threads 16 -w 2 -b 127.0.0.1:8106 '06_distributed_streaming:create_wsgi_app()'
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import select
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Callable, Optional

import aiohttp
from streaming_kit import StreamingAgent, StrictStreamingClient, chunk_text, message_text, quiet
from examples_support import (demo_parser, paint, print_table, seconds_arg, serve_until_interrupted, stdout_gone)
from python_a2a import A2AError, Message
from python_a2a.server.http import create_flask_app

DEFAULT_PORT = 8106
CHUNKS = 24                 # chunks in every answer
CHUNK_DELAY = 0.05          # seconds between chunks: a "thinking" agent
FAST_CHUNK_DELAY = 0.02     # --fast still paces a little, so a kill lands mid-stream
KILL_AFTER_CHUNK = 7        # failover: the serving replica dies right after this chunk
FREEZE_AFTER_CHUNK = 3      # aggregate: the last source freezes right after this chunk
WORDS = ("amber", "brisk", "cedar", "delta", "ember", "fjord", "glade", "harbor", "indigo", "juniper",
         "kestrel", "lumen", "meadow", "nimbus", "orchid", "pebble", "quartz", "ripple", "sierra",
         "tundra", "umber", "velvet", "willow", "zephyr")


# ---------------------------------------------------------------- the agent (one per replica)
class ReplicaAgent(StreamingAgent):
    """A deterministic agent: the same message gives the same chunks on every replica."""

    def __init__(self, chunk_delay: float = CHUNK_DELAY):
        super().__init__(name="ReplicaAgent")
        self.chunk_delay = chunk_delay

    async def stream_response(self, message: Message) -> AsyncIterator[str]:
        # Resume-after-failover re-runs the agent on another replica and skips what the
        # client already has, so chunk i must be identical everywhere. Derive it from the
        # message with sha256 (Python's hash() is salted differently in every process).
        prompt = message_text(message)
        for index in range(CHUNKS):
            await asyncio.sleep(self.chunk_delay)
            yield answer_line(prompt, index)


def answer_line(prompt: str, index: int) -> str:
    """Chunk `index` of the answer to `prompt`: three words picked by a stable digest."""
    digest = hashlib.sha256(f"{prompt}\0{index}".encode()).digest()
    return f"{index:02d} " + " ".join(WORDS[b % len(WORDS)] for b in digest[:3]) + "\n"


def create_wsgi_app(fast: bool = False):
    """WSGI app for a production server, e.g. gunicorn -k gthread (one stream per thread)."""
    quiet()
    return create_flask_app(ReplicaAgent(FAST_CHUNK_DELAY if fast else CHUNK_DELAY))


# ---------------------------------------------------------------- replica processes
class ReplicaStartError(RuntimeError):
    """A replica process exited or stayed silent instead of printing its address."""


class ReplicaProcess:
    """One replica: `python <this script> --serve --port P` in its own OS process."""

    def __init__(self, fast: bool, verbose: bool = False, start_seconds: float = 30.0):
        self.fast, self.verbose, self.start_seconds = fast, verbose, start_seconds
        self.url: Optional[str] = None
        self.process = self._launch(port=0)

    def _launch(self, port: int) -> subprocess.Popen:
        command = [sys.executable, str(Path(__file__).resolve()), "--serve", "--port", str(port)]
        # stderr is inherited: a replica that crashes shows its traceback to the user.
        command += [flag for flag, wanted in (("--fast", self.fast), ("--verbose", self.verbose)) if wanted]
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_until_serving(self) -> str:
        """Read the "Serving <name> at http://H:P" line (the kit prints it first) within a deadline."""
        ready, _, _ = select.select([self.process.stdout], [], [], self.start_seconds)
        line = self.process.stdout.readline() if ready else ""
        if " at http://" not in line:
            self.stop()
            raise ReplicaStartError(f"replica pid {self.pid} did not start: {line.strip() or 'no output'}")
        self.url = line.rsplit(" at ", 1)[1].strip()
        return self.url

    def kill(self) -> None:
        """A crash: SIGKILL, no clean-up in the replica (its open streams just break)."""
        self.process.kill()
        self.process.wait()

    def freeze(self) -> None:
        """A stuck replica: SIGSTOP; its sockets stay open but nothing more is sent."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """A fresh process on the same port, so the balancer's address list stays valid."""
        self.stop()
        self.process = self._launch(port=int(self.url.rsplit(":", 1)[1]))
        self.wait_until_serving()

    def ask_to_stop(self) -> None:
        """SIGTERM: the kit's --serve ends its streams and exits cleanly."""
        if self.process.poll() is None:
            self.thaw()  # a stopped (SIGSTOP) process would hold SIGTERM pending
            self.process.terminate()

    def reap(self) -> None:
        """Wait for the exit (SIGKILL if it lingers), so no zombie or orphan is left."""
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            print(paint(f"replica pid {self.pid} ignored SIGTERM for 5 s: killing it", "yellow"), file=sys.stderr)
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()

    def stop(self) -> None:
        self.ask_to_stop()
        self.reap()


@contextlib.contextmanager
def replica_processes(count: int, fast: bool, verbose: bool = False) -> "list[ReplicaProcess]":
    """Start `count` replicas in parallel, wait until each serves, stop them all on exit."""
    processes = []
    try:
        processes.extend(ReplicaProcess(fast, verbose) for _ in range(count))
        for process in processes:
            process.wait_until_serving()
        yield processes
    finally:
        for process in processes:  # all at once: each takes a moment to shut down
            process.ask_to_stop()
        for process in processes:
            process.reap()


# ---------------------------------------------------------------- the client-side balancer
@dataclass
class Replica:
    """What the balancer knows about one replica, including its metrics."""
    name: str
    url: str
    process: Optional[ReplicaProcess] = None
    healthy: bool = True
    active: int = 0
    requests: int = 0
    peak_active: int = 0
    chunks: int = 0
    errors: int = 0
    first_chunk_ms: list = field(default_factory=list)
    chunk_gap_ms: list = field(default_factory=list)

    def metrics(self) -> dict:
        return {"replica": self.name, "url": self.url, "pid": self.process.pid if self.process else None,
                "requests": self.requests, "active_streams": self.active, "peak_active_streams": self.peak_active,
                "chunks": self.chunks, "errors": self.errors, "healthy": self.healthy,
                "first_chunk_ms_p50": percentile(self.first_chunk_ms, 50),
                "first_chunk_ms_p95": percentile(self.first_chunk_ms, 95),
                "chunk_gap_ms_p50": percentile(self.chunk_gap_ms, 50),
                "chunk_gap_ms_p95": percentile(self.chunk_gap_ms, 95)}


def percentile(values: list, q: int) -> Optional[float]:
    """The q-th percentile (1-99) by the standard library, rounded to 0.1; None without data."""
    if len(values) < 2:  # statistics.quantiles needs two points; one value is every percentile
        return round(values[0], 1) if values else None
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


class NoHealthyReplica(A2AError):
    """Every replica is out of rotation."""


class Balancer:
    """Client-side load balancing over replica URLs: round-robin or least-active streams."""

    def __init__(self, replicas: list[Replica], strategy: str = "round-robin", idle_timeout: float = 10.0):
        self.replicas, self.strategy, self.idle_timeout = replicas, strategy, idle_timeout
        self._cursor = 0
        self.log: Callable[[str], None] = print

    def pick(self) -> Replica:
        healthy = [r for r in self.replicas if r.healthy]
        if not healthy:
            raise NoHealthyReplica("no healthy replica left")
        if self.strategy == "least-active":
            return min(healthy, key=lambda r: r.active)  # ties: the first in the list
        while True:
            replica = self.replicas[self._cursor % len(self.replicas)]
            self._cursor += 1
            if replica.healthy:
                return replica

    async def check_health(self, timeout: float = 2.0) -> None:
        """GET /agent.json on every replica; a failure takes it out, an answer puts it back."""
        limits = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(timeout=limits) as session:
            answers = await asyncio.gather(*(self._probe(session, r) for r in self.replicas))
        for replica, (ok, why) in zip(self.replicas, answers):
            if ok != replica.healthy:
                self.log(f"  health: {replica.name} " + (paint("back in rotation", "green") if ok
                                                          else paint(f"out of rotation ({why})", "yellow")))
            replica.healthy = ok

    @staticmethod
    async def _probe(session, replica: Replica) -> tuple[bool, str]:
        try:
            async with session.get(f"{replica.url}/agent.json") as response:
                return response.status == 200, f"HTTP {response.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return False, type(exc).__name__

    def mark_down(self, replica: Replica, reason: str) -> None:
        """Passive health check: a replica that broke a request leaves rotation at once."""
        if replica.healthy:
            self.log(f"  health: {replica.name} " + paint(f"out of rotation ({reason})", "yellow"))
        replica.healthy = False

    async def stream(self, replica: Replica, prompt: str, after_index: Optional[int] = None,
                     idle_timeout: Optional[float] = None) -> AsyncIterator[dict]:
        """Stream from one replica, recording its metrics; errors are counted and re-raised."""
        replica.requests += 1
        replica.active += 1
        replica.peak_active = max(replica.peak_active, replica.active)
        client = StrictStreamingClient(replica.url, timeout=idle_timeout or self.idle_timeout)
        last, first = time.perf_counter(), True
        try:
            async for chunk in client.stream_response(prompt, after_index=after_index):
                now = time.perf_counter()
                (replica.first_chunk_ms if first else replica.chunk_gap_ms).append((now - last) * 1000)
                last, first = now, False
                replica.chunks += 1
                yield chunk
        except A2AError:
            replica.errors += 1
            raise
        finally:
            replica.active -= 1


# ---------------------------------------------------------------- streams with failover
@dataclass
class StreamResult:
    """Everything one logical stream received, and from where."""
    prompt: str
    indices: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    served_by: list = field(default_factory=list)
    failovers: list = field(default_factory=list)  # (replica name, last index held, error)
    complete: bool = False
    gave_up: str = ""  # why the stream ended without its final marker, if it did

    @property
    def first_server(self) -> str:
        return self.served_by[0] if self.served_by else "no replica"

    @property
    def text(self) -> str:
        return "".join(self.texts)

    @property
    def lost(self) -> int:
        """Indices missing between 0 and the highest one received."""
        return len(set(range(max(self.indices, default=-1) + 1)) - set(self.indices))

    @property
    def duplicated(self) -> int:
        return len(self.indices) - len(set(self.indices))


ChunkHook = Callable[[Replica, dict], None]


async def stream_with_failover(balancer: Balancer, prompt: str, on_chunk: Optional[ChunkHook] = None) -> StreamResult:
    """One answer, resumed on the next replica after the last chunk held if a replica fails."""
    result = StreamResult(prompt)
    for _ in range(len(balancer.replicas)):
        try:
            replica = balancer.pick()
        except NoHealthyReplica as exc:  # every replica failed: an outcome to report, not a crash
            result.gave_up = str(exc)
            return result
        result.served_by.append(replica.name)
        last_held = result.indices[-1] if result.indices else None  # the resume point
        try:
            async with contextlib.aclosing(balancer.stream(replica, prompt, after_index=last_held)) as chunks:
                async for chunk in chunks:
                    result.indices.append(chunk["index"])
                    result.texts.append(chunk_text(chunk))
                    if on_chunk:
                        on_chunk(replica, chunk)
            result.complete = True
            return result
        except A2AError as exc:
            balancer.mark_down(replica, type(exc).__name__)
            result.failovers.append((replica.name, result.indices[-1] if result.indices else None,
                                     f"{type(exc).__name__}: {exc}"))
    result.gave_up = f"{len(result.failovers)} replica(s) tried, every one failed"
    return result


def shorten(text: str, width: int = 160) -> str:
    """One line of at most `width` characters, cut at a word boundary (error messages can be long)."""
    return textwrap.shorten(text, width, placeholder=" ...")


def print_failures(results: list[StreamResult]) -> None:
    """Why streams broke off: each distinct reason once, on its own line, so the user sees it."""
    reasons = dict.fromkeys(f"{name}: {error}" for r in results for name, _, error in r.failovers)
    reasons.update(dict.fromkeys(f"gave up: {r.gave_up}" for r in results if r.gave_up and not r.complete))
    for reason in reasons:
        print(paint(f"  ! {shorten(reason)}", "yellow"))


# ---------------------------------------------------------------- the modes
@dataclass
class Check:
    mode: str
    what: str
    ok: bool


def heading(text: str) -> None:
    print("\n" + paint(f"== {text}", "cyan"))


def tag(replica: Replica, chunk: dict) -> None:
    """Live output line: which replica sent which chunk."""
    print(f"  [{replica.name}] {chunk_text(chunk).rstrip()}", flush=True)


async def run_single(balancer: Balancer, prompt: str) -> list[Check]:
    heading("single: one stream, printed as it arrives")
    started = time.perf_counter()
    result = await stream_with_failover(balancer, prompt, on_chunk=tag)
    seconds = time.perf_counter() - started
    ok = result.complete and result.indices == list(range(CHUNKS)) and not result.failovers
    print_failures([result])
    print(f"  {len(result.indices)} chunks, {len(result.text)} characters in {seconds:.2f} s from "
          f"{', '.join(result.served_by) or 'no replica'}; final marker {'seen' if result.complete else 'MISSING'}")
    return [Check("single", f"{CHUNKS} chunks in order + final marker", ok)]


async def run_balance(balancer: Balancer, prompt: str) -> list[Check]:
    checks = [await round_robin_round(balancer, prompt), await least_active_round(balancer, prompt)]
    if all(r.process for r in balancer.replicas):
        checks += await dead_replica_round(balancer, prompt)
    else:
        print("  (skipping the kill-and-restart health demo: it needs replicas this script started)")
    return checks


async def spread(balancer: Balancer, prompt: str, requests: int) -> list[StreamResult]:
    """`requests` concurrent streams through the balancer."""
    return list(await asyncio.gather(*(stream_with_failover(balancer, f"{prompt} #{i}") for i in range(requests))))


def served_line(results: list[StreamResult]) -> str:
    return " ".join("+".join(r.served_by) for r in results)


def all_complete(results: list[StreamResult]) -> bool:
    return all(r.complete and r.indices == list(range(CHUNKS)) for r in results)


def healthy_replicas(balancer: Balancer) -> list[Replica]:
    """The replicas in rotation; the balance checks judge only these (a dead one is rightly skipped)."""
    return [r for r in balancer.replicas if r.healthy]


def say_who_is_down(balancer: Balancer) -> None:
    down = [r.name for r in balancer.replicas if not r.healthy]
    if down:
        print(paint(f"  ({', '.join(down)} down: skipped, and judged over the "
                    f"{len(healthy_replicas(balancer))} healthy replicas)", "yellow"))


async def round_robin_round(balancer: Balancer, prompt: str) -> Check:
    balancer.strategy = "round-robin"
    heading("balance: round-robin, two concurrent requests per healthy replica")
    await balancer.check_health()
    say_who_is_down(balancer)
    healthy = healthy_replicas(balancer)
    results = await spread(balancer, prompt, 2 * len(healthy))
    print(f"  served by: {served_line(results)}")
    print_failures(results)
    order = [r.first_server for r in results]
    in_turn = order == order[:len(healthy)] * 2 and set(order) == {r.name for r in healthy}
    ok = bool(healthy) and all_complete(results) and in_turn
    return Check("balance", "round-robin: each replica in turn, every stream complete", ok)


async def least_active_round(balancer: Balancer, prompt: str) -> Check:
    balancer.strategy = "least-active"
    healthy = healthy_replicas(balancer)
    busy, others = (healthy or balancer.replicas)[0], healthy[1:]
    heading(f"balance: least-active, while {busy.name} is busy with a stream")
    say_who_is_down(balancer)
    what = f"least-active: new streams avoid the busy {busy.name}"
    first_chunk = asyncio.Event()
    busy_stream = asyncio.create_task(stream_with_failover(balancer, f"{prompt} (busy)",
                                                           on_chunk=lambda r, c: first_chunk.set()))
    # Wait for the busy stream's first chunk, or for its end: a stream that fails before
    # sending anything would otherwise leave us waiting for that chunk for ever.
    chunk_seen = asyncio.create_task(first_chunk.wait())
    await asyncio.wait({busy_stream, chunk_seen}, return_when=asyncio.FIRST_COMPLETED)
    chunk_seen.cancel()
    if not first_chunk.is_set():
        print_failures([busy_stream.result()])
        print(paint("  the busy stream ended before its first chunk: nothing to balance around", "red"))
        return Check("balance", what, False)
    results = await spread(balancer, prompt, len(others))
    busy_result = await busy_stream
    print(f"  busy stream on {busy_result.first_server}; the next {len(others)} requests went to: "
          f"{served_line(results)}")
    print_failures([busy_result, *results])
    ok = (busy_result.served_by == [busy.name] and all_complete(results)
          and [r.first_server for r in results] == [r.name for r in others])
    return Check("balance", what, ok)


async def dead_replica_round(balancer: Balancer, prompt: str) -> list[Check]:
    balancer.strategy = "round-robin"
    victim = balancer.replicas[1]
    heading(f"balance: health checks — {victim.name} crashes, then comes back")
    victim.process.kill()
    print(f"  killed {victim.name} (pid {victim.process.pid})")
    await balancer.check_health()
    results = await spread(balancer, prompt, 4)
    print(f"  4 requests served by: {served_line(results)}")
    skipped = all_complete(results) and all(victim.name not in r.served_by for r in results)
    await asyncio.to_thread(victim.process.restart)
    print(f"  restarted {victim.name} on the same port (pid {victim.process.pid})")
    await balancer.check_health()
    back = await spread(balancer, prompt, len(balancer.replicas))
    print(f"  {len(back)} requests served by: {served_line(back)}")
    returned = all_complete(back) and any(r.served_by == [victim.name] for r in back)
    return [Check("balance", f"dead {victim.name} skipped after a health check", skipped),
            Check("balance", f"{victim.name} back in rotation after it recovered", returned)]


async def run_aggregate(balancer: Balancer, prompt: str, source_timeout: float) -> list[Check]:
    sources = [r for r in balancer.replicas if r.healthy]
    frozen = sources[-1] if len(sources) > 1 and sources[-1].process else None
    heading(f"aggregate: one question in {len(sources)} parts, part i asked of replica i, all at once; "
            f"{source_timeout:g} s per-source timeout")
    if frozen:
        print(f"  ({frozen.name} will freeze after chunk {FREEZE_AFTER_CHUNK}: a stuck source)")

    def on_chunk(replica: Replica, chunk: dict) -> None:
        tag(replica, chunk)
        if replica is frozen and chunk["index"] == FREEZE_AFTER_CHUNK:
            replica.process.freeze()

    try:
        parts = await fan_out(balancer, sources, prompt, source_timeout, on_chunk)
    finally:
        if frozen:
            frozen.process.thaw()
    return aggregate_checks(parts, frozen)


async def fan_out(balancer: Balancer, sources: list[Replica], prompt: str, source_timeout: float,
                  on_chunk: ChunkHook) -> dict[str, tuple[StreamResult, str]]:
    """Ask every source for its part concurrently; each stream ends on its own (or times out)."""
    async def one(position: int, replica: Replica) -> tuple[StreamResult, str]:
        result = StreamResult(f"{prompt} (part {position + 1} of {len(sources)})", served_by=[replica.name])
        try:
            async for chunk in balancer.stream(replica, result.prompt, idle_timeout=source_timeout):
                result.indices.append(chunk["index"])
                result.texts.append(chunk_text(chunk))
                on_chunk(replica, chunk)
            result.complete = True
            return result, "complete"
        except A2AError as exc:
            print(paint(f"  [{replica.name}] ended early after {len(result.indices)} chunks: {exc}", "yellow"))
            return result, str(exc)

    answers = await asyncio.gather(*(one(i, r) for i, r in enumerate(sources)))
    return {replica.name: answer for replica, answer in zip(sources, answers)}


def aggregate_checks(parts: dict[str, tuple[StreamResult, str]], frozen: Optional[Replica]) -> list[Check]:
    rows = [[name, len(result.indices), shorten(status, 60)] for name, (result, status) in parts.items()]
    print()
    print_table(["source", "chunks", "status"], rows)
    whole = [r for name, (r, _) in parts.items() if not (frozen and name == frozen.name)]
    combined = "".join(r.text for r, _ in parts.values())
    print(f"  combined result (the parts joined in order): {sum(r.complete for r, _ in parts.values())} "
          f"of {len(parts)} parts, "
          f"{combined.count(chr(10))} lines, {len(combined)} characters")
    checks = [Check("aggregate", "every live source: complete, its chunks in order",
                    all(r.complete and r.indices == list(range(CHUNKS)) for r in whole))]
    if frozen:
        stuck = parts[frozen.name][0]
        checks.append(Check("aggregate", f"stuck {frozen.name} cut by its timeout, others not stalled",
                            not stuck.complete and stuck.indices == list(range(len(stuck.indices)))))
    return checks


async def run_failover(balancer: Balancer, prompt: str) -> list[Check]:
    balancer.strategy = "round-robin"
    heading(f"failover: the serving replica is killed after chunk {KILL_AFTER_CHUNK}")
    await balancer.check_health()
    reference = await stream_with_failover(balancer, prompt)
    print(f"  reference run on {reference.served_by[0]}: {len(reference.indices)} chunks")
    killed: list[Replica] = []
    kill_time: list[float] = []

    def kill_mid_stream(replica: Replica, chunk: dict) -> None:
        tag(replica, chunk)
        if killed and len(kill_time) == 1:
            kill_time.append(time.perf_counter())  # the first chunk after the kill
        if chunk["index"] == KILL_AFTER_CHUNK and not killed:
            replica.process.kill()
            killed.append(replica)
            kill_time.append(time.perf_counter())
            print(paint(f"  killed {replica.name} (pid {replica.process.pid}, SIGKILL)", "red"))

    result = await stream_with_failover(balancer, prompt, on_chunk=kill_mid_stream)
    checks = failover_checks(result, reference, killed)
    if len(kill_time) == 2:
        # The new replica re-runs the agent from the start and skips what the client holds,
        # so this includes the agent's time for chunks 0..k again (cheap here, not for an LLM).
        print(f"  kill -> next chunk from {result.served_by[-1]}: {(kill_time[1] - kill_time[0]) * 1000:.0f} ms "
              f"(the agent re-ran chunks 0-{KILL_AFTER_CHUNK} there, unsent)")
    return checks


def failover_checks(result: StreamResult, reference: StreamResult, killed: list) -> list[Check]:
    for name, held, error in result.failovers:
        print(f"  {name} broke off after chunk {held}; resumed on the next replica. Its error:")
        print(f"    {shorten(error)}")
    identical = result.text == reference.text
    resumed_at = result.failovers[0][1] if result.failovers else None
    print(paint(f"  failover after chunk {resumed_at}: {result.lost} lost, {result.duplicated} duplicated, "
                f"text {'identical' if identical else 'DIFFERENT'}",
                "green" if identical and not (result.lost or result.duplicated) else "red"))
    return [Check("failover", "the serving replica really died mid-stream",
                  bool(killed) and len(result.served_by) > 1 and resumed_at is not None and resumed_at < CHUNKS - 1),
            Check("failover", "0 lost, 0 duplicated, text identical to an uninterrupted run",
                  result.complete and identical and result.lost == 0 and result.duplicated == 0
                  and len(result.indices) == len(reference.indices))]


# ---------------------------------------------------------------- the whole demo
MODES = ("single", "balance", "aggregate", "failover")


async def run_modes(balancer: Balancer, modes: list[str], prompt: str, source_timeout: float) -> list[Check]:
    checks: list[Check] = []
    owns_processes = all(r.process for r in balancer.replicas)
    await balancer.check_health()
    if not any(r.healthy for r in balancer.replicas):
        raise NoHealthyReplica("no replica answers GET /agent.json: " + " ".join(r.url for r in balancer.replicas))
    for mode in modes:
        if mode == "single":
            checks += await run_single(balancer, prompt)
        elif mode == "balance":
            checks += await run_balance(balancer, prompt)
        elif mode == "aggregate":
            await balancer.check_health()
            checks += await run_aggregate(balancer, prompt, source_timeout)
        elif mode == "failover" and owns_processes:
            checks += await run_failover(balancer, prompt)
        elif mode == "failover":
            print("\n  (skipping failover: it kills a replica, so it needs replicas this script started)")
    await balancer.check_health()
    return checks


def report(balancer: Balancer, checks: list[Check], report_path: Optional[str]) -> int:
    heading("per-replica metrics (measured by the client)")
    rows = [[m["replica"], m["requests"], m["peak_active_streams"], m["chunks"], m["errors"],
             m["first_chunk_ms_p50"], m["first_chunk_ms_p95"], m["chunk_gap_ms_p50"], m["chunk_gap_ms_p95"],
             "up" if m["healthy"] else "down"]
            for m in (r.metrics() for r in balancer.replicas)]
    print_table(["replica", "requests", "peak active", "chunks", "errors", "1st chunk p50 ms",
                 "1st chunk p95 ms", "gap p50 ms", "gap p95 ms", "health"], rows)
    heading("summary")
    print_table(["mode", "check", "verdict"],
                [[c.mode, c.what, paint("PASS", "green") if c.ok else paint("FAIL", "red")] for c in checks])
    if report_path:
        document = {"replicas": [r.metrics() for r in balancer.replicas],
                    "checks": [c.__dict__ for c in checks], "passed": all(c.ok for c in checks)}
        Path(report_path).write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nmetrics written to {report_path}")
    return 0 if checks and all(c.ok for c in checks) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = demo_parser(__doc__.split("\n")[0], DEFAULT_PORT, many_urls=True)
    parser.epilog += "\n  python %s --url http://127.0.0.1:8106 --url http://127.0.0.1:8107" % parser.prog
    parser.add_argument("--mode", choices=MODES + ("all",), default="all", help="which part to run (default all)")
    parser.add_argument("--replicas", type=int, default=3, help="replica processes to start (2-8, default 3)")
    parser.add_argument("--source-timeout", type=seconds_arg(), default=2.0, metavar="SECONDS",
                        help="aggregate: a source silent this long is cut off (default 2)")
    parser.add_argument("--report", metavar="FILE.json", help="also write the metrics and checks as JSON")
    return parser


def serve_replica(args: argparse.Namespace) -> int:
    """--serve: one replica until Ctrl-C or SIGTERM."""
    return serve_until_interrupted(ReplicaAgent(FAST_CHUNK_DELAY if args.fast else CHUNK_DELAY), args.host, args.port)


def _terminate(*_) -> None:
    raise KeyboardInterrupt  # so `finally` stops the replica processes on SIGTERM too


def run_with(replicas: list[Replica], modes: list[str], args: argparse.Namespace) -> int:
    balancer = Balancer(replicas)
    checks = asyncio.run(run_modes(balancer, modes, "Describe the harbor at dawn", args.source_timeout))
    return report(balancer, checks, args.report)


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 2 <= args.replicas <= 8:
        parser.error("--replicas must be between 2 and 8")
    if args.url and args.mode == "failover":
        parser.error("--mode failover kills a replica, so it needs replicas this script starts: drop --url")
    if not args.verbose:
        quiet()
    if args.serve:
        return serve_replica(args)
    modes = list(MODES) if args.mode == "all" else [args.mode]
    previous_handler = signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.url:
            replicas = [Replica(f"replica-{i + 1}", url) for i, url in enumerate(args.url)]
            return run_with(replicas, modes, args)
        print(f"Starting {args.replicas} replica processes ...", flush=True)
        with replica_processes(args.replicas, args.fast, args.verbose) as processes:
            replicas = [Replica(f"replica-{i + 1}", p.url, p) for i, p in enumerate(processes)]
            for replica in replicas:
                print(f"  {replica.name}: pid {replica.process.pid} at {replica.url}")
            return run_with(replicas, modes, args)
    except (A2AError, ReplicaStartError) as exc:
        print(paint(f"error: {exc}", "red", sys.stderr), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`| head`); the replicas are stopped all the same
        return stdout_gone()
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


if __name__ == "__main__":
    sys.exit(main())
