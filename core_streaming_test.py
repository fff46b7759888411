"""Smoke harness: does A2A streaming work correctly on this machine, or on your agent?

    python core_streaming_test.py                        # full checklist, with its own test agents
    python core_streaming_test.py --url http://127.0.0.1:8100   # protocol checks on any running agent
    python core_streaming_test.py --json                 # results as JSON

With --url it reads the agent's card and checks each dialect the card claims (python-a2a's
/stream, A2A 1.0, A2A 0.3); one it does not claim is reported "not checked". One line per
check, ✓ or ✗ with the reason. Exit code 0 only when every check passes.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from python_a2a import A2AError, A2AResponseError, Task
from streaming_kit import StreamTruncatedError
from streaming_kit.client import a2a_interfaces, choose_dialect

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
BAD_RPC = {  # what an A2A JSON-RPC endpoint must answer with a JSON-RPC error (HTTP 200), never a 5xx
    "malformed JSON": lambda names: b"{not json",
    "a batch": lambda names: b"[1, 2]",
    "an unknown method": lambda names: b'{"jsonrpc": "2.0", "id": 1, "method": "no/such-method"}',
    "a stream without a message": lambda names: b'{"jsonrpc": "2.0", "id": 2, "method": "%s", "params": {}}'
                                                % names[0].encode(),
    "an unknown task": lambda names: b'{"jsonrpc": "2.0", "id": 3, "method": "%s", "params": {"id": "no-such-task"}}'
                                     % names[1].encode(),
}
METHOD_NAMES = {"1.0": ("SendStreamingMessage", "GetTask"), "0.3": ("message/stream", "tasks/get")}
DIALECT_NAMES = {"python-a2a": "python-a2a /stream", "1.0": "A2A 1.0", "0.3": "A2A 0.3"}


class CheckFailed(Exception):
    """A check's own verdict: the reason it failed."""


@dataclass
class Result:
    check: str
    ok: bool
    detail: str
    checked: bool = True  # False: the agent does not claim this, so it was not tried


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
async def read_card(url: str) -> tuple[dict, str]:
    """The agent card and the path it came from (A2A's well-known path, then python-a2a's)."""
    statuses = []
    for path in kit.client.CARD_PATHS:
        status, body = _http("GET", f"{url}{path}")
        if status == 200:
            try:
                return json.loads(body), path
            except ValueError:
                raise CheckFailed(f"GET {path} did not answer JSON: {body[:60]!r}") from None
        statuses.append(f"GET {path} answered HTTP {status}")
    raise CheckFailed(f"{' and '.join(statuses)}: is this an agent's base URL?")


async def check_agent_card(url: str) -> str:
    card, path = await read_card(url)
    try:
        dialects = claimed_dialects(card)
    except A2AError as exc:
        raise CheckFailed(f"{path}: {exc}") from None
    if not card.get("capabilities", {}).get("streaming"):
        raise CheckFailed(f"agent card of {card.get('name')!r} does not claim capabilities.streaming")
    return f"{card.get('name')!r} claims streaming over {', '.join(DIALECT_NAMES[d] for d in dialects)} ({path})"


def claimed_dialects(card: dict) -> list[str]:
    """The dialects a card claims, in the order DIALECT_NAMES lists them (a2a-sdk reads the A2A part)."""
    claimed = set(a2a_interfaces(card))
    with contextlib.suppress(A2AError):
        if choose_dialect(card) == "python-a2a":
            claimed.add("python-a2a")
    return [dialect for dialect in DIALECT_NAMES if dialect in claimed]


async def check_round_trip(url: str, text: str, dialect: str = "python-a2a") -> str:
    reply = await kit.StrictStreamingClient(url, timeout=10, dialect=dialect).send_message_async(text)
    answer = kit.message_text(reply)
    if not answer:
        raise CheckFailed("the non-streaming reply has no text")
    return f"{len(answer)} characters back"


def _describe(problem: A2AError | None, indices: list[int]) -> str:
    """What went wrong with one stream, in words; "" when nothing did."""
    if isinstance(problem, StreamTruncatedError) and "lastChunk" in str(problem):
        where = f"after chunk #{indices[-1]}" if indices else "before any chunk"
        return f"ended {where} without the lastChunk marker, so its tail is lost"
    return str(problem or "")


