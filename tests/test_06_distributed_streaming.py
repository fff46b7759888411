"""Tests for 06_distributed_streaming.py: real replica processes, balancing, fan-out, failover, gunicorn."""
from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, library_noise, load_script, run_script

SCRIPT = "06_distributed_streaming.py"
demo = load_script(SCRIPT)


def reference_text(prompt: str) -> str:
    """What an uninterrupted answer must be, computed without any server."""
    return "".join(demo.answer_line(prompt, i) for i in range(demo.CHUNKS))


def is_gone(pid: int) -> bool:
    """True once no process has this pid (reaped, not a zombie or an orphan)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_gone(pids, seconds: float = 10) -> list[int]:
    """The pids still alive after the deadline (a reparented orphan is reaped by init quickly)."""
    deadline = time.monotonic() + seconds
    while (alive := [p for p in pids if not is_gone(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def as_replicas(processes) -> list:
    """Balancer entries with zeroed metrics over running replica processes."""
    return [demo.Replica(f"replica-{i + 1}", p.url, p) for i, p in enumerate(processes)]


def assert_reaped(processes) -> None:
    running = [p for p in processes if p.process.poll() is None]
    for p in running:  # clean up what a defect left behind, then fail
        p.process.kill()
        p.process.wait()
    assert running == [], "replica processes left running"


@pytest.fixture(scope="module")
def shared_processes():
    """Three replica processes (fast pacing) for the tests that leave them intact."""
    with demo.replica_processes(3, fast=True) as processes:
        yield processes
    assert_reaped(processes)


@pytest.fixture
def replicas(shared_processes):
    return as_replicas(shared_processes)


@pytest.fixture
def fresh_replicas():
    """Two replica processes of the test's own: it kills or freezes one of them."""
    with demo.replica_processes(2, fast=True) as processes:
        yield as_replicas(processes)
    assert_reaped(processes)


def quiet_balancer(replicas, strategy="round-robin") -> "demo.Balancer":
    balancer = demo.Balancer(replicas, strategy)
    balancer.log = lambda line: None
    return balancer


# ---------------------------------------------------------------- the script as a user runs it
@pytest.mark.timeout(120)
def test_fast_run_passes_every_check_and_leaves_no_process(tmp_path):
    report = tmp_path / "metrics.json"
    result = run_script(SCRIPT, "--fast", "--report", str(report))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "failover after chunk 7: 0 lost, 0 duplicated, text identical" in result.stdout
    assert "FAIL" not in result.stdout and result.stdout.count("PASS") == 9
    assert re.search(r"served by: (replica-\d )+", result.stdout)
    assert "[replica-3] ended early after 4 chunks" in result.stdout  # the frozen source, cut by its timeout
    assert library_noise(output) == [] and result.stderr == ""
    document = json.loads(report.read_text())
    assert document["passed"] is True and len(document["replicas"]) == 3
    assert all(r["requests"] > 0 and r["chunks"] > 0 and r["first_chunk_ms_p95"] for r in document["replicas"])
    pids = {int(p) for p in re.findall(r"pid (\d+)", result.stdout)}
    assert len(pids) == 4  # three replicas and the restarted one
    assert wait_gone(pids) == [], "orphan replica processes"


def default_signals() -> None:
    """A shell's background job inherits SIGINT ignored; a user's Ctrl-C is not ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_stops_every_replica(stop_signal, tmp_path):
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    # stderr to a file: replicas inherit it, so a pipe would stay open as long as an orphan lives.
    with open(tmp_path / "stderr", "w+") as err_file:
        script = subprocess.Popen([sys.executable, str(ROOT / SCRIPT)], cwd=ROOT, env=env, text=True,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err_file,
                                  preexec_fn=default_signals)
        lines = []
        while "== single" not in "".join(lines):  # replicas are up once the first mode starts
            ready, _, _ = select.select([script.stdout], [], [], 30)
            assert ready, "the demo did not start"
            lines.append(script.stdout.readline())
        script.send_signal(stop_signal)
        script.wait(timeout=30)
        script.stdout.close()
        err_file.seek(0)
        err = err_file.read()
    pids = [int(p) for p in re.findall(r"pid (\d+)", "".join(lines))]
    orphans = wait_gone(pids)
    for pid in orphans:  # clean up what a defect left behind, then fail
        os.kill(pid, signal.SIGKILL)
    assert orphans == [], "the interrupted demo left replica processes behind"
    assert script.returncode == 130 and len(pids) == 3, "".join(lines) + err
    assert "Traceback" not in err and "ignored SIGTERM" not in err


def test_bad_arguments_exit_2(capsys):
    for argv in (["--replicas", "1"], ["--url", "localhost:8106"], ["--mode", "chaos"],
                 ["--url", "http://127.0.0.1:1", "--mode", "failover"], ["--source-timeout", "0"],
                 ["--source-timeout", "nan"], ["--source-timeout", "inf"], ["--source-timeout", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            demo.main(argv)
        assert exit_info.value.code == 2, argv
    err = capsys.readouterr().err
    assert "needs replicas this script starts" in err and "expected a number of seconds above 0, got 'nan'" in err


@pytest.fixture
def overloaded_url():
    """A server that looks healthy (GET /agent.json: 200) but refuses every stream (HTTP 503)."""
    from flask import Flask
    from werkzeug.serving import make_server
    app = Flask("overloaded")

    @app.get("/agent.json")
    def card():
        return {"name": "overloaded"}

    @app.post("/stream")
    def refuse():
        return {"error": "overloaded, try later"}, 503

    server = make_server("127.0.0.1", 0, app, threaded=True)  # bound here: connections queue until served
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.mark.timeout(30)
def test_replica_refusing_every_stream_ends_in_a_clear_fail(overloaded_url, capsys, caplog):
    """Every mode fails with the server's reason shown; none hangs, none leaves a traceback."""
    assert demo.main(["--url", overloaded_url]) == 1
    captured = capsys.readouterr()
    assert 'HTTP 503 from ' + overloaded_url + '/stream: {"error":"overloaded, try later"}' in captured.out
    assert "the busy stream ended before its first chunk" in captured.out
    assert "PASS" not in captured.out and captured.out.count("FAIL") == 4
    assert "Traceback" not in captured.err and "never retrieved" not in caplog.text


