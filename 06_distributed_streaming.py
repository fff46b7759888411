"""06 — distributed streaming: replicas share one event log in Redis, behind nginx; failover is exact.

What you'll see (`python 06_distributed_streaming.py`, about 25 s; `--fast` about 15 s):
  1. a private redis-server, three replicas (`--serve --port 0 --redis URL`, separate processes) and
     nginx in front of them (least_conn, proxy_buffering off: deploy/nginx/06.conf);
  2. balance    six streams at once through nginx, spread over the replicas. The agent writes random
                words, so one prompt gives six different texts: re-running it could never resume one;
  3. aggregate  one question in three parts, part i asked of replica i at once; one replica freezes
                (SIGSTOP) and its per-source timeout cuts it without stalling the others;
  4. relay      a task runs on replica A; a second client reads it through nginx from B; B is killed
                (SIGKILL) mid-stream; the client reconnects through nginx with Last-Event-ID and reads
                the rest of the task's log from another replica: "0 lost, 0 duplicated, text == stored";
  5. runner     the replica that runs a task is killed: its lease in Redis lapses, another replica
                ends the task `failed` with the reason, and every subscriber sees it;
  6. per-replica metrics, read from each replica's /metrics (Prometheus text), and one verdict.
Without redis-server or nginx it says what to install and runs what it can.

Other ways to run it:
  --serve --port 0 --redis URL   one replica on a shared log (run several; REDIS_URL works too)
  --redis URL                    the whole lesson on your Redis (a managed one) instead of a private one
  --url URL [--url URL ...]      balance and aggregate over replicas running elsewhere (nothing is killed)
Production: REDIS_URL=redis://... gunicorn -k gthread --threads 16 -w 2 -b 127.0.0.1:8106 \\
            '06_distributed_streaming:create_wsgi_app()'
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Optional

import aiohttp
from examples_support import cluster, demo_parser, seconds_arg
from examples_support.cluster import serve_replica
from python_a2a import A2AConnectionError, A2AResponseError, Message
from python_a2a.server.http import create_flask_app
from streaming_kit import StreamingAgent, quiet
from streaming_kit.stores import RedisTaskLog
from streaming_kit.tasks import engine_for

DEFAULT_PORT = 8106
CHUNKS = 24
CHUNK_DELAY, FAST_CHUNK_DELAY = 0.05, 0.02  # --fast still paces a little, so a kill lands mid-stream
LEASE, FAST_LEASE = 5.0, 2.0                # a dead runner's tasks end `failed` about this long after
SERVED_BY = "X-Served-By"                   # which replica answered (nginx passes it on)
WORDS = ("amber", "brisk", "cedar", "delta", "ember", "fjord", "glade", "harbor", "indigo", "juniper",
         "kestrel", "lumen", "meadow", "nimbus", "orchid", "pebble", "quartz", "ripple", "sierra", "willow")


# --8<-- [start:replica]
class WanderingAgent(StreamingAgent):
    """Answers with words picked at random: like an LLM, it never writes the same answer twice."""
    metrics = True  # GET /metrics: streams, chunks, latencies (Prometheus text)

    def __init__(self, chunk_delay: float = CHUNK_DELAY):
        super().__init__(name="WanderingAgent")
        self.chunk_delay = chunk_delay

    async def stream_response(self, message: Message) -> AsyncIterator[str]:
        for index in range(CHUNKS):
            await asyncio.sleep(self.chunk_delay)
            yield f"{index:02d} " + " ".join(random.choices(WORDS, k=3)) + "\n"

    def response_headers(self, served: str) -> dict:
        return {SERVED_BY: served}  # on every response, whichever server runs the replica


def replica(redis_url: Optional[str], fast: bool = False, proxy_hosts: tuple = ()) -> WanderingAgent:
    """One replica. With redis_url every task's events go to a Redis Stream as they are made, so
    any replica answers tasks/get and tasks/resubscribe for any task, from the log: nothing re-runs."""
    agent = WanderingAgent(FAST_CHUNK_DELAY if fast else CHUNK_DELAY)
    agent.allowed_hosts = proxy_hosts  # the Host a proxy in front passes on (deploy/nginx/06.conf)
    if redis_url:
        agent.task_log = RedisTaskLog(redis_url, keep_seconds=600)  # before serving: all replicas, one log
    engine_for(agent).lease_seconds = FAST_LEASE if fast else LEASE  # renewed every third of it
    return agent


def create_wsgi_app(fast: bool = False):
    """WSGI app for gunicorn -k gthread (one stream per thread); the log is REDIS_URL's."""
    quiet()
    return create_flask_app(replica(os.environ.get("REDIS_URL"), fast))
# --8<-- [end:replica]


