"""Messages and chunks: the shapes python-a2a and A2A use, read and written in one place."""
from __future__ import annotations

import json
from typing import Any, Optional

from . import patches  # noqa: F401  (loads python_a2a quickly, applies the patches)
from python_a2a import A2AStreamingError, Message, MessageRole, Metadata, TextContent


class StreamTruncatedError(A2AStreamingError):
    """The stream ended without its lastChunk marker: the tail was lost (§1)."""


class RequestProblem(ValueError):
    """A /stream request the server cannot use; carries the HTTP status to answer with."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


class _RpcProblem(RequestProblem):
    """A JSON-RPC request the server cannot use: the HTTP status and the JSON-RPC error code."""

    def __init__(self, status: int, code: int, reason: str):
        super().__init__(status, reason)
        self.code = code


def text_message(text: str, role: MessageRole = MessageRole.USER, metadata: Optional[dict] = None) -> Message:
    """A text Message (python-a2a's Message needs both content and role); metadata as custom fields."""
    message = Message(content=TextContent(text=text), role=role)
    if metadata:
        message.metadata = Metadata(custom_fields=dict(metadata))
    return message


def message_text(message: Message) -> str:
    """The text of an incoming message, or "" for non-text content."""
    return getattr(message.content, "text", "") or ""


def chunk_text(chunk: Any) -> str:
    """Text of a chunk of any shape python-a2a produces (§13); "" for the end marker."""
    if isinstance(chunk, str):
        return chunk
    if isinstance(chunk, dict):
        if chunk.get("lastChunk") and not chunk.get("content"):
            return ""
        for key in ("content", "text"):
            if key in chunk:
                return chunk_text(chunk[key])
        for key in ("parts", "artifacts"):
            if isinstance(chunk.get(key), list):
                return "".join(chunk_text(item) for item in chunk[key])
    if isinstance(chunk, list):
        return "".join(chunk_text(item) for item in chunk)
    return ""


def _sse(data: dict, event: Optional[str] = None, event_id: Optional[int] = None) -> str:
    """One SSE event; json.dumps keeps newlines and non-ASCII inside a single data line (§8)."""
    head = (f"event: {event}\n" if event else "") + (f"id: {event_id}\n" if event_id is not None else "")
    return f"{head}data: {json.dumps(data)}\n\n"


def parse_stream_request(body: Any) -> Message:
    """Validate a /stream body (a message, or {"message": ...}); RequestProblem(400) if unusable.

    Accepts python-a2a messages ({"content": ...}) and A2A ones ({"parts": [...]}, with v0.1
    "type" or v0.3 "kind"); several text parts are joined with newlines, not cut to the first.
    """
    if not isinstance(body, dict):
        raise RequestProblem(400, "request body must be a JSON object")
    raw = body.get("message", body)
    if not isinstance(raw, dict) or not ("content" in raw or "parts" in raw):
        raise RequestProblem(400, "missing message: send {'role': 'user', 'parts': [{'type': 'text', 'text': ...}]} "
                                  "(A2A) or {'role': 'user', 'content': {'type': 'text', 'text': ...}} (python-a2a)")
    if "parts" in raw and "content" not in raw:
        raw = {**raw, "role": raw.get("role", "user"), "parts": _joined_text_parts(raw["parts"])}
    try:
        message = Message.from_dict(raw)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RequestProblem(400, f"invalid message: {exc}") from None
    if isinstance(message.content, TextContent) and not isinstance(message.content.text, str):
        raise RequestProblem(400, "message text must be a string")
    return message


def _joined_text_parts(parts: Any) -> list:
    """A2A parts as python-a2a reads them: one text part holding every text part's text."""
    if not isinstance(parts, list) or not all(isinstance(part, dict) for part in parts):
        raise RequestProblem(400, "message parts must be a list of objects")
    texts = [part.get("text") for part in parts if (part.get("type") or part.get("kind")) == "text"]
    if not all(isinstance(text, str) for text in texts):
        raise RequestProblem(400, "message text must be a string")
    others = [part for part in parts if (part.get("type") or part.get("kind")) != "text"]
    return ([{"type": "text", "text": "\n".join(texts)}] if texts else []) + others


def parse_last_event_id(value: Optional[str]) -> Optional[int]:
    """A Last-Event-ID header as the number of the last event received (None when absent or empty);
    RequestProblem(400) unless it is plain ASCII digits, at most 18 of them (no sign, no "²")."""
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > 18 or not value.isascii() or not value.isdigit():
        raise RequestProblem(400, "Last-Event-ID must be the number of the last event received")
    return int(value)
