"""The official A2A protocol (v0.3 and v1.0) over JSON-RPC: requests in, events and errors out.

The kit keeps one event shape internally (python-a2a's Task dict with metadata {"seq", "kind"},
what tasks/sendSubscribe streams); this module reads A2A requests into the kit's task params and
writes the kit's events in the shape each protocol version asks for:

    v0.3 (no A2A-Version header)  message/stream, message/send, tasks/get, tasks/cancel, tasks/resubscribe
    v1.0 (A2A-Version: 1.0)       SendStreamingMessage, SendMessage, GetTask, CancelTask, SubscribeToTask

Pure functions of dicts: no Flask, no I/O, so both serving paths and the tests can use them.
"""
from __future__ import annotations

import datetime
import math
from typing import Any, Optional

from . import patches  # noqa: F401
from .messages import _RpcProblem
from python_a2a import TaskState

FINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.CANCELED, TaskState.FAILED})  # a task stream ends here
VERSIONS = ("0.3", "1.0")

# JSON-RPC error codes (JSON-RPC 2.0 and A2A §8 / v1.0 §9.5)
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603
TASK_NOT_FOUND, TASK_NOT_CANCELABLE, UNSUPPORTED_OPERATION, VERSION_NOT_SUPPORTED = -32001, -32002, -32004, -32009
_REASONS = {PARSE_ERROR: "PARSE_ERROR", INVALID_REQUEST: "INVALID_REQUEST", METHOD_NOT_FOUND: "METHOD_NOT_FOUND",
            INVALID_PARAMS: "INVALID_PARAMS", INTERNAL_ERROR: "INTERNAL_ERROR", TASK_NOT_FOUND: "TASK_NOT_FOUND",
            TASK_NOT_CANCELABLE: "TASK_NOT_CANCELABLE", UNSUPPORTED_OPERATION: "UNSUPPORTED_OPERATION",
            VERSION_NOT_SUPPORTED: "VERSION_NOT_SUPPORTED"}

# method name -> (version, what the kit does)
METHODS = {
    "message/stream": ("0.3", "stream"), "message/send": ("0.3", "send"), "tasks/get": ("0.3", "get"),
    "tasks/cancel": ("0.3", "cancel"), "tasks/resubscribe": ("0.3", "subscribe"),
    "SendStreamingMessage": ("1.0", "stream"), "SendMessage": ("1.0", "send"), "GetTask": ("1.0", "get"),
    "CancelTask": ("1.0", "cancel"), "SubscribeToTask": ("1.0", "subscribe"),
}


def a2a_state(state: TaskState) -> str:
    """The official A2A name of a python-a2a task state: its WAITING is A2A's "working" (§19)."""
    return "working" if state == TaskState.WAITING else state.value


def utc_timestamp() -> str:
    """Now as RFC 3339 in UTC with a Z (v1.0 §5.6.1): a2a-sdk 1.3.0 refuses a time without a zone."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- requests
def protocol_version(header: Optional[str], method: Any) -> str:
    """The version a request speaks: its A2A-Version header, else its method's version (0.3 by default)."""
    if header:
        version = header.strip()
        if version not in VERSIONS:
            raise _RpcProblem(200, VERSION_NOT_SUPPORTED, f"A2A-Version {version!r} is not supported: "
                                                          f"use one of {', '.join(VERSIONS)}")
        return version
    return METHODS.get(method, ("0.3",))[0]


def read_rpc(body: Any) -> tuple[Any, str, dict]:
    """(id, method, params) of one JSON-RPC 2.0 request; _RpcProblem (-32600/-32602) when it is not one."""
    if isinstance(body, list):
        raise _RpcProblem(200, INVALID_REQUEST, "batch requests are not supported: send one JSON-RPC object")
    if not isinstance(body, dict) or body.get("jsonrpc") != "2.0":
        raise _RpcProblem(200, INVALID_REQUEST, 'a JSON-RPC 2.0 request object is required ({"jsonrpc": "2.0", ...})')
    rpc_id = body.get("id")
    if not valid_id(rpc_id):
        raise _RpcProblem(200, INVALID_REQUEST, "id must be a string, a finite number or null")
    if not isinstance(body.get("method"), str):
        raise _RpcProblem(200, INVALID_REQUEST, "method must be a string")
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise _RpcProblem(200, INVALID_PARAMS, "params must be an object")
    return rpc_id, body["method"], params