# --8<-- [start:client]
@dataclass
class Answer:
    """What one client holds of one task: the seq of every event, the text, who relayed each event."""
    task_id: str = ""
    seqs: list = field(default_factory=list)
    relays: list = field(default_factory=list)
    text: str = ""
    state: str = ""
    reason: str = ""  # the final status message (why a task failed)
    on_event: Optional[Callable[["Answer"], None]] = None

    def add(self, seq: int, result: dict, relay: str) -> None:
        self.seqs.append(seq)
        self.relays.append(relay)
        self._apply(result)
        if self.on_event:
            self.on_event(self)

    def _apply(self, result: dict) -> None:
        kind = result.get("kind")
        if kind == "task":  # the task as it stands (first event, or a resubscribe without Last-Event-ID)
            self.task_id, self.state = result["id"], result["status"]["state"]
            self.text = "".join(parts_text(a["parts"]) for a in result.get("artifacts", []))
        elif kind == "artifact-update":
            self.text = (self.text if result["append"] else "") + parts_text(result["artifact"]["parts"])
        elif kind == "status-update":
            self.state = result["status"]["state"]
            self.reason = parts_text(result["status"].get("message", {}).get("parts", []))


def parts_text(parts: list) -> str:
    return "".join(part.get("text", "") for part in parts)


async def a2a_call(session: aiohttp.ClientSession, url: str, method: str, params: dict,
                   last_event_id: Optional[int] = None) -> AsyncIterator[tuple[int, dict, str]]:
    """One A2A v0.3 JSON-RPC call; yields (seq, result, replica) per event (one, for tasks/get)."""
    body = {"jsonrpc": "2.0", "id": str(uuid.uuid4()), "method": method, "params": params}
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    async with session.post(f"{url}/", json=body, headers=headers) as response:
        relay = response.headers.get(SERVED_BY, url)
        if response.status >= 500:  # e.g. the proxy found no replica for now: a reason to reconnect
            raise aiohttp.ClientResponseError(response.request_info, (), status=response.status,
                                              message=await response.text())
        if response.content_type != "text/event-stream":  # tasks/get, or an error instead of a stream
            reply = await response.json()
            if "error" in reply:
                raise A2AResponseError(f"{method} at {url}: HTTP {response.status}: {reply['error']}")
            yield -1, reply["result"], relay
            return
        seq, data = -1, []
        async for raw in response.content:  # SSE: "id: <seq>", "data: <JSON-RPC response>", blank line
            line = raw.decode().rstrip("\r\n")
            if line.startswith("id:"):
                seq = int(line[3:])
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                reply, data = json.loads("\n".join(data)), []
                if "error" in reply:
                    raise A2AResponseError(f"{method}: {reply['error']['message']}")
                yield seq, reply["result"], relay


async def follow_task(session: aiohttp.ClientSession, entry_points: list[str], answer: Answer,
                      message: Optional[dict] = None, reconnects: int = 5) -> Answer:
    """Send `message` (or join answer.task_id) and read the task to its end. A connection that breaks
    is opened again, on the next entry point (or the same proxy), with Last-Event-ID = the last seq
    held: the replica that answers reads the rest from the shared log, so nothing is lost or repeated."""
    for attempt in range(reconnects + 1):
        url = entry_points[attempt % len(entry_points)]
        if answer.task_id:
            call = a2a_call(session, url, "tasks/resubscribe", {"id": answer.task_id},
                            answer.seqs[-1] if answer.seqs else None)
        else:
            call = a2a_call(session, url, "message/stream", {"message": message})
        try:
            async with contextlib.aclosing(call) as events:  # returning early closes the connection
                async for seq, result, relay in events:
                    answer.add(seq, result, relay)
                    if result.get("final"):
                        return answer
        except (aiohttp.ClientError, asyncio.TimeoutError):
            continue  # the replica we read from is gone: the next attempt resumes after answer.seqs[-1]
    raise A2AConnectionError(f"task {answer.task_id}: still not final after {reconnects} reconnects")


async def stored_text(session: aiohttp.ClientSession, url: str, task_id: str) -> tuple[str, str]:
    """(text, state) of the task as the log keeps it (tasks/get), from whichever replica answers."""
    async with contextlib.aclosing(a2a_call(session, url, "tasks/get", {"id": task_id})) as replies:
        async for _, task, _ in replies:
            return "".join(parts_text(a["parts"]) for a in task.get("artifacts", [])), task["status"]["state"]


def user_message(text: str) -> dict:
    return {"role": "user", "messageId": str(uuid.uuid4()), "parts": [{"kind": "text", "text": text}]}
# --8<-- [end:client]


