#!/usr/bin/env python3
"""A streaming client built only from the official A2A Python SDK (a2a-sdk), for the test rig.

Runs under either SDK line (detected at import):
  - a2a-sdk 1.3.0 (the main interpreter): --protocol 1.0 (default) or 0.3
  - a2a-sdk 0.3.26 (the venv from sdk_venv.py): --protocol 0.3 only

    python official_client.py URL [--protocol 0.3|1.0] [--text T]
                              [--drop-after K [--resubscribe]] [--cancel-after K] [--timeout S]

It resolves URL's agent card with the SDK's A2ACardResolver, builds a streaming client with the
SDK's ClientFactory + ClientConfig(streaming=True), sends one text message and prints ONE JSON
object on stdout when done:

  {"sdk": "1.3.0", "protocol": "1.0", "transport": "JsonRpcTransport", "card": {...summary...},
   "task_id": ..., "events": [{"type": "task"|"status"|"artifact"|"message", "source":
   "stream"|"resubscribe", "state", "text", "append", "lastChunk", "artifactId", ...}, ...],
   "text": "<artifact text, reassembled>", "final_state": "completed", "terminal": true,
   "cancel": null | {"state"|"error"}, "task_after": null | {"state", "text"} | {"error"},
   "error": null | "Type: message"}

States are normalised to the v0.3 spelling for both SDKs (TASK_STATE_INPUT_REQUIRED and
input-required both become "input-required"). Exit status: 0 when it ran, even if the agent
misbehaved (the failure is in "error"); 2 on bad arguments.

How the protocol is forced on 1.3.0: ClientFactory.create() always takes the card's best JSONRPC
interface (1.0 if listed), so the card's supportedInterfaces are first narrowed to the chosen
version. The factory then builds JsonRpcTransport for 1.0 (SendStreamingMessage, header
A2A-Version: 1.0) or CompatJsonRpcTransport for 0.3 (message/stream, header A2A-Version: 0.3).

--drop-after K closes the stream after K artifact chunks; with --resubscribe the client then calls
the SDK's subscribe (1.3.0: SubscribeToTask / tasks/resubscribe) or resubscribe (0.3.26) for that
task and keeps collecting. Text is reassembled per artifactId: append=false replaces, append=true
appends, and a Task event's artifacts (v1.0 SubscribeToTask starts with the current Task)
replace what was collected so far, so a snapshot that repeats earlier chunks is not doubled.
--cancel-after K calls the SDK's cancel_task after K chunks while the stream keeps being read.
After any run that got a task id, the client reads the task back (GetTask / tasks/get) into
"task_after".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import sys
import uuid

SDK_VERSION = importlib.metadata.version("a2a-sdk")
SDK_LINE = "1" if SDK_VERSION.startswith("1.") else "0.3" if SDK_VERSION.startswith("0.3.") else "?"

TERMINAL_STATES = {"completed", "failed", "canceled", "rejected"}
HTTP_TIMEOUT_S = 30.0


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def normalise_state(name: str) -> str:
    """'TASK_STATE_INPUT_REQUIRED' (v1.0) and 'input-required' (v0.3) -> 'input-required'."""
    if name.startswith("TASK_STATE_"):
        name = name[len("TASK_STATE_"):]
    return name.lower().replace("_", "-")


class Collector:
    """Records normalised events and reassembles the artifact text."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.artifacts: dict[str, str] = {}  # artifactId -> text, in order of first appearance
        self.final_state: str | None = None
        self.task_id: str | None = None
        self.chunks = 0  # artifact-update events seen (all sources)

    def add(self, event: dict, source: str) -> None:
        event = {**event, "source": source}
        self.events.append(event)
        self.task_id = self.task_id or event.get("taskId")
        if event.get("state"):
            self.final_state = event["state"]
        if event["type"] == "task":
            for artifact_id, text in event.get("artifacts", []):
                self.artifacts[artifact_id] = text
        elif event["type"] == "artifact":
            self.chunks += 1
            artifact_id = event.get("artifactId") or ""
            if event.get("append"):
                self.artifacts[artifact_id] = self.artifacts.get(artifact_id, "") + event["text"]
            else:
                self.artifacts[artifact_id] = event["text"]

    @property
    def text(self) -> str:
        return "".join(self.artifacts.values())


