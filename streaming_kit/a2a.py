"""A2A protocol mapping: the kit's task events in the official A2A shapes (v0.3)."""
from __future__ import annotations

from typing import Any

from . import patches  # noqa: F401
from .messages import _RpcProblem
from python_a2a import TaskState

FINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.CANCELED, TaskState.FAILED})  # a task stream ends here


def a2a_state(state: TaskState) -> str:
    """The official A2A name of a python-a2a task state: its WAITING is A2A's "working" (§19)."""
    return "working" if state == TaskState.WAITING else state.value


# A2A v0.3 (message/stream) names the same events differently: parts say "kind", not "type";
# states use the official names; each event is a Task, a status-update or an artifact-update.
def _v03_parts(parts: list) -> list[dict]:
    return [{"kind": "text", "text": part.get("text", "")} for part in parts if isinstance(part, dict)]


def _v03_send_params(params: dict) -> dict:
    """v0.3 MessageSendParams as the kit's task params (a new task; contextId = sessionId)."""
    message = params.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("parts"), list):
        raise _RpcProblem(400, -32602, "params.message with a parts list is required")
    text_parts = [{"type": "text", "text": p["text"]} for p in message["parts"]
                  if isinstance(p, dict) and p.get("kind", p.get("type")) == "text" and isinstance(p.get("text"), str)]
    return {"sessionId": message.get("contextId"), "message": {"role": "user", "parts": text_parts}}


def _v03_result(event: dict) -> dict:
    """A kit task event in v0.3 form: Task, status-update (final on the last) or artifact-update."""
    state, seq = TaskState(event["status"]["state"]), event["metadata"]["seq"]
    status = {**event["status"], "state": a2a_state(state)}
    if "message" in status:
        status["message"] = {**status["message"], "kind": "message", "messageId": f"{event['id']}-{seq}",
                             "parts": _v03_parts(status["message"]["parts"])}
    artifacts = [{"artifactId": a["artifactId"], "name": a["name"], "parts": _v03_parts(a["parts"])}
                 for a in event.get("artifacts", [])]
    ids = {"taskId": event["id"], "contextId": event["sessionId"]}
    if event["metadata"]["kind"] == "task":
        return {"kind": "task", "id": event["id"], "contextId": event["sessionId"], "status": status,
                "artifacts": artifacts}
    if event["metadata"]["kind"] == "artifact-update":
        (chunk,) = event["artifacts"]
        return {"kind": "artifact-update", **ids, "artifact": artifacts[0], "append": chunk["append"],
                "lastChunk": chunk["lastChunk"]}
    return {"kind": "status-update", **ids, "status": status, "final": state in FINAL_STATES}
