"""Smoke harness: does A2A streaming work correctly on this machine, or on your agent?

    python core_streaming_test.py                        # full checklist, with its own test agents
    python core_streaming_test.py --url http://127.0.0.1:8100   # protocol checks on a running agent
    python core_streaming_test.py --json                 # results as JSON

One line per check, ✓ or ✗ with the reason. Exit code 0 only when every check passes.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Awaitable, Callable

import streaming_kit as kit
import examples_support
from python_a2a import A2AStreamingError
from streaming_kit import StreamTruncatedError

KNOWN_GOOD_A2A = "0.5.10"
REQUIRED = ("python-a2a", "flask", "werkzeug", "aiohttp", "colorama", "tqdm")
MANY_CHUNKS = 2000
BAD_BODIES = {  # what a server must refuse with 4xx, not 500 or a hang
    "malformed JSON": b"{not json",
    "JSON that is not an object": b"[1, 2]",
    "no message": b'{"hello": "world"}',
    "text of the wrong type": b'{"content": {"type": "text", "text": 42}, "role": "user"}',
}


REFUSALS = {400, 413, 415, 422}  # the statuses that say "I read your request and refuse it"


class CheckFailed(Exception):
    """A check's own verdict: the reason it failed."""


@dataclass
class Result:
    check: str
    ok: bool
    detail: str


# ---------------------------------------------------------------- the local test agent
class HarnessAgent(kit.StreamingAgent):
    """Obeys commands: 'count N', 'idle S', 'fail', 'forever'; echoes anything else."""

    keepalive_seconds = 0.2  # short, so the idle check runs in about a second

    def __init__(self):
        super().__init__(name="Smoke-test agent")
        self.forever_closed = threading.Event()

    async def stream_response(self, message):
        command, _, arg = kit.message_text(message).partition(" ")
        if command == "count":
            for i in range(int(arg)):
                yield f"c{i} "
        elif command == "idle":
            yield "before "
            await asyncio.sleep(float(arg))
            yield "after"
        elif command == "fail":
            yield "partial "
            raise RuntimeError("deliberate failure")
        elif command == "forever":
            try:
                while True:
                    yield "tick "
                    await asyncio.sleep(0.01)
            finally:
                self.forever_closed.set()
        else:
            for word in kit.message_text(message).split(" "):
                yield word + " "


# ---------------------------------------------------------------- environment checks
def check_python() -> str:
    if sys.version_info < (3, 10):
        raise CheckFailed(f"Python {sys.version.split()[0]}; the kit and aiohttp need 3.10 or newer")
    return f"Python {sys.version.split()[0]}"


def check_packages() -> str:
    versions, missing = [], []
    for name in REQUIRED:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        raise CheckFailed(f"not installed: {', '.join(missing)} (pip install -r requirements.txt)")
    return ", ".join(versions)


def check_a2a_version() -> str:
    version = importlib.metadata.version("python-a2a")
    if version != KNOWN_GOOD_A2A:
        raise CheckFailed(f"python-a2a {version}; the kit is verified with {KNOWN_GOOD_A2A} only")
    return f"python-a2a {version}, the version the kit is verified with"


# ---------------------------------------------------------------- protocol checks (any server)
async def check_agent_card(url: str) -> str:
    status, body = _http("GET", f"{url}/agent.json")
    if status != 200:
        raise CheckFailed(f"GET /agent.json answered HTTP {status}: is this a python-a2a server's base URL?")
    try:
        card = json.loads(body)
    except ValueError:
        raise CheckFailed(f"GET /agent.json did not answer JSON: {body[:60]!r}") from None
    if not card.get("capabilities", {}).get("streaming"):
        raise CheckFailed(f"agent card of {card.get('name')!r} does not claim capabilities.streaming")
    return f"{card.get('name')!r} claims streaming"


async def check_round_trip(url: str, text: str) -> str:
    reply = await kit.StrictStreamingClient(url, timeout=10).send_message_async(text)
    answer = kit.message_text(reply)
    if not answer:
        raise CheckFailed("the non-streaming reply has no text")
    return f"{len(answer)} characters back"