# ---------------------------------------------------------------------------------------------
# a2a-sdk 1.3.0
# ---------------------------------------------------------------------------------------------

class Sdk1Backend:
    def __init__(self, protocol: str) -> None:
        import httpx

        self.protocol = protocol
        self.http = httpx.AsyncClient(timeout=HTTP_TIMEOUT_S)
        self.client = None

    async def connect(self, url: str) -> dict:
        from packaging.version import Version

        from a2a.client import A2ACardResolver, ClientConfig, ClientFactory

        card = await A2ACardResolver(self.http, url).get_agent_card()
        summary = {
            "name": card.name,
            "streaming": card.capabilities.streaming,
            "supportedInterfaces": [
                {"url": i.url, "protocolBinding": i.protocol_binding,
                 "protocolVersion": i.protocol_version} for i in card.supported_interfaces],
        }
        # Force the binding version: keep only the card's interfaces of that major.minor.
        wanted = Version(self.protocol).release[:2]

        def matches(iface) -> bool:
            try:
                return Version(iface.protocol_version).release[:2] == wanted
            except Exception:
                return False

        keep = [i for i in card.supported_interfaces if matches(i)]
        del card.supported_interfaces[:]
        card.supported_interfaces.extend(keep)
        # ValueError('no compatible transports found.') here when the card has no such interface.
        self.client = ClientFactory(ClientConfig(streaming=True, httpx_client=self.http)).create(card)
        return summary

    @property
    def transport_name(self) -> str | None:
        transport = getattr(self.client, "_transport", None)
        return type(transport).__name__ if transport is not None else None

    def send(self, text: str):
        from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest

        message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)])
        return self.client.send_message(SendMessageRequest(message=message))

    def subscribe(self, task_id: str):
        from a2a.types.a2a_pb2 import SubscribeToTaskRequest

        return self.client.subscribe(SubscribeToTaskRequest(id=task_id))

    async def cancel(self, task_id: str) -> dict:
        from a2a.types.a2a_pb2 import CancelTaskRequest

        task = await self.client.cancel_task(CancelTaskRequest(id=task_id))
        return self._task(task)

    async def get_task(self, task_id: str) -> dict:
        from a2a.types.a2a_pb2 import GetTaskRequest

        return self._task(await self.client.get_task(GetTaskRequest(id=task_id)))

    @staticmethod
    def _text(parts) -> str:
        from a2a.helpers.proto_helpers import get_text_parts

        return "".join(get_text_parts(parts))

    def _task(self, task) -> dict:
        from a2a.types.a2a_pb2 import TaskState

        return {"state": normalise_state(TaskState.Name(task.status.state)),
                "text": "".join(self._text(a.parts) for a in task.artifacts)}

    def normalise(self, response) -> dict:
        """One StreamResponse -> one event dict (exactly one member is set)."""
        from a2a.types.a2a_pb2 import TaskState

        kind = response.WhichOneof("payload")
        if kind == "task":
            t = response.task
            return {"type": "task", "taskId": t.id,
                    "state": normalise_state(TaskState.Name(t.status.state)),
                    "artifacts": [(a.artifact_id, self._text(a.parts)) for a in t.artifacts]}
        if kind == "status_update":
            s = response.status_update
            return {"type": "status", "taskId": s.task_id,
                    "state": normalise_state(TaskState.Name(s.status.state))}
        if kind == "artifact_update":
            a = response.artifact_update
            return {"type": "artifact", "taskId": a.task_id, "artifactId": a.artifact.artifact_id,
                    "text": self._text(a.artifact.parts), "append": a.append,
                    "lastChunk": a.last_chunk}
        if kind == "message":
            m = response.message
            return {"type": "message", "taskId": m.task_id or None, "text": self._text(m.parts)}
        return {"type": f"unknown:{kind}"}

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        await self.http.aclose()


