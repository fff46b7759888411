"""core_streaming_test.py: the smoke harness passes on the kit and names what a broken server loses."""
import asyncio
import json
import os
import subprocess
import sys

import pytest

import streaming_kit as kit
from a2a_rig import start_official_agent
from conftest import library_noise, load_script, raw_sse_server, run_script, serve_script, stock_agent_class

harness = load_script("core_streaming_test.py")


def test_local_checklist_passes_on_this_machine():
    result = run_script("core_streaming_test.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "12 passed, 0 failed" in result.stdout
    for check in ("packages importable", "2000 chunks at zero delay", "long idle gap survives",
                  "agent error surfaces as an error", "client disconnect stops the agent", "bad input gets 4xx"):
        assert f"✓ {check}:" in result.stdout
    assert library_noise(result.stdout + result.stderr) == []


def test_json_output_is_machine_readable():
    result = run_script("core_streaming_test.py", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["passed"] is True
    assert len(report["checks"]) == 12 and all(check["ok"] for check in report["checks"])


def test_url_mode_passes_against_a_kit_agent_in_all_three_dialects():
    with kit.serve(harness.HarnessAgent()) as url:
        result = run_script("core_streaming_test.py", "--url", url, "--runs", "2", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout
    checks = {c["check"]: c for c in report["checks"]}
    assert all(c["ok"] and c["checked"] for c in report["checks"])
    for name in ("streams complete and in order", "A2A 1.0 streams complete", "A2A 0.3 streams complete",
                 "A2A 1.0 bad JSON-RPC gets an error", "A2A 0.3 resubscribe", "A2A 1.0 cancel"):
        assert name in checks


@pytest.mark.parametrize("mode, claimed", [("v1", {"1.0"}), ("v1-compat", {"1.0", "0.3"}), ("v03", {"0.3"})])
def test_url_mode_passes_against_official_agents_and_does_not_fail_what_they_do_not_claim(mode, claimed):
    with start_official_agent(mode) as (url, _):
        result = run_script("core_streaming_test.py", "--url", url, "--runs", "2", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = json.loads(result.stdout)["checks"]
    assert all(c["ok"] for c in checks)
    not_checked = {c["check"] for c in checks if not c["checked"]}
    assert not_checked == {f"A2A {v}" for v in {"1.0", "0.3"} - claimed} | {"python-a2a /stream"}
    for version in claimed:
        assert any(c["check"] == f"A2A {version} resubscribe" and c["checked"] for c in checks)


def test_url_mode_names_a_stream_that_ends_without_a_terminal_state():
    with start_official_agent("broken-no-terminal") as (url, _):
        result = run_script("core_streaming_test.py", "--url", url, "--runs", "1", "--json")
    assert result.returncode == 1
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    for version in ("1.0", "0.3"):
        streams = checks[f"A2A {version} streams complete"]
        assert not streams["ok"] and "without a terminal task state" in streams["detail"]


EXAMPLES = ["basic_streaming.py", "01_basic_streaming.py", "02_advanced_streaming.py",
            "03_streaming_llm_integration.py", "04_task_based_streaming.py"]


@pytest.mark.parametrize("script", EXAMPLES)
def test_url_mode_passes_against_every_example_agent(script):
    with serve_script(script) as server:
        assert server.url.startswith("http://127.0.0.1:"), server.url
        result = run_script("core_streaming_test.py", "--url", server.url, "--runs", "1", timeout=300)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("delay", [0.02, 0.0], ids=["paced agent", "zero-delay agent"])
def test_url_mode_fails_against_stock_python_a2a_and_names_the_loss(delay):
    with kit.serve(stock_agent_class()(delay)) as url:
        result = run_script("core_streaming_test.py", "--url", url, "--message", "6", "--json")
    assert result.returncode == 1
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    streams = checks["streams complete and in order"]
    assert not streams["ok"] and "without the lastChunk marker" in streams["detail"]
    assert not checks["bad input gets 4xx"]["ok"] and "→ 500" in checks["bad input gets 4xx"]["detail"]


def test_a_gap_in_the_middle_is_named_by_index():
    events = [f'data: {{"content": "c{i}", "index": {i}}}\n\n' for i in (0, 1, 3)]
    events.append('data: {"content": "", "index": 4, "lastChunk": true}\n\n')
    with raw_sse_server("".join(events)) as url:
        with pytest.raises(harness.CheckFailed, match=r"chunk #3 arrived where #2 was due: chunk #2 lost"):
            asyncio.run(harness.check_streams_complete(url, "hi", runs=2))


def test_unreachable_server_fails_every_check_with_a_reason():
    with kit.serve(harness.HarnessAgent()) as url:
        pass  # closed again
    result = run_script("core_streaming_test.py", "--url", url, "--runs", "1")
    assert result.returncode == 1
    assert "0 passed, 4 failed" in result.stdout
    assert "Connection refused" in result.stdout or "Cannot connect" in result.stdout


def test_a_url_with_no_streaming_endpoint_fails_bad_input_instead_of_passing_on_405():
    """405 and 404 are 4xx, but they refuse the path, not the body: that is no evidence of validation."""
    with kit.serve(harness.HarnessAgent()) as url:
        result = run_script("core_streaming_test.py", "--url", f"{url}/a2a", "--runs", "1", "--json")
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert result.returncode == 1
    assert not checks["bad input gets 4xx"]["ok"] and "no streaming endpoint here" in checks["bad input gets 4xx"]["detail"]


def test_a_missing_agent_card_is_named_by_its_status_not_a_json_error():
    with raw_sse_server("") as url:  # a server with /stream only
        with pytest.raises(harness.CheckFailed, match="answered HTTP 404"):
            asyncio.run(harness.check_agent_card(url))


def test_lines_appear_as_each_check_ends_and_a_closed_pipe_ends_quietly():
    process = subprocess.Popen([sys.executable, str(harness.__file__)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
    first = process.stdout.readline()  # arrives long before the whole checklist is done
    assert first.startswith(b"\xe2\x9c\x93 Python version") or first.startswith(b"PASS Python version")
    process.stdout.close()  # the reader goes away, as with `| head -1`
    assert process.wait(timeout=60) == 141
    assert b"Traceback" not in process.stderr.read()