async def stream_once(url: str, text: str, idle_timeout: float = 10,
                      dialect: str = "python-a2a") -> tuple[list[int], str, A2AError | None]:
    """Indices received, text, and what went wrong (None when the stream ended with its marker)."""
    indices, pieces = [], []
    try:
        client = kit.StrictStreamingClient(url, timeout=idle_timeout, dialect=dialect)
        async for chunk in client.stream_response(text):
            indices.append(chunk.get("index", len(indices)) if isinstance(chunk, dict) else len(indices))
            pieces.append(kit.chunk_text(chunk))
    except A2AError as exc:
        return indices, "".join(pieces), exc
    return indices, "".join(pieces), None


async def check_streams_complete(url: str, text: str, runs: int, dialect: str = "python-a2a") -> str:
    """Stream the same message several times; any gap, short run or missing end is a loss."""
    results = [await stream_once(url, text, dialect=dialect) for _ in range(runs)]
    longest = max(len(indices) for indices, _, _ in results)
    problems: dict[str, list[int]] = {}  # problem -> the runs that had it
    for run, (indices, _, problem) in enumerate(results, 1):
        lost = sorted(set(range(longest)) - set(indices))
        found = [f"lost chunk(s) #{', #'.join(map(str, lost))}" if lost else "", _describe(problem, indices)]
        for text in filter(None, found):
            problems.setdefault(text, []).append(run)
    if problems:
        claim = "" if dialect == "python-a2a" else f"card claims streaming over A2A {dialect}; "
        raise CheckFailed(claim + "; ".join(f"run{'s' * (len(runs_) > 1)} {', '.join(map(str, runs_))}: {text}"
                                            for text, runs_ in problems.items()))
    end = "the lastChunk marker" if dialect == "python-a2a" else "the task completed"
    return f"{runs} runs × {longest} chunks, in order, each ending with {end}"


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


# ---------------------------------------------------------------- A2A checks (any agent whose card claims it)
async def check_bad_rpc(url: str, version: str) -> str:
    """Bad JSON-RPC bodies on the A2A endpoint get a JSON-RPC error with HTTP 200, and the agent goes on."""
    card, _ = await read_card(url)
    endpoint, wrong, codes = a2a_interfaces(card)[version], [], set()
    for name, body in BAD_RPC.items():
        status, raw = _http("POST", endpoint, body(METHOD_NAMES[version]), {"A2A-Version": version})
        error = _rpc_error(raw)
        if status != 200 or error is None:
            wrong.append(f"{name} → HTTP {status}{'' if error else ', no JSON-RPC error'}")
        else:
            codes.add(error["code"])
    if wrong:
        raise CheckFailed(f"{endpoint} (A2A {version}): " + ", ".join(wrong))
    await read_card(url)  # still serving
    return f"{len(BAD_RPC)} bad requests → HTTP 200 with JSON-RPC errors {', '.join(map(str, sorted(codes)))}"


def _rpc_error(raw: bytes) -> dict | None:
    try:
        error = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        return None
    return error if isinstance(error, dict) and isinstance(error.get("code"), int) else None


def _task(text: str) -> Task:
    return Task(message=kit.text_message(text).to_dict())


def _merge(texts: dict[str, str], update: Task) -> None:
    """Reassemble artifact text: a whole artifact (a Task's, or append false) replaces, append adds."""
    for artifact in update.artifacts:
        key, text = artifact["artifactId"], kit.artifact_text(artifact)
        texts[key] = texts.get(key, "") + text if artifact.get("append") else text


async def check_resubscribe(url: str, version: str, text: str) -> str:
    """Drop the stream after the first chunk, resubscribe, and compare what arrived with tasks/get."""
    client, task, texts = kit.TaskStreamingClient(url, timeout=10, dialect=version), _task(text), {}
    async with contextlib.aclosing(client.tasks_send_subscribe(task)) as updates:
        async for update in updates:
            _merge(texts, update)
            if update.artifacts or update.status.state in kit.FINAL_STATES:
                break  # hang up after the first chunk
    try:
        async with contextlib.aclosing(client.tasks_resubscribe(task.id)) as updates:
            kinds = []
            async for update in updates:
                kinds.append(update.metadata["kind"])
                _merge(texts, update)
    except A2AResponseError as refused:  # the spec lets an agent refuse a task that has ended
        stored = await _stored(client, task.id)
        if stored["state"] not in ("completed", "canceled", "failed", "rejected"):
            raise CheckFailed(f"resubscribe to a {stored['state']} task was refused: {refused}") from None
        return f"the task had ended {stored['state']} before the resubscribe, which said so ({refused})"
    if version == "1.0" and kinds[0] != "task":
        raise CheckFailed(f"SubscribeToTask began with a {kinds[0]}, not the Task as it stands (v1.0 §3.1.6)")
    stored = await _stored(client, task.id)
    got, kept = "".join(texts.values()), stored["text"]
    if got != kept and version == "1.0":
        raise CheckFailed(f"after the resubscribe {len(got)} of the task's {len(kept)} characters had arrived")
    share = "all" if got == kept else f"{len(got)} of"  # v0.3 leaves the backfill to the agent (§7.9)
    return f"rejoined after the first chunk: {len(kinds)} events, {share} {len(kept)} characters, {stored['state']}"