# ---------------------------------------------------------------- the lesson's rounds
async def balance(run: cluster.Run, prompt: str, streams: int = 6) -> None:
    run.heading(f"balance: {streams} streams at once through {run.front}")
    async with run.session() as session:
        answers = await asyncio.gather(*(follow_task(session, [run.entry(i)], Answer(), user_message(prompt))
                                         for i in range(streams)))
    run.check_balance(answers)


async def aggregate(run: cluster.Run, prompt: str, source_timeout: float, freeze_after: int = 3) -> None:
    sources = run.replica_urls()
    run.heading(f"aggregate: one question in {len(sources)} parts, part i asked of replica i; "
                f"{source_timeout:g} s per-source timeout; the last one freezes after chunk {freeze_after}")
    frozen = run.replica_at(sources[-1]) if run.owns_replicas else None

    async def part(i: int, url: str) -> tuple[Answer, str]:
        answer, text = Answer(), f"{prompt} (part {i + 1} of {len(sources)})"
        try:
            async for seq, result, relay in a2a_call(session, url, "message/stream", {"message": user_message(text)}):
                answer.add(seq, result, relay)
                run.tag(relay, result)
                if frozen and url == sources[-1] and answer.text.count("\n") == freeze_after:
                    frozen.freeze()  # a stuck source: its socket stays open, nothing more comes
            return answer, "complete"
        except asyncio.TimeoutError:
            return answer, f"cut: silent for {source_timeout:g} s"

    timeout = aiohttp.ClientTimeout(sock_read=source_timeout)
    try:
        async with run.session(timeout) as session:
            parts = await asyncio.gather(*(part(i, url) for i, url in enumerate(sources)))
    finally:
        if frozen:
            frozen.thaw()
    run.check_aggregate(parts, CHUNKS, frozen is not None)


async def kill_the_relay(run: cluster.Run, prompt: str, kill_after: int = 8) -> None:
    run.heading(f"relay: a task runs on one replica, a client reads it via another, which dies after chunk {kill_after}")
    async with run.session() as session:
        # 1. start the task; its stream stays open, so nginx (least_conn) sends the next one elsewhere
        first = Answer()
        starting = asyncio.create_task(follow_task(session, run.entry_points(), first, user_message(prompt)))
        await run.until(lambda: first.task_id)
        runner = first.relays[0]
        # 2. a second client joins (Last-Event-ID: 0) through the front; its relay is killed mid-stream
        killer = run.killer(lambda answer: answer.text.count("\n") == kill_after, runner=runner)
        second = Answer(task_id=first.task_id, seqs=[0], relays=[runner], on_event=killer)
        await follow_task(session, run.entry_points(avoid=runner), second)
        await starting
        # 3. the proof: what the client holds is what the log holds (a re-run would differ)
        stored = await stored_text(session, run.entry(0), first.task_id)
    run.check_relay_kill(first, second, stored, killer)


async def kill_the_runner(run: cluster.Run, prompt: str, lease: float) -> None:
    run.heading(f"runner: the replica running a task is killed; its {lease:g} s lease in Redis lapses")
    async with run.session() as session:
        first = Answer()
        starting = asyncio.create_task(follow_task(session, run.entry_points(), first, user_message(prompt)))
        await run.until(lambda: first.task_id)
        runner = first.relays[0]
        killer = run.killer(lambda answer: answer.text.count("\n") == 4, victim=runner, runner=runner)
        second = Answer(task_id=first.task_id, seqs=[0], relays=[runner], on_event=killer)
        await asyncio.gather(follow_task(session, run.entry_points(avoid=runner), second), starting)
    run.check_runner_kill(first, second, killer, lease, time.perf_counter() - killer.killed_at)


async def lesson(run: cluster.Run, args) -> None:
    prompt = "Describe the harbor at dawn"
    await balance(run, prompt)
    await aggregate(run, prompt, args.source_timeout)
    if run.can_fail_over("relay"):
        await kill_the_relay(run, prompt)
    if run.can_fail_over("runner"):
        await kill_the_runner(run, prompt, FAST_LEASE if args.fast else LEASE)


def build_parser():
    parser = demo_parser(__doc__, DEFAULT_PORT, many_urls=True)
    parser.add_argument("--redis", metavar="URL", default=os.environ.get("REDIS_URL"),
                        help="the shared event log (default REDIS_URL; the demo starts a private redis-server)")
    parser.add_argument("--source-timeout", type=seconds_arg(), default=None, metavar="SECONDS",
                        help="aggregate: a source silent this long is cut off (default 2, --fast 1)")
    parser.add_argument("--report", metavar="FILE.json", help="also write what happened as JSON")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve:
        return serve_replica(replica(args.redis, args.fast, tuple(args.allow_host)), args)
    return cluster.run_lesson(__file__, args, lesson)


if __name__ == "__main__":
    sys.exit(main())
