"""06_distributed_streaming.py on real parts: replica processes (`--serve --port 0 --redis URL`) sharing
one real redis-server, behind a real nginx (deploy/nginx/06.conf). Skipped with the reason when
redis-server or nginx is not installed, unless REQUIRE_REDIS=1 (CI sets it)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys

import aiohttp
import pytest

from conftest import ROOT, library_noise, load_script, require_program, run_script
from examples_support import cluster
from examples_support.services import free_port, nginx_proxy, private_redis

SCRIPT = "06_distributed_streaming.py"
demo = load_script(SCRIPT)
DEADLINE = 30  # seconds: a stream or a run that takes longer has hung


@pytest.fixture(scope="module")
def redis_url():
    require_program("redis-server")
    with private_redis() as url:
        yield url


@contextlib.contextmanager
def replicas_behind_nginx(redis_url: str):
    """Three fresh replicas on the shared log and nginx in front: (replicas, proxy URL)."""
    require_program("nginx")
    port = free_port()
    with cluster.replica_processes(str(ROOT / SCRIPT), redis_url, True, f"127.0.0.1:{port}") as replicas:
        with nginx_proxy([r.url for r in replicas], port) as proxy:
            yield replicas, proxy


@pytest.fixture
def fresh(redis_url):
    """For a test that kills a replica."""
    with replicas_behind_nginx(redis_url) as pair:
        yield pair


@pytest.fixture(scope="module")
def shared(redis_url):
    """For the tests that leave the replicas alive."""
    with replicas_behind_nginx(redis_url) as pair:
        yield pair


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, DEADLINE))


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=20))


async def read_until(call, answer: "demo.Answer", lines: int) -> None:
    """Read events of one call into answer until it holds `lines` chunks, then hang up."""
    async with contextlib.aclosing(call) as events:
        async for seq, result, relay in events:
            answer.add(seq, result, relay)
            if answer.text.count("\n") >= lines:
                return


def assert_exact(answer: "demo.Answer", stored: tuple) -> None:
    assert answer.seqs == list(range(len(answer.seqs))), "every seq once, in order, none missing"
    assert answer.state == stored[1] == "completed"
    assert answer.text == stored[0] and answer.text.count("\n") == demo.CHUNKS


def test_a_task_started_on_a_resumes_on_b_and_completes_from_c(shared):
    """Fails without the shared log: B has never heard of A's task (task not found)."""
    (a, b, c), _ = shared

    async def scenario():
        answer = demo.Answer()
        async with session() as s:
            await read_until(demo.a2a_call(s, a.url, "message/stream", {"message": demo.user_message("hi")}), answer, 3)
            await read_until(demo.a2a_call(s, b.url, "tasks/resubscribe", {"id": answer.task_id}, answer.seqs[-1]),
                             answer, 8)
            await demo.follow_task(s, [c.url], answer)
            return answer, await demo.stored_text(s, a.url, answer.task_id)

    answer, stored = run(scenario())
    assert_exact(answer, stored)
    served = {relay for relay in answer.relays}
    assert served == {a.address, b.address, c.address}


def test_the_same_prompt_twice_gives_two_different_texts(shared):
    """So a replica that re-ran the agent and skipped what the client holds could not pass the checks."""
    (a, _, _), _ = shared

    async def twice():
        async with session() as s:
            return [await demo.follow_task(s, [a.url], demo.Answer(), demo.user_message("same")) for _ in range(2)]

    first, second = run(twice())
    assert first.state == second.state == "completed"
    assert first.text != second.text


def test_streams_pass_through_the_real_proxy_unbuffered(shared):
    """Through nginx, each event arrives while the task is still working (a buffering proxy would hold
    them back until the end), and new streams are spread over the replicas (least_conn)."""
    replicas, proxy = shared

    async def through_proxy():
        async with session() as s:
            answer, working_at_chunk_2 = demo.Answer(), None
            async for seq, result, relay in demo.a2a_call(s, proxy, "message/stream",
                                                         {"message": demo.user_message("hi")}):
                answer.add(seq, result, relay)
                if working_at_chunk_2 is None and answer.text.count("\n") == 2:
                    working_at_chunk_2 = (await demo.stored_text(s, proxy, answer.task_id))[1]
            many = await asyncio.gather(*(demo.follow_task(s, [proxy], demo.Answer(), demo.user_message("x"))
                                          for _ in range(6)))
            return answer, working_at_chunk_2, many, await demo.stored_text(s, proxy, answer.task_id)

    answer, state_mid_stream, many, stored = run(through_proxy())
    assert_exact(answer, stored)
    assert state_mid_stream == "working"
    assert {m.relays[0] for m in many} == {r.address for r in replicas}


