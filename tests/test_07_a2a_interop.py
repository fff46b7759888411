"""07_a2a_interop.py: the kit's agent to the official client, the official agent to the kit's client."""
import json

import pytest

from a2a_rig import start_official_agent
from conftest import library_noise, run_script, serve_script


def run_07(tmp_path, *args):
    report = tmp_path / "report.json"
    result = run_script("07_a2a_interop.py", *args, "--report", str(report))
    return result, (json.loads(report.read_text()) if report.exists() else None)


def test_the_demo_streams_both_ways_over_both_versions(tmp_path):
    result, report = run_07(tmp_path, "--fast")
    assert result.returncode == 0, result.stdout + result.stderr
    pairs = {(row["client"], row["agent"], row["protocol"]) for row in report["rows"]}
    assert pairs == {("a2a-sdk 1.3.0", "kit (python-a2a)", "1.0"), ("a2a-sdk 1.3.0", "kit (python-a2a)", "0.3"),
                     ("kit", "a2a-sdk 1.3.0", "1.0"), ("kit", "a2a-sdk 1.3.0", "0.3")}
    assert all(row["ok"] and row["state"] == "completed" for row in report["rows"])
    assert len({row["text"] for row in report["rows"]}) == 1  # the same answer, whichever side served it
    assert "Verdict: 4 client/agent pairs" in result.stdout
    assert library_noise(result.stdout + result.stderr) == []


@pytest.mark.parametrize("mode, versions", [("v1", {"1.0"}), ("v1-compat", {"1.0", "0.3"}), ("v03", {"0.3"})])
def test_url_runs_both_clients_against_an_official_agent(tmp_path, mode, versions):
    with start_official_agent(mode, chunks=4) as (url, _):
        result, report = run_07(tmp_path, "--url", url)
    assert result.returncode == 0, result.stdout + result.stderr
    official = {row["protocol"] for row in report["rows"] if row["client"] == "a2a-sdk 1.3.0"}
    kit_rows = [row for row in report["rows"] if row["client"] == "kit"]
    assert official == versions and len(kit_rows) == 1 and kit_rows[0]["chunks"] == 4
    assert kit_rows[0]["protocol"] == ("1.0" if "1.0" in versions else "0.3")


def test_url_against_a_stream_without_a_terminal_state_fails_and_says_which_client_noticed(tmp_path):
    with start_official_agent("broken-no-terminal", chunks=3) as (url, _):
        result, report = run_07(tmp_path, "--url", url)
    assert result.returncode == 1
    kit_row = next(row for row in report["rows"] if row["client"] == "kit")
    assert kit_row["state"] == "raised StreamTruncatedError" and "without a terminal task state" in kit_row["error"]
    assert all(row["state"] == "working" for row in report["rows"] if row["client"] != "kit")  # they accept it


def test_serve_then_url_from_another_process(tmp_path):
    with serve_script("07_a2a_interop.py", "--fast") as server:
        assert server.name == "Interop agent" and server.url.startswith("http://127.0.0.1:"), server.url
        result, report = run_07(tmp_path, "--url", server.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [row["protocol"] for row in report["rows"]] == ["1.0", "0.3", "python-a2a"]


def test_url_of_nothing_is_one_short_line(tmp_path):
    result, _ = run_07(tmp_path, "--url", "http://127.0.0.1:1")
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error:")


def test_bad_arguments_exit_2():
    assert run_script("07_a2a_interop.py", "--url", "not-a-url").returncode == 2