# ---------------------------------------------------------------------------------------------
# a2a-sdk 0.3.26
# ---------------------------------------------------------------------------------------------

class Sdk03Backend:
    def __init__(self, protocol: str) -> None:
        import httpx

        self.protocol = protocol
        self.http = httpx.AsyncClient(timeout=HTTP_TIMEOUT_S)
        self.client = None

    async def connect(self, url: str) -> dict:
        from a2a.client import A2ACardResolver, ClientConfig, ClientFactory

        card = await A2ACardResolver(self.http, url).get_agent_card()
        summary = {
            "name": card.name, "url": card.url, "protocolVersion": card.protocol_version,
            "preferredTransport": card.preferred_transport,
            "streaming": bool(card.capabilities.streaming),
            "additionalInterfaces": [{"url": i.url, "transport": i.transport}
                                     for i in card.additional_interfaces or []],
        }
        self.client = ClientFactory(ClientConfig(streaming=True, httpx_client=self.http)).create(card)
        return summary

    @property
    def transport_name(self) -> str | None:
        transport = getattr(self.client, "_transport", None)
        return type(transport).__name__ if transport is not None else None

    def send(self, text: str):
        from a2a.types import Message, Part, Role, TextPart

        message = Message(role=Role.user, message_id=str(uuid.uuid4()),
                          parts=[Part(root=TextPart(text=text))])
        return self.client.send_message(message)

    def subscribe(self, task_id: str):
        from a2a.types import TaskIdParams

        return self.client.resubscribe(TaskIdParams(id=task_id))

    async def cancel(self, task_id: str) -> dict:
        from a2a.types import TaskIdParams

        return self._task(await self.client.cancel_task(TaskIdParams(id=task_id)))

    async def get_task(self, task_id: str) -> dict:
        from a2a.types import TaskQueryParams

        return self._task(await self.client.get_task(TaskQueryParams(id=task_id)))

    @staticmethod
    def _text(parts) -> str:
        from a2a.utils.parts import get_text_parts

        return "".join(get_text_parts(parts or []))

    def _task(self, task) -> dict:
        return {"state": normalise_state(task.status.state.value),
                "text": "".join(self._text(a.parts) for a in task.artifacts or [])}

    def normalise(self, item) -> dict:
        """A (Task, update) pair or a Message -> one event dict.

        The 0.3.26 client yields (aggregated Task, None) for a Task event and (aggregated Task,
        update) for a status/artifact update; only the update itself is recorded then.
        """
        from a2a.types import Message, TaskArtifactUpdateEvent, TaskStatusUpdateEvent

        if isinstance(item, Message):
            return {"type": "message", "taskId": item.task_id, "text": self._text(item.parts)}
        task, update = item
        if update is None:
            return {"type": "task", "taskId": task.id,
                    "state": normalise_state(task.status.state.value),
                    "artifacts": [(a.artifact_id, self._text(a.parts))
                                  for a in task.artifacts or []]}
        if isinstance(update, TaskStatusUpdateEvent):
            return {"type": "status", "taskId": update.task_id,
                    "state": normalise_state(update.status.state.value), "final": update.final}
        if isinstance(update, TaskArtifactUpdateEvent):
            return {"type": "artifact", "taskId": update.task_id,
                    "artifactId": update.artifact.artifact_id,
                    "text": self._text(update.artifact.parts),
                    "append": bool(update.append), "lastChunk": bool(update.last_chunk)}
        return {"type": f"unknown:{type(update).__name__}"}

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        await self.http.aclose()


# ---------------------------------------------------------------------------------------------

async def consume(backend, stream, collector: Collector, source: str, *, stop_after: int = 0,
                  on_chunks=None) -> bool:
    """Read stream into collector; close it early after stop_after chunks (True if it did)."""
    async with contextlib.aclosing(stream):
        async for item in stream:
            event = backend.normalise(item)
            collector.add(event, source)
            if event["type"] == "artifact":
                if on_chunks is not None:
                    on_chunks(collector.chunks)
                if stop_after and collector.chunks >= stop_after:
                    return True  # aclosing() closes the SSE response: the server sees a drop
    return False