def valid_id(rpc_id: Any) -> bool:
    """JSON-RPC ids are strings, numbers or null (a NaN would be echoed back as invalid JSON)."""
    if isinstance(rpc_id, bool):
        return False
    return rpc_id is None or isinstance(rpc_id, str) or (isinstance(rpc_id, (int, float)) and math.isfinite(rpc_id))


def send_params(params: dict, version: str) -> dict:
    """MessageSendParams (v0.3) or SendMessageRequest (v1.0) as the kit's task params.

    Returns {"sessionId", "message": {"role", "parts": [{"type": "text", ...}]}, "taskId", "blocking"}.
    """
    message = params.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("parts"), list):
        raise _RpcProblem(200, INVALID_PARAMS, "params.message with a parts list is required")
    texts = []
    for part in message["parts"]:
        if not isinstance(part, dict):
            raise _RpcProblem(200, INVALID_PARAMS, "params.message.parts must be a list of objects")
        is_text = part.get("kind", part.get("type")) == "text" if version == "0.3" else "text" in part
        if is_text:
            if not isinstance(part.get("text"), str):
                raise _RpcProblem(200, INVALID_PARAMS, "a text part's text must be a string")
            texts.append(part["text"])
    if not texts:
        raise _RpcProblem(200, INVALID_PARAMS, "params.message needs a text part: this agent reads text")
    for key in ("contextId", "taskId", "messageId"):
        if message.get(key) is not None and not isinstance(message[key], str):
            raise _RpcProblem(200, INVALID_PARAMS, f"params.message.{key} must be a string")
    configuration = params.get("configuration") or {}
    if not isinstance(configuration, dict):
        raise _RpcProblem(200, INVALID_PARAMS, "params.configuration must be an object")
    blocking = (configuration.get("blocking", True) if version == "0.3"
                else not configuration.get("returnImmediately", False))
    return {"sessionId": message.get("contextId"), "taskId": message.get("taskId"), "blocking": bool(blocking),
            "message": {"role": "user", "parts": [{"type": "text", "text": "\n".join(texts)}]}}


def task_id_param(params: dict) -> str:
    """params.id of tasks/get, tasks/cancel, tasks/resubscribe (and their v1.0 names)."""
    task_id = params.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise _RpcProblem(200, INVALID_PARAMS, "params.id (the task id, a string) is required")
    return task_id


# ---------------------------------------------------------------- results
def result(event: dict, version: str) -> dict:
    """A kit event as the result of one JSON-RPC response or SSE event in the given version."""
    return v10_result(event) if version == "1.0" else v03_result(event)


def task_result(event: dict, version: str) -> dict:
    """A Task (tasks/get, tasks/cancel, message/send): v0.3 the Task itself, v1.0 SendMessage wraps it."""
    return v03_task(event) if version == "0.3" else v10_task(event)


def v03_result(event: dict) -> dict:
    """v0.3: a Task, a status-update (final on the last) or an artifact-update."""
    kind, ids = event["metadata"]["kind"], {"taskId": event["id"], "contextId": _context(event)}
    if kind == "task":
        return v03_task(event)
    if kind == "artifact-update":
        (chunk,) = event["artifacts"]
        return {"kind": "artifact-update", **ids, "artifact": _v03_artifact(chunk), "append": chunk["append"],
                "lastChunk": chunk["lastChunk"]}
    return {"kind": "status-update", **ids, "status": _v03_status(event),
            "final": TaskState(event["status"]["state"]) in FINAL_STATES}


def v03_task(event: dict) -> dict:
    return {"kind": "task", "id": event["id"], "contextId": _context(event), "status": _v03_status(event),
            "artifacts": [_v03_artifact(a) for a in event.get("artifacts", [])]}


def v10_result(event: dict) -> dict:
    """v1.0: a StreamResponse with exactly one of task, statusUpdate, artifactUpdate (no kind, no final)."""
    kind, ids = event["metadata"]["kind"], {"taskId": event["id"], "contextId": _context(event)}
    if kind == "task":
        return {"task": v10_task(event)}
    if kind == "artifact-update":
        (chunk,) = event["artifacts"]
        return {"artifactUpdate": {**ids, "artifact": _v10_artifact(chunk), "append": chunk["append"],
                                   "lastChunk": chunk["lastChunk"]}}
    return {"statusUpdate": {**ids, "status": _v10_status(event)}}


def v10_task(event: dict) -> dict:
    return {"id": event["id"], "contextId": _context(event), "status": _v10_status(event),
            "artifacts": [_v10_artifact(a) for a in event.get("artifacts", [])]}


