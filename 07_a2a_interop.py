"""A2A interop: a python-a2a agent and an official a2a-sdk agent stream to each other's clients.

You will see the kit's agent (python-a2a underneath) streamed to the OFFICIAL a2a-sdk 1.3.0
client over A2A v1.0 and v0.3, then an agent written with a2a-sdk alone (AgentExecutor +
TaskUpdater, served by uvicorn) streamed to the kit's StrictStreamingClient over both versions.
A table shows what each client saw (events, chunks, final state) and one verdict line.

    python 07_a2a_interop.py              # the whole demo in one process
    python 07_a2a_interop.py --fast       # no simulated delays
    python 07_a2a_interop.py --serve      # only the kit agent, on http://127.0.0.1:8107
    python 07_a2a_interop.py --url URL    # both clients against any running A2A agent
"""
import argparse
import asyncio
import contextlib
import json
import socket
import sys
import threading
import time
import uuid
from typing import Iterator, Optional

from python_a2a import A2AConnectionError, A2AError, A2AStreamingError
from streaming_kit import StreamingAgent, StrictStreamingClient
from examples_support import demo_parser, paint, print_table, run_demo

DEFAULT_PORT = 8107
QUESTION = "Why does A2A stream an answer as artifact chunks?"
ANSWER = ("Each chunk is a piece of one artifact: the first starts it, the others append to it, "
          "and the task ends completed, so the reader knows it has every word.")


# --8<-- [start:kit_agent]
class InteropAgent(StreamingAgent):
    """Streams a fixed answer word by word; any A2A client can read it (v0.3 and v1.0 on POST /)."""

    def __init__(self, delay: float = 0.05):
        super().__init__(name="Interop agent")
        self.delay = delay

    async def stream_response(self, message):
        for word in ANSWER.split(" "):
            await asyncio.sleep(self.delay)
            yield word + " "
# --8<-- [end:kit_agent]


# --8<-- [start:official_agent]
def official_app(url: str, delay: float):
    """An agent built with a2a-sdk 1.3.0 only: it serves A2A v1.0 and (compat) v0.3 on POST /."""
    from starlette.applications import Starlette
    from a2a.helpers.proto_helpers import new_task, new_text_part
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, TaskState

    class WordsExecutor(AgentExecutor):
        async def execute(self, context, event_queue):
            # 1. the Task comes first; 2. "working"; 3. one artifact, chunk by chunk; 4. "completed"
            await event_queue.enqueue_event(new_task(context.task_id, context.context_id,
                                                     TaskState.TASK_STATE_SUBMITTED))
            updater = TaskUpdater(event_queue, context.task_id, context.context_id)
            await updater.start_work()
            words = ANSWER.split(" ")
            for i, word in enumerate(words):
                await asyncio.sleep(delay)
                await updater.add_artifact([new_text_part(word + " ")], artifact_id="answer", name="answer",
                                           append=i > 0, last_chunk=i == len(words) - 1)
            await updater.complete()

        async def cancel(self, context, event_queue):
            await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()

    card = AgentCard(name="Official agent", description="a2a-sdk 1.3.0 agent streaming a fixed answer",
                     version="1.0.0", capabilities=AgentCapabilities(streaming=True),
                     supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version=v)
                                           for v in ("1.0", "0.3")],
                     default_input_modes=["text/plain"], default_output_modes=["text/plain"],
                     skills=[AgentSkill(id="answer", name="Answer", description="streams its answer",
                                        tags=["streaming"])])
    handler = DefaultRequestHandler(agent_executor=WordsExecutor(), task_store=InMemoryTaskStore(), agent_card=card)
    routes = create_agent_card_routes(card) + create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=True)
    return Starlette(routes=routes)
# --8<-- [end:official_agent]


# --8<-- [start:serve_official]
@contextlib.contextmanager
def serve_official(delay: float) -> Iterator[str]:
    """Run the official agent under uvicorn on 127.0.0.1 (a free port) in a thread; stop it on exit."""
    import uvicorn
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    config = uvicorn.Config(official_app(url + "/", delay), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)  # uvicorn says when it accepts connections; no other signal to wait on
        if not server.started:
            raise RuntimeError("the official agent did not start")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()
# --8<-- [end:serve_official]


