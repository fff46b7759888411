#!/usr/bin/env python3
"""An agent built only from the official A2A Python SDK (a2a-sdk), for the test rig.

Runs under either SDK line (detected at import):
  - a2a-sdk 1.3.0 (the main interpreter): modes v1, v1-compat, broken-no-terminal
  - a2a-sdk 0.3.26 (the venv from sdk_venv.py): modes v03, broken-no-terminal

    python official_agent.py --port 0 [--mode MODE] [--chunks N] [--text TEXT] [--delay SECONDS]

The first stdout line is exactly ``Serving official-agent at http://127.0.0.1:PORT`` (flushed once
the server accepts connections); it then serves until SIGTERM/SIGINT. Only 127.0.0.1 is bound.

What every mode streams for one message (the user's text is ignored; the agent's text is --text):
  Task(submitted) -> status working -> N artifact-update chunks of --text under ONE artifactId
  (append false on the first, true after; lastChunk true on the last; --delay seconds before each)
  -> status completed.

Modes:
  v1                  1.3.0, JSON-RPC v1.0 only (SendStreamingMessage...; needs A2A-Version: 1.0)
  v1-compat           1.3.0 with create_jsonrpc_routes(enable_v0_3_compat=True); the card lists a
                      1.0 and a 0.3 interface, and the SDK then emits a dual v1.0 + v0.3 card
  v03                 0.3.26 (message/stream...), a v0.3 card
  broken-no-terminal  the chunks, then the executor returns without a terminal status: both SDKs
                      then end the SSE stream, so a client sees no completed/failed/canceled.
                      Under 1.3.0 it serves v1.0 and v0.3 (compat on) so every client can see it.

--delay makes the stream slow, so tests can drop the connection mid-stream and resubscribe, or
cancel. Cancel is the SDK's: AgentExecutor.cancel publishes a canceled status.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import socket
import sys

SDK_VERSION = importlib.metadata.version("a2a-sdk")
SDK_LINE = "1" if SDK_VERSION.startswith("1.") else "0.3" if SDK_VERSION.startswith("0.3.") else "?"

MODES_BY_SDK = {"1": ("v1", "v1-compat", "broken-no-terminal"), "0.3": ("v03", "broken-no-terminal")}
ALL_MODES = ("v1", "v1-compat", "v03", "broken-no-terminal")

DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog, one chunk at a time."
ARTIFACT_ID = "official-agent-text"
ARTIFACT_NAME = "streamed-text"
HOST = "127.0.0.1"


def split_text(text: str, n: int) -> list[str]:
    """Split text into n contiguous, non-empty pieces (sizes differ by at most one)."""
    n = max(1, min(n, len(text)))
    size, extra = divmod(len(text), n)
    pieces, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


# ---------------------------------------------------------------------------------------------
# a2a-sdk 1.3.0 (A2A v1.0; v0.3 through the SDK's compat adapter)
# ---------------------------------------------------------------------------------------------

def build_app_v1(url: str, opts: argparse.Namespace):
    from starlette.applications import Starlette

    from a2a.helpers.proto_helpers import new_task, new_text_part
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types.a2a_pb2 import (
        AgentCapabilities, AgentCard, AgentInterface, AgentSkill, TaskState,
    )

    pieces = split_text(opts.text, opts.chunks)
    terminal = opts.mode != "broken-no-terminal"

    class ChunkedTextExecutor(AgentExecutor):
        async def execute(self, context, event_queue):
            # The v1 handler requires a Task before any status/artifact event.
            if context.current_task is None:
                await event_queue.enqueue_event(new_task(
                    context.task_id, context.context_id, TaskState.TASK_STATE_SUBMITTED,
                    history=[context.message] if context.message else None))
            updater = TaskUpdater(event_queue, context.task_id, context.context_id)
            await updater.start_work()
            for i, piece in enumerate(pieces):
                if opts.delay:
                    await asyncio.sleep(opts.delay)
                await updater.add_artifact([new_text_part(piece)], artifact_id=ARTIFACT_ID,
                                           name=ARTIFACT_NAME, append=i > 0,
                                           last_chunk=i == len(pieces) - 1)
            if terminal:
                await updater.complete()
            # broken-no-terminal: return with the task still 'working'. The SDK's ActiveTask then
            # finishes the request and the streaming subscriber ends the SSE response.

        async def cancel(self, context, event_queue):
            # The SDK awaits this, then cancels the running execute() task.
            await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()

    compat = opts.mode in ("v1-compat", "broken-no-terminal")
    interfaces = [AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")]
    if compat:
        interfaces.append(AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="0.3"))
    card = AgentCard(
        name="official-agent",
        description=f"a2a-sdk {SDK_VERSION} reference agent ({opts.mode}): streams a fixed text "
                    f"in {len(pieces)} artifact chunks",
        version="1.0.0",
        supported_interfaces=interfaces,
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="stream-text", name="Stream text",
                           description="Streams a fixed text as appended artifact chunks",
                           tags=["streaming", "test-rig"])],
    )
    handler = DefaultRequestHandler(agent_executor=ChunkedTextExecutor(),
                                    task_store=InMemoryTaskStore(), agent_card=card)
    routes = create_agent_card_routes(card) + create_jsonrpc_routes(
        handler, rpc_url="/", enable_v0_3_compat=compat)
    return Starlette(routes=routes)


# ---------------------------------------------------------------------------------------------
# a2a-sdk 0.3.26 (A2A v0.3)
# ---------------------------------------------------------------------------------------------

def build_app_v03(url: str, opts: argparse.Namespace):
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.apps import A2AStarletteApplication
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types import (
        AgentCapabilities, AgentCard, AgentSkill, Part, Task, TaskState, TaskStatus, TextPart,
    )

    pieces = split_text(opts.text, opts.chunks)
    terminal = opts.mode != "broken-no-terminal"

    class ChunkedTextExecutor(AgentExecutor):
        async def execute(self, context, event_queue):
            if context.current_task is None:
                await event_queue.enqueue_event(Task(
                    id=context.task_id, context_id=context.context_id,
                    status=TaskStatus(state=TaskState.submitted),
                    history=[context.message] if context.message else None))
            updater = TaskUpdater(event_queue, context.task_id, context.context_id)
            await updater.start_work()
            try:
                for i, piece in enumerate(pieces):
                    if opts.delay:
                        await asyncio.sleep(opts.delay)
                    await updater.add_artifact([Part(root=TextPart(text=piece))],
                                               artifact_id=ARTIFACT_ID, name=ARTIFACT_NAME,
                                               append=i > 0, last_chunk=i == len(pieces) - 1)
            except asyncio.CancelledError:
                # tasks/cancel cancels this coroutine. 0.3.26's handler closes the task's event
                # queue only when execute() returns normally (and its cleanup task is started
                # only when the stream ends), so without this final event a live message/stream
                # stays open forever after a cancel. Publishing 'canceled' here ends it.
                await updater.cancel()
                raise
            if terminal:
                await updater.complete()
            # broken-no-terminal: returning makes the 0.3 handler close the event queue, which
            # ends the SSE response with no final status.

        async def cancel(self, context, event_queue):
            # 0.3.26 passes a TAP of the task's queue (what is enqueued here reaches only the
            # cancel call, not the live stream), consumes it until a final event, then cancels
            # the running execute() task; tasks/cancel answers with the resulting Task.
            await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()

    card = AgentCard(
        name="official-agent",
        description=f"a2a-sdk {SDK_VERSION} reference agent ({opts.mode}): streams a fixed text "
                    f"in {len(pieces)} artifact chunks",
        url=url,
        version="1.0.0",
        protocol_version="0.3.0",
        preferred_transport="JSONRPC",
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="stream-text", name="Stream text",
                           description="Streams a fixed text as appended artifact chunks",
                           tags=["streaming", "test-rig"])],
    )
    handler = DefaultRequestHandler(agent_executor=ChunkedTextExecutor(),
                                    task_store=InMemoryTaskStore())
    return A2AStarletteApplication(agent_card=card, http_handler=handler).build()


# ---------------------------------------------------------------------------------------------

async def serve(opts: argparse.Namespace) -> None:
    import uvicorn

    # Bind first, so the port (chosen by the OS for --port 0) is known before the card is built.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, opts.port))
    port = sock.getsockname()[1]
    url = f"http://{HOST}:{port}"
    # Interfaces carry the JSON-RPC endpoint itself (the route is mounted at '/').
    app = (build_app_v1 if SDK_LINE == "1" else build_app_v03)(url + "/", opts)

    config = uvicorn.Config(app, log_level=opts.log_level, lifespan="off",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)  # handles SIGTERM/SIGINT: graceful stop, then exit 0
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            await serving  # startup failed: raise its error
            raise SystemExit("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
    print(f"Serving official-agent at {url}", flush=True)
    await serving


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: pick a free one)")
    p.add_argument("--mode", choices=ALL_MODES, default=None,
                   help="default: v1 under a2a-sdk 1.x, v03 under 0.3.x")
    p.add_argument("--chunks", type=int, default=5, help="artifact chunks (>= 1)")
    p.add_argument("--text", default=DEFAULT_TEXT, help="the text the agent streams")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each chunk")
    p.add_argument("--log-level", default="warning", help="uvicorn log level")
    opts = p.parse_args(argv)
    if SDK_LINE not in MODES_BY_SDK:
        p.error(f"unsupported a2a-sdk {SDK_VERSION}")
    if opts.mode is None:
        opts.mode = MODES_BY_SDK[SDK_LINE][0]
    if opts.mode not in MODES_BY_SDK[SDK_LINE]:
        p.error(f"mode {opts.mode} needs a2a-sdk "
                f"{'1.x' if opts.mode.startswith('v1') else '0.3.x'}; this is {SDK_VERSION}")
    if opts.chunks < 1:
        p.error("--chunks must be >= 1")
    if not opts.text:
        p.error("--text must not be empty")
    if not (opts.delay >= 0):  # also refuses nan
        p.error("--delay must be >= 0")
    if not 0 <= opts.port <= 65535:
        p.error("--port must be 0..65535")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        asyncio.run(serve(opts))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