@pytest.mark.timeout(30)
def test_unreachable_urls_give_a_clear_error(capsys):
    assert demo.main(["--url", "http://127.0.0.1:1", "--mode", "single"]) == 1
    assert "no replica answers GET /agent.json: http://127.0.0.1:1" in capsys.readouterr().err


def test_url_can_be_given_several_times():
    args = demo.build_parser().parse_args(["--url", "http://127.0.0.1:8106/", "--url", "http://127.0.0.1:8107"])
    assert args.url == ["http://127.0.0.1:8106", "http://127.0.0.1:8107"]


# ---------------------------------------------------------------- the parts, against real processes
@pytest.mark.timeout(60)
def test_url_mode_balances_over_running_replicas_and_judges_only_healthy_ones(replicas, capsys):
    urls = [replicas[0].url, "http://127.0.0.1:1", replicas[1].url]  # the second one is down
    assert demo.main([a for url in urls for a in ("--url", url)] + ["--mode", "balance"]) == 0
    out = capsys.readouterr().out
    assert "(replica-2 down: skipped, and judged over the 2 healthy replicas)" in out
    assert "served by: replica-1 replica-3 replica-1 replica-3" in out and "skipping the kill-and-restart" in out


@pytest.mark.timeout(60)
def test_round_robin_takes_each_replica_in_turn(replicas):
    balancer = quiet_balancer(replicas)
    results = asyncio.run(demo.spread(balancer, "hello", 6))
    served = [r.served_by[0] for r in results]
    assert served == ["replica-1", "replica-2", "replica-3"] * 2
    assert all(r.text == reference_text(f"hello #{i}") for i, r in enumerate(results))
    assert [r.requests for r in replicas] == [2, 2, 2]


@pytest.mark.timeout(60)
def test_least_active_avoids_the_busy_replica(replicas):
    balancer = quiet_balancer(replicas, "least-active")
    check = asyncio.run(demo.least_active_round(balancer, "hello"))
    assert check.ok and replicas[0].peak_active == 1


@pytest.mark.timeout(60)
def test_dead_replica_is_skipped_then_back_after_restart(fresh_replicas):
    balancer = quiet_balancer(fresh_replicas)
    dead = fresh_replicas[1]
    dead.process.kill()

    async def scenario():
        await balancer.check_health()
        during = await demo.spread(balancer, "hi", 4)
        await asyncio.to_thread(dead.process.restart)
        await balancer.check_health()
        after = await demo.spread(balancer, "hi", 2)
        return during, after

    during, after = asyncio.run(scenario())
    assert all(r.served_by[0] != "replica-2" and r.complete for r in during)
    assert dead.healthy and sorted(r.served_by[0] for r in after) == ["replica-1", "replica-2"]


@pytest.mark.timeout(60)
def test_aggregation_gets_every_source_concurrently_each_in_order(replicas):
    balancer = quiet_balancer(replicas)
    arrivals = []
    parts = asyncio.run(demo.fan_out(balancer, replicas, "topic", 10.0,
                                     lambda replica, chunk: arrivals.append((replica.name, chunk["index"]))))
    assert list(parts) == ["replica-1", "replica-2", "replica-3"]
    for position, (name, (result, status)) in enumerate(parts.items()):
        assert status == "complete" and result.indices == list(range(demo.CHUNKS))
        assert result.text == reference_text(f"topic (part {position + 1} of 3)")
        assert [i for n, i in arrivals if n == name] == list(range(demo.CHUNKS))
    # Merged as they arrive: every source had started before any source finished.
    last_of_first_finisher = min(max(i for i, a in enumerate(arrivals) if a[0] == n) for n in parts)
    assert all(any(a[0] == n for a in arrivals[:last_of_first_finisher]) for n in parts)