async def run(opts: argparse.Namespace, out: dict) -> None:
    backend = (Sdk1Backend if SDK_LINE == "1" else Sdk03Backend)(opts.protocol)
    collector = Collector()
    cancel_job: asyncio.Task | None = None

    def maybe_cancel(chunks: int) -> None:
        nonlocal cancel_job
        if opts.cancel_after and chunks >= opts.cancel_after and cancel_job is None \
                and collector.task_id:
            cancel_job = asyncio.create_task(backend.cancel(collector.task_id))

    try:
        out["card"] = await backend.connect(opts.url)
        out["transport"] = backend.transport_name
        dropped = await consume(backend, backend.send(opts.text), collector, "stream",
                                stop_after=opts.drop_after, on_chunks=maybe_cancel)
        out["dropped"] = dropped
        if dropped and opts.resubscribe:
            await consume(backend, backend.subscribe(collector.task_id), collector, "resubscribe")
    except Exception as exc:  # the agent or the SDK failed: report it, do not crash
        out["error"] = describe_error(exc)
    finally:
        if cancel_job is not None:
            try:
                out["cancel"] = await cancel_job
            except Exception as exc:
                out["cancel"] = {"error": describe_error(exc)}
        if collector.task_id:
            try:
                out["task_after"] = await backend.get_task(collector.task_id)
            except Exception as exc:
                out["task_after"] = {"error": describe_error(exc)}
        out["task_id"] = collector.task_id
        out["events"] = [{k: v for k, v in e.items() if k != "artifacts"} | (
            {"text": "".join(t for _, t in e["artifacts"])} if "artifacts" in e else {})
            for e in collector.events]
        out["artifact_ids"] = list(collector.artifacts)
        out["text"] = collector.text
        out["final_state"] = collector.final_state
        out["terminal"] = collector.final_state in TERMINAL_STATES
        await backend.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("url", help="the agent's base URL (its card is at /.well-known/agent-card.json)")
    p.add_argument("--protocol", choices=("0.3", "1.0"), default=None,
                   help="A2A protocol version to speak (default: 1.0 on a2a-sdk 1.x, 0.3 on 0.3.x)")
    p.add_argument("--text", default="Stream me the text, please.", help="the message to send")
    p.add_argument("--drop-after", type=int, default=0, metavar="K",
                   help="close the stream after K artifact chunks")
    p.add_argument("--resubscribe", action="store_true",
                   help="after --drop-after, resubscribe to the task and keep collecting")
    p.add_argument("--cancel-after", type=int, default=0, metavar="K",
                   help="cancel the task after K artifact chunks")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    opts = p.parse_args(argv)
    if SDK_LINE == "?":
        p.error(f"unsupported a2a-sdk {SDK_VERSION}")
    if opts.protocol is None:
        opts.protocol = "1.0" if SDK_LINE == "1" else "0.3"
    if SDK_LINE == "0.3" and opts.protocol != "0.3":
        p.error(f"a2a-sdk {SDK_VERSION} speaks only A2A 0.3")
    if opts.drop_after < 0 or opts.cancel_after < 0:
        p.error("--drop-after and --cancel-after must be >= 0")
    if opts.resubscribe and not opts.drop_after:
        p.error("--resubscribe needs --drop-after K")
    if opts.drop_after and opts.cancel_after:
        p.error("use --drop-after or --cancel-after, not both")
    if not (opts.timeout > 0):
        p.error("--timeout must be > 0")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    out: dict = {"sdk": SDK_VERSION, "protocol": opts.protocol, "url": opts.url, "transport": None,
                 "card": None, "task_id": None, "events": [], "artifact_ids": [], "text": "",
                 "final_state": None, "terminal": False, "dropped": False, "cancel": None,
                 "task_after": None, "error": None}

    async def bounded() -> None:
        try:
            await asyncio.wait_for(run(opts, out), opts.timeout)
        except asyncio.TimeoutError:
            out["error"] = out["error"] or f"TimeoutError: no end after {opts.timeout} s"

    asyncio.run(bounded())
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
