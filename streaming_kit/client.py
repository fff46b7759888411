"""The client side: StrictStreamingClient raises where python-a2a's client loses data quietly (§10-§14)."""
from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any, AsyncIterator, Callable, Optional, Union

import aiohttp
from . import patches  # noqa: F401
from .messages import StreamTruncatedError, chunk_text, text_message
from python_a2a import A2AConnectionError, A2AResponseError, A2AStreamingError, Message, StreamingClient


class StrictStreamingClient(StreamingClient):
    """StreamingClient that raises instead of silently re-sending or truncating (§10–§14).

    `timeout` is an idle limit (no bytes for that long), not a cap on the whole stream.
    Yields content chunks ({"content", "index", "append"}) and stops at lastChunk. To leave a
    stream early and hang up at once, iterate inside `contextlib.aclosing(client.stream_response(...))`.
    """

    def __init__(self, url: str, headers: Optional[dict] = None, timeout: float = 60.0,
                 connect_timeout: float = 10.0):
        super().__init__(url, headers=headers, timeout=timeout)
        self.connect_timeout = connect_timeout

    def _create_session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout, sock_read=self.timeout)
        return aiohttp.ClientSession(headers=self.headers, timeout=timeout)

    async def send_message_async(self, message: Union[Message, str]) -> Message:
        """Non-streaming request; raises A2AConnectionError instead of returning "Error: ..." text."""
        message = text_message(message) if isinstance(message, str) else message
        try:
            async with self._create_session() as session:
                async with session.post(self.url, json=message.to_dict()) as response:
                    await _raise_for_status(response, self.url)
                    return Message.from_dict(await response.json(content_type=None))
        except aiohttp.ClientConnectorError as exc:
            raise A2AConnectionError(f"cannot connect to {self.url}: is the server running? ({exc.strerror})") from exc
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise A2AConnectionError(f"{self.url}: {type(exc).__name__}: {exc}") from exc

    async def stream_response(self, message: Union[Message, str], chunk_callback: Optional[Callable] = None,
                              after_index: Optional[int] = None) -> AsyncIterator[dict]:
        """Stream the answer; after_index resumes after that chunk (sent as Last-Event-ID)."""
        message = text_message(message) if isinstance(message, str) else message
        headers = {"Accept": "text/event-stream"}
        if after_index is not None:
            headers["Last-Event-ID"] = str(after_index)
        expected, received, finished = (after_index + 1 if after_index is not None else 0), 0, False
        try:
            async with self._create_session() as session:
                async with session.post(f"{self.url}/stream", json=message.to_dict(), headers=headers) as response:
                    await _raise_for_status(response, f"{self.url}/stream")
                    _require_event_stream(response, f"{self.url}/stream")
                    async for chunk in self._process_stream(response):
                        expected = _check_index(chunk, expected)
                        finished = isinstance(chunk, dict) and bool(chunk.get("lastChunk"))
                        if finished and not chunk_text(chunk):
                            break  # the bare end marker is not content
                        received += 1
                        if chunk_callback:
                            chunk_callback(chunk)
                        yield chunk
                        if finished:
                            break
        except asyncio.TimeoutError as exc:  # before ClientError: aiohttp's timeout is both
            raise A2AStreamingError(f"no data from {self.url} for {self.timeout:g} s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise A2AConnectionError(f"cannot connect to {self.url}: is the server running? ({exc.strerror})") from exc
        except aiohttp.ClientError as exc:
            raise A2AConnectionError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        if not finished:
            raise StreamTruncatedError(f"stream from {self.url} ended after {received} chunks "
                                       "without the lastChunk marker: its tail was lost")


def _check_index(chunk: Any, expected: int) -> int:
    """The index due next; raises if a chunk carries another one (a chunk was lost or repeated)."""
    index = chunk.get("index") if isinstance(chunk, dict) else None
    if index is None:
        return expected  # servers that do not number their chunks cannot be checked
    if index != expected:
        lost = f"#{expected}" if index == expected + 1 else f"#{expected}-#{index - 1}"
        problem = f"chunk {lost} lost" if index > expected else "a chunk repeated"
        raise A2AStreamingError(f"chunk #{index} arrived where #{expected} was due: {problem}")
    return expected + 1


def _require_event_stream(response: aiohttp.ClientResponse, where: str) -> None:
    """A 2xx that is not text/event-stream is not a stream: say so, rather than report a lost tail."""
    if response.content_type != "text/event-stream":
        raise A2AConnectionError(f"{where} answered {response.content_type or 'no content type'}, "
                                 "not text/event-stream: not an A2A streaming endpoint")


async def _raise_for_status(response: aiohttp.ClientResponse, where: str) -> None:
    """Raise for any 4xx/5xx with the server's own error text: A2AResponseError when the agent
    failed (5xx), A2AConnectionError when the request went to the wrong place or was refused."""
    if response.status < 400:
        return
    body = (await response.text())[:300]
    if "html" in response.headers.get("Content-Type", ""):  # §14: not an A2A endpoint at all
        body = "an HTML page, not an A2A answer"
        if urllib.parse.urlsplit(where).path.count("/") > 1:  # e.g. .../a2a/stream: a path was passed
            body += "; pass the server's base URL (e.g. http://127.0.0.1:8100), without a path"
    error = A2AResponseError if response.status >= 500 else A2AConnectionError
    raise error(f"HTTP {response.status} from {where}: {body}")