def _context(event: dict) -> str:
    return event.get("sessionId") or event["id"]


def _texts(parts: list) -> list[str]:
    return [part.get("text", "") for part in parts if isinstance(part, dict)]


def _v03_status(event: dict) -> dict:
    status = event["status"]
    out = {"state": a2a_state(TaskState(status["state"])), "timestamp": status["timestamp"]}
    if status.get("message"):
        message = status["message"]
        out["message"] = {"kind": "message", "role": "agent", "messageId": f"{event['id']}-{event['metadata']['seq']}",
                          "taskId": event["id"], "contextId": _context(event),
                          "parts": [{"kind": "text", "text": t} for t in _texts(message.get("parts", []))],
                          **({"metadata": message["metadata"]} if message.get("metadata") else {})}
    return out


def _v10_status(event: dict) -> dict:
    status = event["status"]
    state = a2a_state(TaskState(status["state"])).upper().replace("-", "_")
    out = {"state": f"TASK_STATE_{state}", "timestamp": status["timestamp"]}
    if status.get("message"):
        message = status["message"]
        out["message"] = {"role": "ROLE_AGENT", "messageId": f"{event['id']}-{event['metadata']['seq']}",
                          "taskId": event["id"], "contextId": _context(event),
                          "parts": [{"text": t} for t in _texts(message.get("parts", []))],
                          **({"metadata": message["metadata"]} if message.get("metadata") else {})}
    return out


def _v03_artifact(artifact: dict) -> dict:
    return {"artifactId": artifact["artifactId"], "name": artifact.get("name") or artifact["artifactId"],
            "parts": [{"kind": "text", "text": t} for t in _texts(artifact.get("parts", []))]}


def _v10_artifact(artifact: dict) -> dict:
    return {"artifactId": artifact["artifactId"], "name": artifact.get("name") or artifact["artifactId"],
            "parts": [{"text": t} for t in _texts(artifact.get("parts", []))]}


def rpc_response(rpc_id: Any, result_body: dict) -> dict:
    return {"jsonrpc": "2.0", "id": rpc_id, "result": result_body}


def rpc_error(rpc_id: Any, code: int, message: str, version: str = "0.3") -> dict:
    """A JSON-RPC error object; v1.0 adds a google.rpc.ErrorInfo detail naming the reason (§9.5)."""
    error: dict = {"code": code, "message": message}
    if version == "1.0":
        error["data"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                          "reason": _REASONS.get(code, "UNKNOWN"), "domain": "a2a-protocol.org"}]
    return {"jsonrpc": "2.0", "id": rpc_id if valid_id(rpc_id) else None, "error": error}


# ---------------------------------------------------------------- the agent card
def agent_card(stock: dict, url: str, skills: list) -> dict:
    """python-a2a's card plus what both SDK generations read: v1.0 supportedInterfaces (1.0 and 0.3 at
    the agent's URL) and the v0.3 fields, with capabilities that are true and at least one skill."""
    card = {key: value for key, value in stock.items() if key not in ("capabilities", "skills")}
    name = stock.get("name") or "agent"
    description = stock.get("description") or f"{name}: a streaming A2A agent"
    card.update({
        "name": name, "description": description, "url": url, "version": stock.get("version") or "1.0.0",
        "protocolVersion": "0.3.0", "preferredTransport": "JSONRPC",
        "supportedInterfaces": [{"url": url, "protocolBinding": "JSONRPC", "protocolVersion": version}
                                for version in ("1.0", "0.3")],
        "capabilities": {**_python_a2a_flags(stock), "streaming": True, "pushNotifications": False,
                         "stateTransitionHistory": False},
        "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
        "skills": skills or [{"id": "answer", "name": name, "description": description,
                              "tags": ["streaming", "text"]}],
    })
    return card


def _python_a2a_flags(stock: dict) -> dict:
    """python-a2a's own capability flags: they tell the kit's client that /stream is served here."""
    capabilities = stock.get("capabilities") or {}
    return {key: capabilities[key] for key in ("google_a2a_compatible", "parts_array_format") if key in capabilities}


def skill_dict(skill: Any) -> dict:
    """A python-a2a AgentSkill (or dict) as an A2A AgentSkill: id, name, description, tags."""
    data = skill if isinstance(skill, dict) else skill.to_dict()
    name = data.get("name") or "skill"
    return {"id": str(data.get("id") or name), "name": name, "description": data.get("description") or name,
            "tags": list(data.get("tags") or []), **({"examples": data["examples"]} if data.get("examples") else {})}