def test_kill_9_of_the_relaying_replica_loses_and_repeats_nothing(fresh):
    replicas, proxy = fresh
    killed = []

    def kill_relay_after_chunk_6(answer):
        if not killed and answer.text.count("\n") == 6:
            relay = next(r for r in replicas if r.address == answer.relays[-1])
            relay.kill()
            killed.append((relay.address, answer.seqs[-1]))

    async def scenario():
        async with session() as s:
            first = demo.Answer()
            # the task starts through nginx on some replica; its stream stays open, so nginx
            # (least_conn) sends the second client to another replica
            starting = asyncio.create_task(demo.follow_task(s, [proxy], first, demo.user_message("hi")))
            while not first.task_id:
                await asyncio.sleep(0.005)  # poll interval
            second = demo.Answer(task_id=first.task_id, seqs=[0], relays=first.relays[:1],
                                 on_event=kill_relay_after_chunk_6)
            await demo.follow_task(s, [proxy], second)
            await starting
            return first, second, await demo.stored_text(s, proxy, first.task_id)

    first, second, stored = run(scenario())
    (victim, at_seq), = killed
    assert victim != first.relays[0], "the replica killed relayed the stream; it did not run the task"
    after = second.relays[second.seqs.index(at_seq) + 1:]
    assert after and victim not in after
    assert_exact(second, stored)
    assert first.text == stored[0]


def test_kill_9_of_the_running_replica_ends_the_task_failed_for_every_subscriber(fresh):
    """Fails when only the runner watches leases: the other replicas never end the orphan, and the
    subscribers wait until the deadline."""
    (a, b, c), proxy = fresh

    async def scenario():
        async with session() as s:
            first = demo.Answer()
            starting = asyncio.create_task(demo.follow_task(s, [a.url, proxy], first, demo.user_message("hi")))
            while first.text.count("\n") < 3:
                await asyncio.sleep(0.005)  # poll interval
            held = list(first.seqs)
            on_b = demo.Answer(task_id=first.task_id, seqs=list(held))
            via_proxy = demo.Answer(task_id=first.task_id, seqs=list(held))
            watchers = [asyncio.create_task(demo.follow_task(s, [url], answer))
                        for url, answer in ((b.url, on_b), (proxy, via_proxy))]
            while len(on_b.seqs) == len(held) or len(via_proxy.seqs) == len(held):
                await asyncio.sleep(0.005)  # both subscribers are reading live events
            a.kill()
            await asyncio.gather(starting, *watchers)
            return [first, on_b, via_proxy], await demo.stored_text(s, c.url, first.task_id)

    answers, stored = run(scenario())
    assert stored[1] == "failed"
    for answer in answers:
        assert answer.state == "failed" and "lease" in answer.reason
        assert len(answer.seqs) == len(set(answer.seqs))
    first, on_b, via_proxy = answers
    assert set(on_b.relays) == {b.address} and a.address not in (first.relays[-1], via_proxy.relays[-1])


def test_unknown_task_is_a_json_rpc_error_on_every_replica(shared):
    """Fails when the engine catches only its own TaskNotFound: RedisTaskLog's escaped as a 500."""
    replicas, proxy = shared
    body = {"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "no-such-task"}}

    async def ask(url):
        async with session() as s, s.post(f"{url}/", json=body) as response:
            return response.status, await response.json()

    for url in [r.url for r in replicas] + [proxy]:
        status, reply = run(ask(url))
        assert status == 200 and reply["error"]["code"] == -32001, reply


def test_the_script_runs_the_whole_lesson_and_reports_it(tmp_path):
    require_program("redis-server")
    require_program("nginx")
    report = tmp_path / "report.json"
    result = run_script(SCRIPT, "--fast", "--report", str(report), timeout=90)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert library_noise(result.stdout + result.stderr) == []
    assert "Unclosed" not in result.stderr, "every HTTP stream is closed (aiohttp's warning otherwise)"
    facts = json.loads(report.read_text())
    assert facts["passed"] and facts["notes"] == []
    assert facts["services"]["redis"] and facts["services"]["nginx"]
    assert {c["round"] for c in facts["checks"]} == {"balance", "aggregate", "relay", "runner"}
    relay = facts["relay"]
    assert (relay["lost"], relay["duplicated"], relay["text_equals_stored"]) == (0, 0, True)
    assert relay["killed"] != relay["runner"]
    assert facts["runner"]["states"] == ["failed"] and "lease" in facts["runner"]["reason"]
    assert facts["balance"]["distinct_texts"] == facts["balance"]["streams"]
    assert_stopped(result.stdout, facts["services"])


def assert_stopped(output: str, services: dict) -> None:
    """No replica pid alive, nothing listening where redis-server and nginx were."""
    for pid in map(int, re.findall(r"pid (\d+) at", output)):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for url in services.values():
        host, port = url.split("://")[1].rsplit(":", 1)
        with pytest.raises(OSError):
            socket.create_connection((host, int(port)), timeout=1).close()


def test_sigterm_stops_every_child_process():
    require_program("redis-server")
    require_program("nginx")
    process = subprocess.Popen([sys.executable, str(ROOT / SCRIPT), "--fast"], cwd=ROOT, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "NO_COLOR": "1"})
    lines = []
    for line in process.stdout:  # until the first round: every child has started, streams are open
        lines.append(line)
        if "== balance" in line:
            break
    process.send_signal(signal.SIGTERM)
    output, errors = process.communicate(timeout=DEADLINE)
    assert process.returncode == 130, errors
    redis = re.search(r"log at (redis://\S+)", "".join(lines)).group(1)
    nginx = re.search(r"nginx at (http://\S+)", "".join(lines)).group(1)
    assert_stopped("".join(lines), {"redis": redis, "nginx": nginx})
    assert "Traceback" not in errors
