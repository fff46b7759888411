"""The A2A JSON-RPC views every StreamingAgent serves (streaming_kit/tasks.py, a2a.py).

Every event and reply is checked against the official SDK's own types: a2a-sdk 1.3.0's protobuf
messages for v1.0 (json_format.ParseDict, unknown fields refused) and its v0.3 pydantic models.
"""
from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streaming_kit as kit
from conftest import post_json, read_sse
from google.protobuf.json_format import ParseDict
from a2a.client.card_resolver import parse_agent_card
from a2a.compat.v0_3 import types as v03
from a2a.types import a2a_pb2 as v10

TEXT_CHUNKS = ["Streams ", "arrive ", "in ", "order."]


class Words(kit.StreamingAgent):
    """Streams a fixed sentence, word by word."""

    async def stream_response(self, message):
        if kit.message_text(message) == "fail":
            yield "partial "
            raise RuntimeError("the agent broke")
        for chunk in TEXT_CHUNKS:
            await asyncio.sleep(0)
            yield chunk


class Slow(kit.StreamingAgent):
    """Streams one word every 50 ms, long enough to cancel or resubscribe in the middle."""

    async def stream_response(self, message):
        for i in range(40):
            await asyncio.sleep(0.05)
            yield f"w{i} "


@pytest.fixture(scope="module")
def url(serving):
    with serving(Words()) as base:
        yield base


@pytest.fixture(scope="module")
def slow_url(serving):
    with serving(Slow()) as base:
        yield base


def rpc(method: str, params: dict, rpc_id="r-1") -> dict:
    return {"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": params}


def v03_message(text: str, **extra) -> dict:
    return {"kind": "message", "messageId": "m-1", "role": "user", "parts": [{"kind": "text", "text": text}], **extra}