@pytest.mark.timeout(60)
def test_stuck_source_is_cut_by_its_timeout_without_stalling_others(fresh_replicas):
    balancer = quiet_balancer(fresh_replicas)
    stuck = fresh_replicas[1]

    def freeze_second(replica, chunk):
        if replica is stuck and chunk["index"] == 1:
            stuck.process.freeze()

    try:
        parts = asyncio.run(demo.fan_out(balancer, fresh_replicas, "topic", 1.0, freeze_second))
    finally:
        stuck.process.thaw()
    assert [parts[r.name][0].complete for r in fresh_replicas] == [True, False]
    assert parts["replica-2"][0].indices == [0, 1] and "no data" in parts["replica-2"][1]
    assert [c.ok for c in demo.aggregate_checks(parts, stuck)] == [True, True]


def failover_run(replicas, prompt="failover please"):
    """A stream whose serving replica is SIGKILLed right after chunk KILL_AFTER_CHUNK."""
    balancer = quiet_balancer(replicas)
    killed = []

    def kill_mid_stream(replica, chunk):
        if chunk["index"] == demo.KILL_AFTER_CHUNK and not killed:
            replica.process.kill()
            killed.append(replica.process.pid)

    result = asyncio.run(demo.stream_with_failover(balancer, prompt, kill_mid_stream))
    reference = demo.StreamResult(prompt, indices=list(range(demo.CHUNKS)), texts=[reference_text(prompt)])
    return result, reference, killed


@pytest.mark.timeout(60)
def test_failover_after_a_real_kill_loses_and_duplicates_nothing(fresh_replicas):
    result, reference, killed = failover_run(fresh_replicas)
    assert killed and is_gone(killed[0])
    assert result.served_by == ["replica-1", "replica-2"] and result.failovers[0][1] >= demo.KILL_AFTER_CHUNK
    assert result.indices == list(range(demo.CHUNKS)) and result.text == reference.text
    assert all(c.ok for c in demo.failover_checks(result, reference, killed))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("defect, symptom", [(lambda held: None, "duplicated"), (lambda held: held + 1, "lost")],
                         ids=["resume-from-0", "resume-one-too-far"])
def test_failover_check_fails_on_a_wrong_resume_point(fresh_replicas, monkeypatch, defect, symptom):
    honest_stream = demo.Balancer.stream

    def broken_resume(self, replica, prompt, after_index=None, **kwargs):
        wrong = defect(after_index) if after_index is not None else None
        return honest_stream(self, replica, prompt, after_index=wrong, **kwargs)

    monkeypatch.setattr(demo.Balancer, "stream", broken_resume)
    result, reference, killed = failover_run(fresh_replicas)
    assert getattr(result, symptom) > 0
    assert [c.ok for c in demo.failover_checks(result, reference, killed)] == [True, False]


def test_lost_and_duplicated_counts():
    assert (demo.StreamResult("", indices=[0, 1, 2, 1, 2, 3]).duplicated,
            demo.StreamResult("", indices=[0, 1, 3, 4]).lost) == (2, 1)
    assert [demo.percentile([5.0, 1.0, 3.0, 2.0, 4.0], q) for q in (50, 95)] == [3.0, 4.8]
    assert demo.percentile([7.0], 95) == 7.0 and demo.percentile([], 95) is None


# ---------------------------------------------------------------- the production path
@pytest.mark.timeout(60)
def test_gunicorn_threaded_workers_stream_complete_and_in_order():
    command = [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "4", "-w", "2",
               "-b", "127.0.0.1:0", "--chdir", str(ROOT), "06_distributed_streaming:create_wsgi_app(fast=True)"]
    server = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        url = gunicorn_url(server)
        replicas = [demo.Replica("gunicorn", url)]
        results = asyncio.run(demo.spread(quiet_balancer(replicas), "via gunicorn", 4))  # 4 at once
        assert all(r.complete and not r.failovers for r in results)
        assert [r.text for r in results] == [reference_text(f"via gunicorn #{i}") for i in range(4)]
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stderr.close()
    assert server.returncode == 0


def gunicorn_url(server: subprocess.Popen) -> str:
    """gunicorn logs "Listening at: http://H:P (pid)" on stderr once the socket is bound."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([server.stderr], [], [], 1)
        line = server.stderr.readline() if ready else ""
        if match := re.search(r"Listening at: (http://\S+)", line):
            return match.group(1)
        assert server.poll() is None, "gunicorn exited"
    raise AssertionError("gunicorn did not start")
