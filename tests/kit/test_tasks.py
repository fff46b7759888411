"""The task engine (streaming_kit/tasks.py): bounded, and no thread waits for a client that left."""
from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest

import streaming_kit as kit
from conftest import eventually, post_json
from streaming_kit.tasks import MemoryTaskLog


class Stalls(kit.TaskStreamingAgent):
    """Reports one step, then waits for a source that never answers (only a cancel ends it)."""

    async def run_task(self, message):
        yield kit.TaskUpdate.progress("waiting for a source", 1, 2)
        await asyncio.sleep(300)
        yield kit.TaskUpdate.chunk("out", "never", last_chunk=True)


class Quick(kit.StreamingAgent):
    """Answers with the prompt, in one chunk."""

    async def stream_response(self, message):
        yield kit.message_text(message)


def send_subscribe(port: int, text: str) -> socket.socket:
    """Start a task over message/stream, read until its first event arrived, keep the socket open."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message/stream",
                       "params": {"message": {"kind": "message", "messageId": "m", "role": "user",
                                              "parts": [{"kind": "text", "text": text}]}}}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (port, len(body), body))
    received = b""
    while b"data: " not in received:
        received += sock.recv(65536)
    assert received.startswith(b"HTTP/1.1 200")
    return sock


def rpc(url: str, method: str, params: dict) -> dict:
    return post_json(f"{url}/", {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})[2]


@pytest.mark.timeout(60)
def test_clients_that_leave_free_their_threads_and_the_tasks_go_on():
    """200 subscribers hang up mid-task: their request threads end within seconds (the stock server and
    the kit before the task loop held a thread per task until it ended), and each task stays resumable."""
    agent = Stalls()
    with kit.serve(agent) as url:
        port = int(url.rsplit(":", 1)[1])
        baseline = threading.active_count()
        connections = [send_subscribe(port, f"task {i}") for i in range(200)]
        assert threading.active_count() >= baseline + 150  # one request thread per open stream
        for connection in connections:
            connection.close()
        assert eventually(lambda: threading.active_count() <= baseline + 2, seconds=10), threading.active_count()
        assert len(agent.task_engine.running) == 200  # hanging up does not cancel: the tasks can be rejoined
        agent.close_streams("test over")


@pytest.mark.timeout(60)
def test_running_tasks_are_bounded_with_503_and_retry_after():
    agent = Stalls()
    agent.max_running_tasks = 3
    with kit.serve(agent) as url:
        port = int(url.rsplit(":", 1)[1])
        connections = [send_subscribe(port, f"task {i}") for i in range(3)]
        body = {"jsonrpc": "2.0", "id": 9, "method": "message/send",
                "params": {"message": {"kind": "message", "messageId": "m", "role": "user",
                                       "parts": [{"kind": "text", "text": "one too many"}]}}}
        status, headers, reply = post_json(f"{url}/", body)
        assert status == 503 and headers["Retry-After"] == "1"
        assert "busy" in reply["error"]["message"]
        for c in connections:
            c.close()
        agent.close_streams("test over")


@pytest.mark.timeout(60)
def test_finished_tasks_are_kept_bounded_then_answer_task_not_found():
    agent = Quick()
    agent.task_log = MemoryTaskLog(max_finished=5)
    with kit.serve(agent) as url:
        ids = []
        for i in range(12):
            reply = rpc(url, "message/send", {"message": {"kind": "message", "messageId": f"m{i}", "role": "user",
                                                           "parts": [{"kind": "text", "text": "x" * 1000}]}})
            ids.append(reply["result"]["id"])
        assert all("result" in rpc(url, "tasks/get", {"id": task_id}) for task_id in ids[-5:])
        expired = rpc(url, "tasks/get", {"id": ids[0]})
        assert expired["error"]["code"] == -32001 and "expired" in expired["error"]["message"]
        resubscribe = rpc(url, "tasks/resubscribe", {"id": ids[0]})
        assert resubscribe["error"]["code"] == -32001


@pytest.mark.timeout(60)
def test_a_client_that_sends_extra_bytes_is_still_seen_leaving():
    """One byte after the request used to switch hang-up detection off; the subscriber must still go."""
    agent = Stalls()
    with kit.serve(agent) as url:
        port = int(url.rsplit(":", 1)[1])
        before = set(threading.enumerate())
        connection = send_subscribe(port, "extra bytes")
        connection.sendall(b"x")
        serving_it = set(threading.enumerate()) - before  # the request thread of this stream
        assert serving_it
        connection.close()
        assert eventually(lambda: not any(thread.is_alive() for thread in serving_it), seconds=5)
        agent.close_streams("test over")