def v10_message(text: str, **extra) -> dict:
    return {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": text}], **extra}


V10 = {"A2A-Version": "1.0"}


def sse_data(url: str, body: dict, headers: dict | None = None) -> list[dict]:
    """The data of each event of the SSE reply (read_sse checks it is one: HTTP 200, text/event-stream)."""
    return [data for _, _, data in read_sse(url, body, headers)]


def v10_stream(url: str, text: str) -> list[dict]:
    envelopes = sse_data(url, rpc("SendStreamingMessage", {"message": v10_message(text)}), V10)
    return [envelope["result"] for envelope in envelopes]


def v03_stream(url: str, text: str) -> list[dict]:
    envelopes = sse_data(url, rpc("message/stream", {"message": v03_message(text)}))
    for envelope in envelopes:  # the SDK's own v0.3 model of a stream response accepts each one
        v03.SendStreamingMessageSuccessResponse.model_validate(envelope)
    return [envelope["result"] for envelope in envelopes]


# ---------------------------------------------------------------- shapes
def test_v10_stream_is_task_working_one_artifact_then_completed(url):
    results = v10_stream(url, "hello")
    for result in results:  # protobuf refuses unknown fields, wrong enums, a timestamp without a zone
        ParseDict(result, v10.StreamResponse())
    assert [next(iter(r)) for r in results] == ["task", "statusUpdate"] + ["artifactUpdate"] * 5 + ["statusUpdate"]
    assert results[0]["task"]["status"]["state"] == "TASK_STATE_SUBMITTED"
    assert results[1]["statusUpdate"]["status"]["state"] == "TASK_STATE_WORKING"
    assert results[-1]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
    pieces = [r["artifactUpdate"] for r in results if "artifactUpdate" in r]
    assert {p["artifact"]["artifactId"] for p in pieces} == {"answer"}
    assert [p["append"] for p in pieces] == [False, True, True, True, True]
    assert [p["lastChunk"] for p in pieces] == [False] * 4 + [True]
    assert "".join(p["artifact"]["parts"][0]["text"] for p in pieces) == "".join(TEXT_CHUNKS)
    assert all(r[next(iter(r))].get("status", {}).get("timestamp", "Z").endswith("Z") for r in results)


def test_v03_stream_ends_with_a_final_status(url):
    results = v03_stream(url, "hello")
    assert [r["kind"] for r in results] == ["task", "status-update"] + ["artifact-update"] * 5 + ["status-update"]
    assert [r["final"] for r in results if r["kind"] == "status-update"] == [False, True]
    assert results[-1]["status"]["state"] == "completed"
    assert "".join(r["artifact"]["parts"][0]["text"] for r in results if r["kind"] == "artifact-update") == \
        "".join(TEXT_CHUNKS)


@pytest.mark.parametrize("stream", [v03_stream, v10_stream], ids=["v0.3", "v1.0"])
def test_an_agent_error_fails_the_task_with_the_reason(url, stream):
    last = stream(url, "fail")[-1]
    status = last.get("status") or last["statusUpdate"]["status"]
    assert status["state"] in ("failed", "TASK_STATE_FAILED")
    assert "RuntimeError: the agent broke" in json.dumps(status["message"])


def test_send_get_and_cancel_in_both_versions(url, slow_url):
    status, _, reply = post_json(url, rpc("message/send", {"message": v03_message("hi")}))
    task = v03.SendMessageSuccessResponse.model_validate(reply).result
    assert task.status.state.value == "completed" and task.artifacts[0].parts[0].root.text == "".join(TEXT_CHUNKS)
    status, _, reply = post_json(url, rpc("GetTask", {"id": task.id}), V10)
    ParseDict(reply["result"], v10.Task())
    status, _, reply = post_json(slow_url, rpc("SendMessage", {"message": v10_message("go"),
                                                               "configuration": {"returnImmediately": True}}), V10)
    started = ParseDict(reply["result"], v10.SendMessageResponse()).task
    assert started.status.state in (v10.TASK_STATE_SUBMITTED, v10.TASK_STATE_WORKING)
    status, _, reply = post_json(slow_url, rpc("CancelTask", {"id": started.id}), V10)
    assert ParseDict(reply["result"], v10.Task()).status.state == v10.TASK_STATE_CANCELED
    status, _, reply = post_json(slow_url, rpc("tasks/cancel", {"id": started.id}))
    assert reply["error"]["code"] == -32002  # a finished task cannot be canceled


def test_resubscribe_with_last_event_id_gets_exactly_the_rest(slow_url):
    """A client that hangs up after some events loses nothing: resubscribe from its last seq."""
    first_six = read_sse(slow_url, rpc("message/stream", {"message": v03_message("go")}), stop_after=6)  # then hang up
    seen = [data["result"] for _, _, data in first_six]
    last_id = first_six[-1][1]
    task_id = seen[0]["id"]
    resubscribe = rpc("tasks/resubscribe", {"id": task_id})
    rest = [e["result"] for e in sse_data(slow_url, resubscribe, {"Last-Event-ID": last_id})]
    events = seen + rest
    pieces = [e for e in events if e["kind"] == "artifact-update"]
    assert "".join(p["artifact"]["parts"][0]["text"] for p in pieces) == "".join(f"w{i} " for i in range(40))
    assert events[-1]["status"]["state"] == "completed"
    v10_first = v10_resubscribe_first(slow_url, task_id)
    assert "task" in v10_first  # v1.0: SubscribeToTask starts with the Task as it stands (§3.1.6)


def v10_resubscribe_first(url: str, task_id: str) -> dict:
    return sse_data(url, rpc("SubscribeToTask", {"id": task_id}), V10)[0]["result"]


# ---------------------------------------------------------------- the card
def test_card_is_read_by_the_official_parser_with_both_interfaces(url):
    for path in ("/.well-known/agent-card.json", "/agent.json"):
        with urllib.request.urlopen(url + path, timeout=10) as response:
            card = json.loads(response.read())
        parsed = parse_agent_card(dict(card))
        assert {(i.protocol_binding, i.protocol_version, i.url) for i in parsed.supported_interfaces} == {
            ("JSONRPC", "1.0", url), ("JSONRPC", "0.3", url)}
        assert parsed.capabilities.streaming and parsed.skills
        v03.AgentCard.model_validate(card)  # and the v0.3 fields a 0.3 client reads
        assert card["url"] == url and card["preferredTransport"] == "JSONRPC"


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("body, headers, code", [
    (b"{not json", {}, -32700),
    (b"[]", {}, -32600),
    (b"{}", {}, -32600),
    (b'{"jsonrpc": "1.0", "method": "message/send"}', {}, -32600),
    (json.dumps(rpc("nope", {})).encode(), {}, -32601),
    (json.dumps(rpc("SendMessage", {})).encode(), {}, -32602),  # v1.0 method, v1.0 shape: no message
    (json.dumps(rpc("SendStreamingMessage", {"message": v10_message("x")})).encode(), {"A2A-Version": "2.0"}, -32009),
    (json.dumps(rpc("message/stream", {"message": v03_message("x")})).encode(), V10, -32601),  # 0.3 name in 1.0
    (json.dumps(rpc("tasks/get", {"id": "missing"})).encode(), {}, -32001),
    (json.dumps(rpc("tasks/get", {"id": 5})).encode(), {}, -32602),
    (json.dumps(rpc("message/stream", {"message": {"parts": "x"}})).encode(), {}, -32602),
    (json.dumps({"jsonrpc": "2.0", "id": {"an": "object"}, "method": "tasks/get", "params": {}}).encode(), {}, -32600),
])
def test_bad_requests_get_json_rpc_errors_with_http_200(url, body, headers, code):
    status, answer_headers, reply = post_json(url, body, headers)
    assert status == 200 and answer_headers["Content-Type"] == "application/json", reply
    assert reply["error"]["code"] == code, reply
    v03.JSONRPCErrorResponse.model_validate(reply)


@pytest.mark.parametrize("version", ["0.3", "1.0"])
def test_a_message_for_a_finished_task_is_an_error(url, version):
    if version == "0.3":
        task_id = v03_stream(url, "hi")[0]["id"]
        body, headers = rpc("message/stream", {"message": v03_message("again", taskId=task_id)}), {}
    else:
        task_id = v10_stream(url, "hi")[0]["task"]["id"]
        body, headers = rpc("SendStreamingMessage", {"message": v10_message("again", taskId=task_id)}), V10
    status, _, reply = post_json(url, body, headers)
    error = reply["error"]
    assert status == 200 and error["code"] == -32602 and "terminal state" in error["message"]


def test_python_a2a_clients_still_work(url):
    """python-a2a's own dialects are unchanged: /stream, POST / with a Message, tasks/sendSubscribe."""
    chunks = asyncio.run(collect(kit.StrictStreamingClient(url).stream_response("hi")))
    assert "".join(kit.chunk_text(c) for c in chunks) == "".join(TEXT_CHUNKS)
    status, _, reply = post_json(url + "/", kit.text_message("hi").to_dict())
    assert status == 200 and "".join(TEXT_CHUNKS) in json.dumps(reply)
    from python_a2a import Task
    task = Task(message=kit.text_message("hi").to_dict())
    updates = asyncio.run(collect(kit.TaskStreamingClient(url).tasks_send_subscribe(task)))
    assert kit.artifact_text(updates[-2].artifacts[0]) == "" and updates[-1].status.state.value == "completed"


async def collect(agen):
    return [item async for item in agen]


# ---------------------------------------------------------------- fuzz: never a 5xx
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=12)
methods = st.sampled_from(["message/stream", "message/send", "tasks/get", "tasks/cancel", "tasks/resubscribe",
                          "SendStreamingMessage", "SendMessage", "GetTask", "CancelTask", "SubscribeToTask",
                          "tasks/sendSubscribe", "", "x"]) | st.text(max_size=10)