def _describe(problem: A2AStreamingError | None, indices: list[int]) -> str:
    """What went wrong with one stream, in words; "" when nothing did."""
    if isinstance(problem, StreamTruncatedError):
        where = f"after chunk #{indices[-1]}" if indices else "before any chunk"
        return f"ended {where} without the lastChunk marker, so its tail is lost"
    return str(problem or "")


async def stream_once(url: str, text: str, idle_timeout: float = 10) -> tuple[list[int], str, A2AStreamingError | None]:
    """Indices received, text, and what went wrong (None when the stream ended with its marker)."""
    indices, pieces = [], []
    try:
        async for chunk in kit.StrictStreamingClient(url, timeout=idle_timeout).stream_response(text):
            indices.append(chunk.get("index", len(indices)) if isinstance(chunk, dict) else len(indices))
            pieces.append(kit.chunk_text(chunk))
    except A2AStreamingError as exc:
        return indices, "".join(pieces), exc
    return indices, "".join(pieces), None


async def check_streams_complete(url: str, text: str, runs: int) -> str:
    """Stream the same message several times; any gap, short run or missing marker is a loss."""
    results = [await stream_once(url, text) for _ in range(runs)]
    longest = max(len(indices) for indices, _, _ in results)
    problems: dict[str, list[int]] = {}  # problem -> the runs that had it
    for run, (indices, _, problem) in enumerate(results, 1):
        lost = sorted(set(range(longest)) - set(indices))
        found = [f"lost chunk(s) #{', #'.join(map(str, lost))}" if lost else "", _describe(problem, indices)]
        for text in filter(None, found):
            problems.setdefault(text, []).append(run)
    if problems:
        raise CheckFailed("; ".join(f"run{'s' * (len(runs_) > 1)} {', '.join(map(str, runs_))}: {text}"
                                    for text, runs_ in problems.items()))
    return f"{runs} runs × {longest} chunks, in order, each with the lastChunk marker"


async def check_bad_input(url: str) -> str:
    answers = {name: _http("POST", f"{url}/stream", body)[0] for name, body in BAD_BODIES.items()}
    if set(answers.values()) & {404, 405}:  # 4xx, but no refusal: nothing at /stream read the body
        raise CheckFailed(f"POST /stream answered HTTP {sorted(set(answers.values()))}: no streaming endpoint here")
    wrong = [f"{name} → {status}" for name, status in answers.items() if status not in REFUSALS]
    if wrong:
        raise CheckFailed(f"expected {'/'.join(map(str, sorted(REFUSALS)))} for: " + ", ".join(wrong))
    if _http("GET", f"{url}/agent.json")[0] != 200:
        raise CheckFailed("the server stopped answering after bad input")
    return f"{len(answers)} bad requests → " + ", ".join(sorted({str(s) for s in answers.values()}))


# ---------------------------------------------------------------- checks that need the harness agent
async def check_many_chunks(url: str) -> str:
    indices, _, problem = await stream_once(url, f"count {MANY_CHUNKS}")
    if problem or indices != list(range(MANY_CHUNKS)):
        raise CheckFailed(f"{len(indices)}/{MANY_CHUNKS} chunks arrived in order; {problem or 'gaps'}")
    return f"{MANY_CHUNKS}/{MANY_CHUNKS} chunks at zero delay, in order, with the final marker"


async def check_idle_gap(url: str, agent: HarnessAgent) -> str:
    gap, idle_timeout = agent.keepalive_seconds * 5, agent.keepalive_seconds * 3
    _, text, problem = await stream_once(url, f"idle {gap}", idle_timeout=idle_timeout)
    if problem or text != "before after":
        raise CheckFailed(f"a {gap:g} s silence broke the stream: {problem or repr(text)}")
    return f"{gap:g} s silence kept alive by pings (client idle limit {idle_timeout:g} s)"


async def check_error_surfaces(url: str) -> str:
    _, text, problem = await stream_once(url, "fail")
    if not problem or "deliberate failure" not in str(problem):
        raise CheckFailed(f"the agent's exception did not reach the client (got text {text!r})")
    return f"client raised: {problem}"


