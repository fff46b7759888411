"""Local stand-ins for the OpenAI, Anthropic and Bedrock streaming endpoints (tests only).

Each speaks its provider's wire format, so the official SDKs, pointed here with base_url /
endpoint_url, parse the stream exactly as they would parse the real one:
  OpenAI     POST /v1/chat/completions          SSE `data: {json}` lines, then `data: [DONE]`
  Anthropic  POST /v1/messages                  named SSE events (`event: <type>`)
  Bedrock    POST /model/<id>/converse-stream   AWS event-stream binary frames
Set `stub.frames[...]` to bytes to send verbatim (transcript_frames() reads tests/data/), or
`stub.events[...]` to event dicts the stub frames itself; `complete=False` cuts the latter before its
terminator; `status` answers with an HTTP error instead of a stream; `stall_after=N` sends the
first N events and then nothing, keeping the connection open until the stub is closed (a stalled
provider: the SDK sees a healthy socket that never delivers another byte).
"""
from __future__ import annotations

import binascii
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

DATA = Path(__file__).parent / "data"
TRANSCRIPTS = {"openai": "openai_chat_completions.sse", "anthropic": "anthropic_messages.sse",
               "bedrock": "bedrock_converse_stream.json"}


def transcript_frames(provider: str) -> list[bytes]:
    """A provider's recorded-format stream from tests/data, frame by frame, exactly as it goes on the wire."""
    path = DATA / TRANSCRIPTS[provider]
    if provider == "bedrock":
        return [bedrock_frame(event) for event in json.loads(path.read_text(encoding="utf-8"))]
    return [frame + b"\n\n" for frame in path.read_bytes().split(b"\n\n") if frame.strip()]


def transcript_events(provider: str) -> list[dict]:
    """The same transcript as the event dicts an adapter reads without an SDK ([DONE] is not an event)."""
    path = DATA / TRANSCRIPTS[provider]
    if provider == "bedrock":
        return json.loads(path.read_text(encoding="utf-8"))
    data = [line[len("data:"):].strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("data:")]
    return [json.loads(item) for item in data if item != "[DONE]"]


def sse(data: dict, event: str | None = None) -> bytes:
    return ((f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n").encode()


def event_stream_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude, CRC, string headers, payload, CRC."""
    head = b"".join(struct.pack("B", len(name)) + name.encode() + struct.pack("!BH", 7, len(value)) + value.encode()
                    for name, value in headers.items())
    prelude = struct.pack("!II", 16 + len(head) + len(payload), len(head))
    message = prelude + struct.pack("!I", binascii.crc32(prelude)) + head + payload
    return message + struct.pack("!I", binascii.crc32(message))


def bedrock_frame(event: dict) -> bytes:
    """A ConverseStream event dict ({"contentBlockDelta": {...}}) as a binary frame."""
    (kind, body), = event.items()
    if kind.endswith("Exception"):
        headers = {":message-type": "exception", ":exception-type": kind, ":content-type": "application/json"}
    else:
        headers = {":message-type": "event", ":event-type": kind, ":content-type": "application/json"}
    return event_stream_frame(headers, json.dumps(body).encode())


class _Handler(BaseHTTPRequestHandler):
    stub: "LLMStub"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        provider = self.stub.provider_for(self.path)
        self.stub.requests.append((provider, self.path, body))
        if provider is None:
            return self._answer(404, "application/json", b'{"error": "no such endpoint"}')
        if self.stub.status != 200:
            error = {"error": {"type": "rate_limit_error", "message": "slow down"}}
            return self._answer(self.stub.status, "application/json", json.dumps(error).encode())
        content_type = "application/vnd.amazon.eventstream" if provider == "bedrock" else "text/event-stream"
        if self.stub.stall_after is not None:
            return self._stall(content_type, list(self.stub.wire(provider))[:self.stub.stall_after])
        self._answer(200, content_type, b"".join(self.stub.wire(provider)))

    def _stall(self, content_type: str, frames: list[bytes]) -> None:
        """Send some frames, then go silent: no length header, so the client waits for more."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.end_headers()
        self.wfile.write(b"".join(frames))
        self.wfile.flush()
        self.stub.released.wait(60)  # until the stub closes (bounded: never a thread left forever)

    def _answer(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class LLMStub:
    """A threaded HTTP server on 127.0.0.1 replaying scripted provider streams."""

    def __init__(self):
        self.events: dict[str, list[dict]] = {"openai": [], "anthropic": [], "bedrock": []}
        self.frames: dict[str, list[bytes]] = {}  # when set for a provider: sent as they are, events ignored
        self.complete = True
        self.status = 200
        self.stall_after: int | None = None
        self.released = threading.Event()  # ends the stalled responses
        self.requests: list[tuple] = []
        handler = type("Handler", (_Handler,), {"stub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "LLMStub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @staticmethod
    def provider_for(path: str) -> str | None:
        if path.endswith("/chat/completions"):
            return "openai"
        if path.endswith("/messages"):
            return "anthropic"
        if path.endswith("/converse-stream"):
            return "bedrock"
        return None

    def wire(self, provider: str) -> Iterator[bytes]:
        """The scripted events in the provider's own framing, with its terminator if complete."""
        if provider in self.frames:
            yield from self.frames[provider]
            return
        for event in self.events[provider]:
            if provider == "openai":
                yield sse(event)
            elif provider == "anthropic":
                yield sse(event, event["type"])
            else:
                yield bedrock_frame(event)
        if self.complete and provider == "openai":
            yield b"data: [DONE]\n\n"