rpc_bodies = st.fixed_dictionaries({"jsonrpc": st.sampled_from(["2.0", "1.0", 2]), "method": methods},
                                   optional={"id": json_values, "params": json_values | st.fixed_dictionaries(
                                       {}, optional={"id": json_values, "message": json_values,
                                                     "configuration": json_values})})


class TaskWords(kit.TaskStreamingAgent):
    """A task agent, fuzzed like the plain one."""

    async def run_task(self, message):
        yield kit.TaskUpdate.progress("one step", 1, 1)
        yield kit.TaskUpdate.chunk("out", "done", last_chunk=True)


@pytest.fixture(scope="module", params=[Words, TaskWords])
def any_agent_url(request, serving):
    with serving(request.param()) as base:
        yield base


python_a2a_bodies = (st.fixed_dictionaries({"content": json_values}, optional={"role": json_values})
                     | st.fixed_dictionaries({"messages": json_values})
                     | st.fixed_dictionaries({"parts": json_values, "role": json_values})
                     | st.fixed_dictionaries({"id": json_values, "message": json_values}))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=rpc_bodies | python_a2a_bodies | json_values, version=st.sampled_from([None, "0.3", "1.0", "9"]))
def test_fuzzed_json_rpc_bodies_never_get_a_5xx(any_agent_url, body, version):
    status, _, reply = post_json(any_agent_url, body, {"A2A-Version": version} if version else {})
    assert status < 500, reply  # and a JSON reply is valid JSON: post_json parses it