async def check_disconnect(url: str, agent: HarnessAgent) -> str:
    agent.forever_closed.clear()
    client = kit.StrictStreamingClient(url)
    async for chunk in client.stream_response("forever"):
        if chunk["index"] == 2:
            break  # hang up after three chunks
    if not await asyncio.to_thread(agent.forever_closed.wait, 5):
        raise CheckFailed("the agent kept running 5 s after the client hung up")
    return "the agent's generator was closed when the client hung up"


# ---------------------------------------------------------------- running
def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Checklist:
    """Runs checks one by one; each line is printed as soon as its check ends (not with --json)."""

    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.results: list[Result] = []
        self.marks = ("✓", "✗") if "utf" in (sys.stdout.encoding or "").lower() else ("PASS", "FAIL")

    async def run(self, name: str, check: Callable[[], Awaitable[str] | str]) -> None:
        try:
            outcome = check()
            self.add(Result(name, True, await outcome if asyncio.iscoroutine(outcome) else outcome))
        except CheckFailed as failure:
            self.add(Result(name, False, str(failure)))
        except Exception as error:  # an unexpected error is a failed check, with its reason
            self.add(Result(name, False, f"{type(error).__name__}: {error}"))

    def add(self, result: Result) -> None:
        self.results.append(result)
        if not self.as_json:
            mark = examples_support.paint(self.marks[0], "green") if result.ok else examples_support.paint(self.marks[1], "red")
            print(f"{mark} {result.check}: {result.detail}", flush=True)

    def finish(self) -> bool:
        """Print the verdict (or the JSON); True when every check passed."""
        passed = all(r.ok for r in self.results)
        if self.as_json:
            print(json.dumps({"passed": passed, "checks": [asdict(r) for r in self.results]}, indent=2))
        else:
            failed = sum(not r.ok for r in self.results)
            print(f"\n{len(self.results) - failed} passed, {failed} failed")
        return passed


def protocol_checks(url: str, text: str, runs: int) -> list[tuple[str, Callable]]:
    return [("agent card served", lambda: check_agent_card(url)),
            ("non-streaming round trip", lambda: check_round_trip(url, text)),
            ("streams complete and in order", lambda: check_streams_complete(url, text, runs)),
            ("bad input gets 4xx", lambda: check_bad_input(url))]


async def run_local(checklist: Checklist, runs: int) -> None:
    for name, check in (("Python version", check_python), ("packages importable", check_packages),
                        ("python-a2a version", check_a2a_version)):
        await checklist.run(name, check)
    agent = HarnessAgent()
    started = time.perf_counter()
    with kit.serve(agent) as url:
        checklist.add(Result("server starts on a free port", True,
                             f"{url} in {(time.perf_counter() - started) * 1000:.0f} ms"))
        for name, check in protocol_checks(url, "hello streaming world", runs) + [
                (f"{MANY_CHUNKS} chunks at zero delay", lambda: check_many_chunks(url)),
                ("long idle gap survives", lambda: check_idle_gap(url, agent)),
                ("agent error surfaces as an error", lambda: check_error_surfaces(url)),
                ("client disconnect stops the agent", lambda: check_disconnect(url, agent))]:
            await checklist.run(name, check)


async def run_remote(checklist: Checklist, url: str, text: str, runs: int) -> None:
    for name, check in protocol_checks(url, text, runs):
        await checklist.run(name, check)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return int(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", type=examples_support.http_url, help="check a running python-a2a streaming server instead")
    parser.add_argument("--message", default="Hello from the streaming smoke test", help="text sent with --url")
    parser.add_argument("--runs", type=_positive, default=5, help="streams per completeness check (default 5)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--verbose", action="store_true", help="show library logs")
    args = parser.parse_args(argv)
    if not args.verbose:
        kit.quiet()
    checklist = Checklist(args.json)
    try:
        asyncio.run(run_remote(checklist, args.url, args.message, args.runs) if args.url
                    else run_local(checklist, args.runs))
        passed = checklist.finish()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly
        return examples_support.stdout_gone()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
