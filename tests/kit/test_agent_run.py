"""The server's hand-off from the agent (streaming_kit/server.py _AgentRun) when chunks arrive
right at the keep-alive boundary: a chunk handed over just as the idle wait times out (a ping is
sent instead) must still be sent next, not dropped."""
import asyncio

import pytest

import streaming_kit as kit


class BoundaryAgent(kit.StreamingAgent):
    """Chunks 1 ms apart, with the ping interval also 1 ms: many chunks land on the timeout."""

    keepalive_seconds = 0.001

    async def stream_response(self, message):
        for i in range(int(kit.message_text(message))):
            await asyncio.sleep(0.001)
            yield f"c{i} "


async def collect(url: str, n: int) -> list[dict]:
    return [chunk async for chunk in kit.StrictStreamingClient(url).stream_response(str(n))]


@pytest.mark.timeout(120)
def test_a_chunk_that_arrives_as_the_idle_wait_ends_is_not_lost(serving):
    with serving(BoundaryAgent()) as url:
        for _ in range(3):
            chunks = asyncio.run(collect(url, 300))
            assert "".join(kit.chunk_text(c) for c in chunks) == "".join(f"c{i} " for i in range(300))
            assert [c["index"] for c in chunks] == list(range(300))
