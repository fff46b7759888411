"""The kit's serve() against the practical limit of its stack, side by side in one run (issue 14).

    python bench/bench_perf.py --quick          # kit and bare Flask, small sizes: < 1 minute
    python bench/bench_perf.py                  # every server, the issue's sizes: a few minutes
    python bench/bench_perf.py --servers kit,flask --figures latency,slow --slow-streams 1000
    python bench/bench_perf.py --servers asgi,starlette --figures slow --slow-streams 1000 --repeat 3

Servers, each in its own process: the kit's serve() ("kit", werkzeug threads), the kit's
serve_asgi() ("asgi", uvicorn, one event loop), the kit's Flask app under gunicorn gthread,
a bare Flask SSE endpoint (same werkzeug), a bare Starlette SSE endpoint under uvicorn, stock
python-a2a (its own run_server) and an a2a-sdk 1.3.0 agent under uvicorn. Every one streams
chunks that carry the moment they were made (the system-wide monotonic clock), so the client
(this process) reads latency off each chunk. With --repeat N each server is measured N times,
in turns (so a busy moment of the machine hits every server alike), and the median is shown.
Measures and prints; never asserts.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVERS = ("kit", "asgi", "gunicorn", "flask", "starlette", "stock", "a2a-sdk")
FIGURES = ("latency", "throughput", "cpu", "first", "slow")
STAMP = re.compile(rb"@(\d+\.\d+)@")
TARGETS = {"latency": ("<=", 1.25), "throughput": (">=", 0.6), "cpu": ("<=", 1.5), "slowest": ("<=", 1.5)}
ASGI_TARGET = 1.25  # the kit's serve_asgi against bare Starlette: wall time and CPU of the most slow streams


# ---------------------------------------------------------------- what every server streams
def stamp() -> str:
    return f"@{time.monotonic():.6f}@"


def parse_order(text: str) -> tuple[int, float]:
    count, delay = text.split()
    return int(count), float(delay)


async def async_stamps(text: str):
    count, delay = parse_order(text)
    for _ in range(count):
        if delay:
            await asyncio.sleep(delay)
        yield stamp()


def kit_agent():
    import streaming_kit as kit

    class StampAgent(kit.StreamingAgent):
        async def stream_response(self, message):
            async for chunk in async_stamps(kit.message_text(message)):
                yield chunk

    return StampAgent()


def kit_wsgi_app():
    """gunicorn's entry point: the kit agent's Flask app (gunicorn 'bench_perf:kit_wsgi_app()')."""
    import streaming_kit as kit
    from python_a2a.server.http import create_flask_app
    kit.quiet()
    return create_flask_app(kit_agent())


def bare_flask_app():
    """The least a Flask SSE endpoint can do: the same events, sync generator, no agent machinery."""
    from flask import Flask, Response, request
    app = Flask("bare")

    @app.post("/stream")
    def stream():
        count, delay = parse_order(request.get_json()["content"]["text"])

        def events():
            for index in range(count):
                if delay:
                    time.sleep(delay)
                yield f"id: {index}\ndata: {json.dumps({'content': stamp(), 'index': index})}\n\n"
            yield f"data: {json.dumps({'content': '', 'index': count, 'lastChunk': True})}\n\n"
        return Response(events(), mimetype="text/event-stream")
    return app


def bare_starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def stream(request):
        text = (await request.json())["content"]["text"]

        async def events():
            index = 0
            async for chunk in async_stamps(text):
                yield f"id: {index}\ndata: {json.dumps({'content': chunk, 'index': index})}\n\n"
                index += 1
            yield f"data: {json.dumps({'content': '', 'index': index, 'lastChunk': True})}\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")
    return Starlette(routes=[Route("/stream", stream, methods=["POST"])])


def a2a_sdk_app(url: str):
    """An official a2a-sdk 1.3.0 agent (A2A v1.0 JSON-RPC): each chunk an artifact update."""
    from a2a.helpers import new_task
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types import AgentCapabilities, AgentCard, AgentInterface, Part, TaskState
    from starlette.applications import Starlette

    class StampExecutor(AgentExecutor):
        async def execute(self, context, event_queue):
            await event_queue.enqueue_event(new_task(context.task_id, context.context_id, TaskState.TASK_STATE_SUBMITTED))
            updater = TaskUpdater(event_queue, context.task_id, context.context_id)
            first = True
            async for chunk in async_stamps(context.get_user_input()):
                await updater.add_artifact([Part(text=chunk)], artifact_id="answer", append=not first)
                first = False
            await updater.complete()

        async def cancel(self, context, event_queue):
            pass

    card = AgentCard(name="bench", description="stamps", version="1.0",
                     supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")],
                     capabilities=AgentCapabilities(streaming=True), default_input_modes=["text/plain"],
                     default_output_modes=["text/plain"])
    handler = DefaultRequestHandler(StampExecutor(), InMemoryTaskStore(), card)
    return Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")])


def serve_kind(kind: str, port: int) -> None:
    """The server process: run one kind of server on 127.0.0.1:port until terminated."""
    import logging
    import threading
    import streaming_kit as kit
    kit.quiet()
    url = f"http://127.0.0.1:{port}"
    if kind == "kit":
        with kit.serve(kit_agent(), port=port):
            threading.Event().wait()
    elif kind == "asgi":
        with kit.serve_asgi(kit_agent(), port=port):
            threading.Event().wait()
    elif kind == "flask":
        from werkzeug.serving import make_server
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        make_server("127.0.0.1", port, bare_flask_app(), threaded=True).serve_forever()
    elif kind == "stock":
        from python_a2a import A2AServer, run_server

        class StockAgent(A2AServer):
            async def stream_response(self, message):
                async for chunk in async_stamps(message.content.text):
                    yield chunk
        run_server(StockAgent(url=url), host="127.0.0.1", port=port)
    else:
        import uvicorn
        app = bare_starlette_app() if kind == "starlette" else a2a_sdk_app(url)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", backlog=2048)


def start_server(kind: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    if kind == "gunicorn":
        command = [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "2", "--threads", "512",
                   "--backlog", "2048", "--graceful-timeout", "1", "--log-level", "error",
                   "-b", f"127.0.0.1:{port}", "--chdir", str(ROOT / "bench"), "bench_perf:kit_wsgi_app()"]
    else:
        command = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not answers(url):
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError(f"{kind} server did not start")
        time.sleep(0.05)
    return server, url


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/agent.json", timeout=1).close()
    except urllib.error.HTTPError:
        pass  # answered, with a 404: up
    except OSError:
        return False
    return True


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU of the process and its children (gunicorn's workers), from /proc."""
    pids = [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    ticks = 0
    for each in pids:
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the client
class Stream:
    """One stream's outcome: latency of each chunk, whether all came, how long it took."""

    def __init__(self, count: int):
        self.count, self.latencies, self.first, self.seconds, self.error = count, [], None, 0.0, None

    @property
    def complete(self) -> bool:
        return len(self.latencies) == self.count and self.error is None


def request_for(kind: str, url: str, text: str) -> tuple[str, dict, dict]:
    if kind == "a2a-sdk":
        body = {"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage", "params": {"message": {
            "messageId": str(uuid.uuid4()), "role": "ROLE_USER", "parts": [{"text": text}]}}}
        return f"{url}/", body, {"A2A-Version": "1.0"}
    return f"{url}/stream", {"content": {"type": "text", "text": text}, "role": "user"}, {}


async def one_stream(session: aiohttp.ClientSession, kind: str, url: str, count: int, delay: float) -> Stream:
    result, tail = Stream(count), b""
    address, body, headers = request_for(kind, url, f"{count} {delay}")
    started = time.monotonic()
    try:
        async with session.post(address, json=body, headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
            async for data in response.content.iter_any():
                now = time.monotonic()
                found = list(STAMP.finditer(tail + data))
                if found:
                    result.first = result.first or now - started
                    result.latencies += [now - float(match[1]) for match in found]
                    tail = (tail + data)[found[-1].end():]
                else:
                    tail += data
    except Exception as exc:  # a reset or a refusal: the stream counts as incomplete
        result.error = f"{type(exc).__name__}: {exc}"
    result.seconds = time.monotonic() - started
    return result


async def streams(kind: str, url: str, how_many: int, count: int, delay: float) -> list[Stream]:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        return await asyncio.gather(*(one_stream(session, kind, url, count, delay) for _ in range(how_many)))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def measure(kind: str, url: str, pid: int, figure: str, size: dict) -> dict:
    if figure == "latency":
        got = asyncio.run(streams(kind, url, 1, size["latency_chunks"], 0.002))[0].latencies
        return {"median_ms": statistics.median(got) * 1000, "p99_ms": percentile(got, 0.99) * 1000}
    if figure == "throughput":
        started = time.perf_counter()
        stream = asyncio.run(streams(kind, url, 1, size["throughput_chunks"], 0.0))[0]
        return {"chunks_per_s": len(stream.latencies) / (time.perf_counter() - started),
                "lost": stream.count - len(stream.latencies)}
    if figure == "cpu":
        before = server_cpu_seconds(pid)
        done = asyncio.run(streams(kind, url, size["cpu_streams"], 100, 0.002))
        chunks = sum(len(s.latencies) for s in done)
        return {"cpu_s_per_1000": (server_cpu_seconds(pid) - before) / chunks * 1000, "chunks": chunks}
    if figure == "first":
        firsts = [asyncio.run(streams(kind, url, 1, 3, 0.0))[0].first for _ in range(20)]
        arrived = [f for f in firsts if f is not None]  # stock python-a2a may lose a short stream whole (§1)
        return {"median_ms": statistics.median(arrived) * 1000 if arrived else float("nan")}
    results = {}
    for how_many in size["slow_streams"]:
        before = server_cpu_seconds(pid)
        done = asyncio.run(streams(kind, url, how_many, 50, 0.05))
        received = [latency for s in done for latency in s.latencies]
        results[how_many] = {"complete": sum(s.complete for s in done), "lost": how_many * 50 - len(received),
                             "slowest_s": max(s.seconds for s in done), "p99_ms": percentile(received, 0.99) * 1000,
                             "server_cpu_s": server_cpu_seconds(pid) - before,
                             "errors": sorted({s.error for s in done if s.error})[:3]}
    return results


def measure_server(kind: str, figures: list[str], size: dict) -> dict:
    server, url = start_server(kind)
    try:
        return {figure: measure(kind, url, server.pid, figure, size) for figure in figures}
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


# ---------------------------------------------------------------- the report
def rows_of(figures: dict) -> dict[str, str]:
    """figure name -> printed value, per server."""
    out = {}
    for figure, values in figures.items():
        if figure == "slow":
            for how_many, v in values.items():
                out[f"{how_many} streams x 50 at 50 ms"] = (f"{v['complete']:g}/{how_many} complete, lost {v['lost']:g}, "
                                                           f"slowest {v['slowest_s']:.2f} s, p99 {v['p99_ms']:.0f} ms, "
                                                           f"cpu {v['server_cpu_s']:.1f} s")
        elif figure == "latency":
            out["latency median / p99 (2 ms gaps)"] = f"{values['median_ms']:.3f} / {values['p99_ms']:.2f} ms"
        elif figure == "throughput":
            out["one stream, zero delay"] = f"{values['chunks_per_s']:,.0f} chunks/s (lost {values['lost']:g})"
        elif figure == "cpu":
            out["server CPU per 1,000 chunks"] = f"{values['cpu_s_per_1000']:.3f} s"
        else:
            out["time to first chunk"] = f"{values['median_ms']:.2f} ms"
    return out


def ratios(kit: dict, flask: dict) -> list[str]:
    """kit / bare Flask for the issue's four targets."""
    found = {}
    if "latency" in kit:
        found["latency"] = kit["latency"]["median_ms"] / flask["latency"]["median_ms"]
    if "throughput" in kit:
        found["throughput"] = kit["throughput"]["chunks_per_s"] / flask["throughput"]["chunks_per_s"]
    if "cpu" in kit:
        found["cpu"] = kit["cpu"]["cpu_s_per_1000"] / flask["cpu"]["cpu_s_per_1000"]
    if "slow" in kit:
        fewest = min(kit["slow"])
        found["slowest"] = kit["slow"][fewest]["slowest_s"] / flask["slow"][fewest]["slowest_s"]
    lines = []
    for name, ratio in found.items():
        sense, target = TARGETS[name]
        met = ratio <= target if sense == "<=" else ratio >= target
        lines.append(f"  {name:<11} kit/bare Flask = {ratio:.2f}  (target {sense} {target}: {'met' if met else 'NOT met'})")
    return lines


def asgi_ratios(asgi: dict, starlette: dict) -> list[str]:
    """serve_asgi / bare Starlette for the most slow streams: the slowest stream and the server's CPU."""
    if "slow" not in asgi:
        return []
    most = max(asgi["slow"])
    lines = []
    for name, key in (("slowest", "slowest_s"), ("cpu", "server_cpu_s")):
        ratio = asgi["slow"][most][key] / starlette["slow"][most][key]
        met = "met" if ratio <= ASGI_TARGET else "NOT met"
        lines.append(f"  {name:<11} asgi/bare Starlette = {ratio:.2f}  ({most} streams; target <= {ASGI_TARGET}: {met})")
    return lines


def median_of(runs: list):
    """The median of each number across runs of the same figures (the first run's other values)."""
    first = runs[0]
    if isinstance(first, dict):
        return {key: median_of([run[key] for run in runs]) for key in first}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return statistics.median(runs)
    return first


def print_report(results: dict) -> None:
    import examples_support
    table = {kind: rows_of(figures) for kind, figures in results.items()}
    names = list(next(iter(table.values())))
    examples_support.print_table(["figure", *table], [[name, *(table[k].get(name, "") for k in table)] for name in names])
    lines = []
    if "kit" in results and "flask" in results:
        lines += ratios(results["kit"], results["flask"])
    if "asgi" in results and "starlette" in results:
        lines += asgi_ratios(results["asgi"], results["starlette"])
    if lines:
        print("\nratios:\n" + "\n".join(lines))
    print(f"\nmachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, loopback")


def raise_fd_limit() -> None:
    """1,000 streams need 1,000+ fds on each side; children (the servers) inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def listed(choices: tuple[str, ...]):
    def parse(value: str) -> list[str]:
        picked = [v for v in value.split(",") if v]
        unknown = [v for v in picked if v not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {','.join(choices)}")
        return picked
    return parse


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="example: python bench/bench_perf.py --quick")
    parser.add_argument("--quick", action="store_true", help="kit and flask, small sizes (< 1 minute)")
    parser.add_argument("--servers", type=listed(SERVERS), help=f"comma list of {','.join(SERVERS)}")
    parser.add_argument("--figures", type=listed(FIGURES), help=f"comma list of {','.join(FIGURES)}")
    parser.add_argument("--slow-streams", type=lambda v: [int(n) for n in v.split(",")],
                        help="stream counts for the slow figure (default 500,1000; --quick 500)")
    parser.add_argument("--repeat", type=int, default=1, help="measure each server N times in turns; show medians")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)  # a server process
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    if args.serve:
        serve_kind(args.serve, args.port)
        return 0
    servers = args.servers or (["kit", "flask"] if args.quick else list(SERVERS))
    size = {"latency_chunks": 300, "throughput_chunks": 3000 if args.quick else 5000,
            "cpu_streams": 50 if args.quick else 100,
            "slow_streams": args.slow_streams or ([500] if args.quick else [500, 1000])}
    figures = args.figures or list(FIGURES)
    runs: dict[str, list] = {kind: [] for kind in servers}
    for turn in range(args.repeat):
        for kind in servers:
            print(f"measuring {kind} ({turn + 1} of {args.repeat}) ...", file=sys.stderr, flush=True)
            runs[kind].append(measure_server(kind, figures, size))
    results = {kind: median_of(done) for kind, done in runs.items()}
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
