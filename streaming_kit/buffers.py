"""Buffers between a stream and its two ends (02 shows them at work).

DisplayBuffer (client side) shows arriving text only in whole words or lines; BackpressureBuffer
with buffered() (server side) bounds what a fast producer may run ahead of a slow stream: the
producer waits, nothing is dropped, and a client hang-up stops it.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, AsyncIterator, Optional


class DisplayBuffer:
    """Client side: re-chunks arriving text into whole words (or lines) for display.

    feed() returns the text that is safe to show now; the unfinished word waits for the next piece.
    A run longer than max_hold characters with no break (a URL, Chinese text) is shown anyway, so the
    screen never stalls.
    """

    def __init__(self, unit: str = "word", max_hold: int = 80):
        if unit not in ("word", "line"):
            raise ValueError(f"unit must be 'word' or 'line', got {unit!r}")
        self.unit, self.max_hold, self.pending = unit, max_hold, ""

    def feed(self, text: str) -> str:
        self.pending += text
        cut = self._last_break()
        if cut == 0 and len(self.pending) > self.max_hold:
            cut = len(self.pending)
        ready, self.pending = self.pending[:cut], self.pending[cut:]
        return ready

    def flush(self) -> str:
        """Whatever is left once the stream has ended."""
        ready, self.pending = self.pending, ""
        return ready

    def _last_break(self) -> int:
        if self.unit == "line":
            return self.pending.rfind("\n") + 1
        return re.search(r"\S*\Z", self.pending).start()  # just after the last whitespace


class BackpressureBuffer:
    """Server side: a bounded queue between a producer that pushes and a stream that pulls.

    put() waits while the buffer is full, so a fast producer is paused instead of piling up chunks
    in memory; nothing is ever dropped. Iterate over it to take items in order.
    """
    _END = object()

    def __init__(self, size: int = 8):
        self.size, self._queue = size, asyncio.Queue(maxsize=size)
        self.pauses = self.high_water = 0  # times the producer had to wait; most items ever held

    async def put(self, item: Any) -> None:
        if self._queue.full():
            self.pauses += 1  # the producer waits here until the stream takes an item
        await self._queue.put((item, None))
        self.high_water = max(self.high_water, self._queue.qsize())

    async def close(self, error: Optional[BaseException] = None) -> None:
        """No more items; the reader sees `error` (if any) after the items before it."""
        await self._queue.put((self._END, error))

    async def __aiter__(self) -> AsyncIterator[Any]:
        while (entry := await self._queue.get())[0] is not self._END:
            yield entry[0]
        if entry[1] is not None:
            raise entry[1]


async def buffered(source: AsyncIterator[Any], buffer: BackpressureBuffer) -> AsyncIterator[Any]:
    """Run `source` in its own task, filling `buffer`; yield from the buffer. Closing this generator
    (the client hung up) cancels the producer and closes `source`: use it inside contextlib.aclosing."""
    async def produce() -> None:
        try:
            async with contextlib.aclosing(source):  # an interrupted `async for` would leave it open
                async for item in source:
                    await buffer.put(item)
        except Exception as exc:  # hand the error to the reader, in order
            await buffer.close(exc)
        else:
            await buffer.close()

    producer = asyncio.ensure_future(produce())
    try:
        async for item in buffer:
            yield item
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