async def _stored(client: kit.TaskStreamingClient, task_id: str) -> dict:
    async with client.a2a_session(client.dialect) as sdk:
        event = await sdk.get(task_id)
    return {"state": event["state"], "text": "".join(text for _, text in event["artifacts"])}


async def check_cancel(url: str, version: str, text: str) -> str:
    """Cancel a task at its first update: it ends canceled, or it had already ended and the cancel says so."""
    client, task, states = kit.TaskStreamingClient(url, timeout=10, dialect=version), _task(text), []
    async with contextlib.aclosing(client.tasks_send_subscribe(task)) as updates:
        async for update in updates:
            states.append(kit.a2a_state(update.status.state))
            if len(states) == 1:
                try:
                    answer = kit.a2a_state((await client.cancel_task(task.id)).status.state)
                except A2AResponseError as refused:
                    answer = f"refused ({refused})"
    if states[-1] == "canceled":
        return f"the cancel answered {answer}; the stream ended canceled"
    if states[-1] == "completed" and answer.startswith("refused"):
        return f"the task completed before the cancel took effect; the cancel was {answer}"
    raise CheckFailed(f"the cancel answered {answer}, and the stream ended {states[-1]}")


def a2a_checks(url: str, version: str, text: str, runs: int) -> list[tuple[str, Callable]]:
    name = DIALECT_NAMES[version]
    return [(f"{name} streams complete", lambda: check_streams_complete(url, text, runs, dialect=version)),
            (f"{name} non-streaming round trip", lambda: check_round_trip(url, text, dialect=version)),
            (f"{name} bad JSON-RPC gets an error", lambda: check_bad_rpc(url, version)),
            (f"{name} resubscribe", lambda: check_resubscribe(url, version, text)),
            (f"{name} cancel", lambda: check_cancel(url, version, text))]


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
def _http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError as error:  # refused, reset, timed out: no HTTP answer at all
        raise CheckFailed(f"{method} {url}: {getattr(error, 'reason', error)}") from None


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

    def skip(self, name: str, reason: str) -> None:
        self.add(Result(name, True, f"not checked: {reason}", checked=False))

    def add(self, result: Result) -> None:
        self.results.append(result)
        if not self.as_json:
            mark = (examples_support.paint(self.marks[0], "green") if result.ok else
                    examples_support.paint(self.marks[1], "red")) if result.checked else "-"
            print(f"{mark} {result.check}: {result.detail}", flush=True)

    def finish(self) -> bool:
        """Print the verdict (or the JSON); True when every check passed."""
        passed = all(r.ok for r in self.results)
        if self.as_json:
            print(json.dumps({"passed": passed, "checks": [asdict(r) for r in self.results]}, indent=2))
        else:
            failed = sum(not r.ok for r in self.results)
            skipped = sum(not r.checked for r in self.results)
            print(f"\n{len(self.results) - failed - skipped} passed, {failed} failed"
                  + (f", {skipped} not checked" if skipped else ""))
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
    """Check each dialect the agent's card claims; no readable card: python-a2a's checks say what fails."""
    try:
        card, _ = await read_card(url)
        dialects, why_not = claimed_dialects(card), "the agent card does not claim it"
    except (CheckFailed, A2AError):
        dialects, why_not = ["python-a2a"], "no agent card to read a claim from"
    checks = protocol_checks(url, text, runs)
    await checklist.run(*checks[0])  # the card
    if "python-a2a" in dialects:
        for name, check in checks[1:]:
            await checklist.run(name, check)
    else:
        checklist.skip(DIALECT_NAMES["python-a2a"], f"{why_not} (no python-a2a capability flags)")
    for version in ("1.0", "0.3"):
        if version not in dialects:
            checklist.skip(DIALECT_NAMES[version], f"{why_not} (no JSON-RPC interface of A2A {version})")
            continue
        for name, check in a2a_checks(url, version, text, runs):
            await checklist.run(name, check)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return int(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", type=examples_support.http_url, help="check a running agent instead (python-a2a, kit or any A2A agent)")
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
