"""Small stream utilities any bridge to another SDK needs."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator


async def each_event(events: Any) -> AsyncIterator[Any]:
    """Iterate an async stream, or a blocking iterator (boto3's EventStream) in a thread, so a
    provider that blocks between events never blocks the event loop every stream shares."""
    if hasattr(events, "__aiter__"):
        async for event in events:
            yield event
        return
    iterator, done = iter(events), object()
    while (event := await asyncio.to_thread(next, iterator, done)) is not done:
        yield event
