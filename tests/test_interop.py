"""Official A2A clients (a2a-sdk 1.3.0 over v1.0 and v0.3, a2a-sdk 0.3.26) stream from every example agent.

Each script is started as a user starts it (`--serve --port 0`, its own process); each official
client runs in its own process too (the two SDK generations cannot share one environment).
"""
from __future__ import annotations

import pytest

from a2a_rig import run_official_client
from conftest import serve_script

SCRIPTS = ["basic_streaming.py", "01_basic_streaming.py", "02_advanced_streaming.py",
           "03_streaming_llm_integration.py", "04_task_based_streaming.py", "05_streaming_ui_integration.py",
           "06_distributed_streaming.py"]
CLIENTS = [("1.3", "1.0"), ("1.3", "0.3"), ("0.3", "0.3")]


@pytest.fixture(scope="module", params=SCRIPTS)
def served(request):
    """A script's agent, served by the script itself."""
    with serve_script(request.param, "--fast") as server:
        yield request.param, server.url


def check_whole_stream(result: dict) -> None:
    assert result["error"] is None, result["error"]
    assert result["final_state"] == "completed", result["events"][-3:]
    pieces = [e for e in result["events"] if e["type"] == "artifact"]
    assert pieces, "no artifact chunks arrived"
    by_artifact: dict[str, list[dict]] = {}
    for piece in pieces:
        by_artifact.setdefault(piece["artifactId"], []).append(piece)
    for chunks in by_artifact.values():  # each artifact: starts fresh, then appends, last one says so
        assert [c["append"] for c in chunks] == [False] + [True] * (len(chunks) - 1)
        assert [bool(c["lastChunk"]) for c in chunks][-1] is True
    assert result["text"], "the artifacts were empty"
    assert result["task_after"]["text"] == result["text"]  # what arrived is what the agent stored


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sdk, protocol", CLIENTS, ids=["1.3.0 v1.0", "1.3.0 v0.3", "0.3.26"])
def test_official_client_streams_the_whole_answer(served, sdk, protocol):
    script, url = served
    result = run_official_client(url, sdk=sdk, protocol=protocol, text="Tell me about streaming.")
    check_whole_stream(result)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sdk, protocol", CLIENTS, ids=["1.3.0 v1.0", "1.3.0 v0.3", "0.3.26"])
def test_official_client_resubscribes_and_cancels_on_the_task_agent(sdk, protocol):
    with serve_script("04_task_based_streaming.py") as server:
        resumed = run_official_client(server.url, sdk=sdk, protocol=protocol, text="Write a report.",
                                      drop_after=1, resubscribe=True)
        check_whole_stream(resumed)
        assert any(e["source"] == "resubscribe" for e in resumed["events"])
        canceled = run_official_client(server.url, sdk=sdk, protocol=protocol, text="Write a report.", cancel_after=1)
        assert canceled["error"] is None and canceled["cancel"]["state"] == "canceled", canceled["cancel"]
        assert canceled["final_state"] == "canceled"
