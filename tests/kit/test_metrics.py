"""streaming_kit/metrics.py: per-agent Prometheus metrics, scraped from a real server's /metrics, on both
serving paths (serve() passes frames through track(), serve_asgi through track_async())."""
import asyncio
import json
import threading
import urllib.request

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

import streaming_kit as kit
from streaming_kit.metrics import TASK_END, V03_END, StreamMetrics, metrics_for
from conftest import eventually


class MeteredAgent(kit.StreamingAgent):
    """metrics = True: each /stream response passes through track(), /metrics is served.

    "n" streams n chunks; "fail" one chunk then an error; "hold" one chunk, then waits for release."""

    keepalive_seconds = 0.02  # pings while it holds, so the test sees that pings are not chunks
    metrics = True

    def __init__(self, name: str = "metered"):
        super().__init__(name=name)
        self.release = threading.Event()

    async def stream_response(self, message):
        text = kit.message_text(message)
        yield "c0 "
        if text == "fail":
            raise RuntimeError("the agent broke")
        if text == "hold":
            while not self.release.is_set():  # polled, so a hang-up can cancel it
                await asyncio.sleep(0.01)
            return
        for i in range(1, int(text)):
            yield f"c{i} "


def scrape(url: str) -> dict:
    """GET /metrics, parsed: {sample name with labels: value}."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()) if k != "le")
            if "le" not in sample.labels:
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def stream(url: str, text: str) -> list[dict]:
    return [chunk async for chunk in kit.StrictStreamingClient(url).stream_response(text)]


@pytest.fixture
def metered(serving):
    agent = MeteredAgent()
    with serving(agent) as url:
        yield agent, url


def test_complete_streams_are_counted_with_their_latencies(metered):
    _, url = metered
    for _ in range(3):
        assert len(asyncio.run(stream(url, "5"))) == 5
    # the client has the end marker a moment before the server's generator finishes: wait for that
    assert eventually(lambda: scrape(url)["a2a_streams_open"] == 0, seconds=5)
    m = scrape(url)
    assert m["a2a_streams_started_total"] == m["a2a_streams_completed_total"] == 3
    assert m["a2a_chunks_sent_total"] == 15
    assert m["a2a_first_chunk_seconds_count"] == 3 and m["a2a_chunk_gap_seconds_count"] == 12
    assert m['a2a_streams_failed_total{reason="error"}'] == m['a2a_streams_failed_total{reason="disconnected"}'] == 0
    assert m["a2a_streams_open"] == 0


def test_an_agent_error_counts_as_a_failed_stream(metered):
    _, url = metered
    with pytest.raises(kit.A2AStreamingError):
        asyncio.run(stream(url, "fail"))
    m = scrape(url)
    assert m['a2a_streams_failed_total{reason="error"}'] == 1
    assert m["a2a_streams_completed_total"] == 0 and m["a2a_chunks_sent_total"] == 1


def test_an_open_stream_shows_and_pings_are_not_chunks(metered):
    agent, url = metered

    async def hold_until_pinged() -> tuple[float, list[bytes]]:
        open_while_held, lines = None, []
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/stream", json={"content": {"type": "text", "text": "hold"}}) as response:
                async for line in response.content:
                    lines.append(line)
                    if line.startswith(b": ping") and open_while_held is None:
                        open_while_held = (await asyncio.to_thread(scrape, url))["a2a_streams_open"]
                        agent.release.set()
        return open_while_held, lines
    open_while_held, lines = asyncio.run(hold_until_pinged())
    assert open_while_held == 1 and b'"lastChunk": true' in lines[-2]
    m = scrape(url)
    assert m["a2a_chunks_sent_total"] == 1 and m["a2a_streams_completed_total"] == 1 and m["a2a_streams_open"] == 0


def test_a_client_that_hangs_up_counts_as_disconnected(metered):
    agent, url = metered

    async def hang_up_after_first_chunk():
        async for _ in kit.StrictStreamingClient(url).stream_response("hold"):
            return  # closes the connection while the agent holds
    asyncio.run(hang_up_after_first_chunk())
    assert eventually(lambda: scrape(url)['a2a_streams_failed_total{reason="disconnected"}'] == 1)
    assert scrape(url)["a2a_streams_open"] == 0
    agent.release.set()


def test_two_agents_in_one_process_count_apart(serving):
    first, second = MeteredAgent("first"), MeteredAgent("second")
    with serving(first) as url_a, serving(second) as url_b:
        for url in (url_a, url_a, url_b):
            asyncio.run(stream(url, "2"))
        assert scrape(url_a)["a2a_streams_started_total"] == 2
        assert scrape(url_b)["a2a_streams_started_total"] == 1


def a2a_stream(url: str, path: str, method: str, text: str) -> bytes:
    """One A2A task stream (v0.3 message/stream on POST /, or python-a2a's tasks/sendSubscribe), read to its end."""
    message = {"kind": "message", "messageId": "m-1", "role": "user", "parts": [{"kind": "text", "text": text}]}
    if method == "tasks/sendSubscribe":
        message = {"role": "user", "content": {"type": "text", "text": text}}
    params = {"message": message} if method == "message/stream" else {"id": "t-1", "message": message}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(f"{url}{path}", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        return answer.read()


@pytest.mark.parametrize("path, method", [("/", "message/stream"), ("/tasks/stream", "tasks/sendSubscribe")])
def test_a2a_task_streams_count_like_stream_ones(metered, path, method):
    _, url = metered
    asyncio.run(stream(url, "2"))  # and one /stream, so both kinds add up on one agent
    raw = a2a_stream(url, path, method, "3")
    assert eventually(lambda: scrape(url)["a2a_streams_open"] == 0, seconds=5)
    m = scrape(url)
    assert m["a2a_streams_started_total"] == m["a2a_streams_completed_total"] == 2, raw
    # the /stream's 2, and the task's 6 events before its final one: the task (or submitted), working,
    # 3 artifact chunks and the closing lastChunk
    assert m["a2a_chunks_sent_total"] == 2 + 6
    assert m['a2a_streams_failed_total{reason="disconnected"}'] == 0


@pytest.mark.parametrize("end_marker, final_frame", [
    (TASK_END, 'event: complete\nid: 3\ndata: {"status": {"state": "completed"}}\n\n'),
    (V03_END, 'id: 3\ndata: {"result": {"kind": "status-update", "final": true}}\n\n'),
])
def test_task_streams_complete_on_their_own_final_event(end_marker, final_frame):
    metrics = StreamMetrics()
    frames = [": stream open\n\n", 'id: 0\ndata: {"chunk": 1}\n\n', ": ping\n\n", 'id: 1\ndata: {}\n\n', final_frame]
    assert list(metrics.track(frames, end_marker=end_marker)) == frames
    assert metrics.registry.get_sample_value("a2a_streams_completed_total") == 1
    assert metrics.registry.get_sample_value("a2a_chunks_sent_total") == 2
    list(metrics.track(frames[:2], end_marker=end_marker))  # stopped before its final event
    assert metrics.registry.get_sample_value("a2a_streams_failed_total", {"reason": "disconnected"}) == 1