# --8<-- [start:official_client]
async def official_client(url: str, version: str) -> Optional[dict]:
    """Stream QUESTION with the a2a-sdk 1.3.0 client over A2A `version`; None if the card lacks it."""
    import httpx
    from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
    from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest, TaskState

    async with httpx.AsyncClient(timeout=30) as http:
        card = await A2ACardResolver(http, url).get_agent_card()
        wanted = [i for i in card.supported_interfaces if i.protocol_version.startswith(version)]
        if not wanted:
            return None
        del card.supported_interfaces[:]  # the factory would take 1.0 whenever the card lists it
        card.supported_interfaces.extend(wanted)
        client = ClientFactory(ClientConfig(streaming=True, httpx_client=http)).create(card)
        request = SendMessageRequest(message=Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()),
                                                     parts=[Part(text=QUESTION)]))
        seen = {"events": 0, "chunks": 0, "text": "", "state": "none"}
        async for response in client.send_message(request):
            seen["events"] += 1
            kind = response.WhichOneof("payload")
            if kind == "artifact_update":
                seen["chunks"] += 1
                seen["text"] += "".join(part.text for part in response.artifact_update.artifact.parts)
            elif kind in ("task", "status_update"):
                status = getattr(response, kind).status
                seen["state"] = TaskState.Name(status.state).removeprefix("TASK_STATE_").lower()
        await client.close()
    return seen
# --8<-- [end:official_client]


# --8<-- [start:kit_client]
async def kit_client(url: str, dialect: Optional[str] = None) -> dict:
    """Stream QUESTION with the kit's client: every chunk in order, or it raises."""
    client = StrictStreamingClient(url, dialect=dialect)
    seen = {"events": 0, "chunks": 0, "text": "", "state": "none"}
    async for chunk in client.stream_response(QUESTION):
        seen["chunks"] += 1
        seen["text"] += chunk["content"]
    seen.update(state="completed", events="-", dialect=client.dialect)  # it raises on any other end (events: not shown)
    return seen
# --8<-- [end:kit_client]


async def interop(url: str, args: argparse.Namespace) -> int:
    """Every client against `url` (the kit agent, or --url's), then, in the demo, the kit's client
    against the official agent; the table, the verdict, the report."""
    rows = [row for version in ("1.0", "0.3") if (row := await _run("a2a-sdk 1.3.0", url, version,
                                                                    official_client(url, version)))]
    agent = "this agent" if args.url else "kit (python-a2a)"
    rows = [{**row, "agent": agent} for row in rows]
    if args.url:
        rows.append({**await _run("kit", url, "auto", kit_client(url)), "agent": agent})
    else:
        with serve_official(0 if args.fast else 0.02) as official_url:
            for version in ("1.0", "0.3"):
                rows.append({**await _run("kit", official_url, version, kit_client(official_url, version)),
                             "agent": "a2a-sdk 1.3.0"})
    return report(rows, args.report, expected=None if args.url else ANSWER)


async def _run(client: str, url: str, version: str, run) -> Optional[dict]:
    """One client's run as a table row; a stream the kit's client refuses is a row, not a crash."""
    try:
        seen = await run
    except A2AStreamingError as refused:  # truncated, or the task failed: what this lesson is about
        seen = {"events": "-", "chunks": 0, "text": "", "state": f"raised {type(refused).__name__}",
                "error": str(refused)}
    except A2AError:
        raise  # the wrong kind of agent: run_demo prints one line
    except Exception as exc:  # the official client's own errors (no card, HTTP errors)
        raise A2AConnectionError(f"a2a-sdk client, A2A {version}, {url}: {type(exc).__name__}: {exc}") from None
    return seen and {"client": client, "protocol": seen.pop("dialect", version), **seen}


def report(rows: list[dict], path: Optional[str], expected: Optional[str]) -> int:
    for row in rows:
        row["ok"] = row["state"] == "completed" and row["chunks"] > 0 and (expected is None or
                                                                           row["text"].strip() == expected)
    print_table(["client", "agent", "A2A", "events", "chunks", "characters", "final state"],
                [[r["client"], r["agent"], r["protocol"], r["events"], r["chunks"], len(r["text"]),
                  r["state"] if r["ok"] else paint(r["state"], "red")] for r in rows])
    passed = bool(rows) and all(row["ok"] for row in rows)
    verdict = (f"{len(rows)} client/agent pairs: every answer whole, ending completed" if passed
               else "some client did not get the whole answer")
    print("\n" + paint(f"Verdict: {verdict}", "green" if passed else "red"))
    if path:
        with open(path, "w") as out:
            json.dump({"passed": passed, "rows": rows}, out, indent=2)
    return 0 if passed else 1


def parse_args(argv=None) -> argparse.Namespace:
    """The shared command line (examples_support.demo_parser) plus --report."""
    parser = demo_parser(__doc__.split("\n")[0], DEFAULT_PORT)
    parser.add_argument("--report", metavar="FILE", help="also write the results as JSON to FILE")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_demo(args, lambda: InteropAgent(0 if args.fast else 0.05), lambda url: interop(url, args))


if __name__ == "__main__":
    sys.exit(main())
