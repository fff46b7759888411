"""The A2A JSON-RPC endpoints of every StreamingAgent, apart from any web framework.

`A2ARequests` turns a request (its JSON body and two headers) into a `Reply`: a JSON answer, or a
stream of SSE text made on the agent's task loop. `FlaskViews` serves it from python-a2a's Flask
app (replacing the views of §18/§20); an asyncio server can serve the same `A2ARequests` directly.

    POST / and /a2a     A2A v0.3 and v1.0 (by the A2A-Version header), python-a2a messages as before
    /tasks/stream ...   python-a2a's tasks/sendSubscribe and tasks/resubscribe, fixed (§16-§18)
    agent card          /.well-known/agent-card.json, /agent.json: both SDK generations read it
"""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator, Optional

from flask import Response, jsonify, request
from . import a2a
from .a2a import a2a_state
from .messages import RequestProblem, _RpcProblem, _sse, parse_last_event_id, parse_stream_request
from .patches import replace_view
from .tasks import TaskStreamingAgent, _is_final, chunks_as_artifact, engine_for
from python_a2a import Message, TaskState

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
CARD_PATHS = ("/.well-known/agent-card.json", "/.well-known/agent.json", "/agent.json", "/a2a/agent.json")
Hangup = Callable[[], tuple[Optional[asyncio.Future], Callable[[], None]]]  # (done when the client is gone, unwatch)


@dataclass
class Reply:
    """What an endpoint answers, whichever server sends it."""
    status: int = 200
    body: Any = None  # a JSON body, or
    stream: Optional[AsyncIterator[str]] = None  # SSE text, produced on the task loop
    headers: dict = field(default_factory=dict)
    python_a2a: bool = False  # hand the request to python-a2a's own view (its message and task formats)


def _no_hangup() -> tuple[None, Callable[[], None]]:
    return None, lambda: None


class A2ARequests:
    """Every A2A request of one agent, as coroutines on its task loop."""

    def __init__(self, agent: Any):
        self.agent = agent
        self.engine = engine_for(agent)

    def work_for(self, message: Message) -> AsyncIterator:
        if isinstance(self.agent, TaskStreamingAgent):
            return self.agent.run_task(message)
        return chunks_as_artifact(self.agent.stream_response(message))

    # -- A2A JSON-RPC on POST / and /a2a
    async def rpc(self, body: Any, version_header: Optional[str], last_id: Optional[str],
                  hangup: Hangup = _no_hangup) -> Reply:
        rpc_id, version = None, "0.3"
        try:
            if isinstance(body, RequestProblem):
                raise body
            if isinstance(body, dict) and "jsonrpc" not in body and _python_a2a_shape(body):
                _check_python_a2a_body(body)  # python-a2a's handler answers 500 to what it cannot read
                return Reply(python_a2a=True)  # a python-a2a client's message, task or conversation
            rpc_id, method, params = a2a.read_rpc(body)
            version = a2a.protocol_version(version_header, method)
            known = a2a.METHODS.get(method)
            if known is None or known[0] != version:
                names = [name for name, (v, _) in a2a.METHODS.items() if v == version]
                raise _RpcProblem(200, a2a.METHOD_NOT_FOUND, f"method {method!r} not found (A2A {version}: "
                                                             f"{', '.join(names)})")
            return await self._dispatch(known[1], rpc_id, params, version, last_id, hangup)
        except _RpcProblem as problem:
            return _error(rpc_id, problem, version)
        except RequestProblem as problem:
            if isinstance(body, dict) and "jsonrpc" not in body:  # a bad python-a2a message: plain JSON error
                return Reply(problem.status, {"error": str(problem)})
            return _error(rpc_id, _as_rpc(problem), version)

    async def _dispatch(self, action: str, rpc_id: Any, params: dict, version: str, last_id: Optional[str],
                        hangup: Hangup) -> Reply:
        frame = lambda event: _sse(a2a.rpc_response(rpc_id, a2a.result(event, version)),
                                   event_id=event["metadata"]["seq"])
        if action in ("stream", "send"):
            send = a2a.send_params(params, version)
            first = await self._start(send)
            if action == "stream":  # the first event of a new task is the Task itself (v1.0 §3.1.6)
                return self._stream(first["id"], -1, False, frame, hangup)
            final = first if not send["blocking"] else await self.engine.wait_final(first["id"])
            return Reply(body=a2a.rpc_response(rpc_id, a2a.v03_task(final) if version == "0.3"
                                               else {"task": a2a.v10_task(final)}))
        task_id = a2a.task_id_param(params)
        if action == "get":
            return Reply(body=a2a.rpc_response(rpc_id, a2a.task_result(await self.engine.snapshot(task_id), version)))
        if action == "cancel":
            return Reply(body=a2a.rpc_response(rpc_id, a2a.task_result(await self.engine.cancel(task_id), version)))
        after = await self._after(task_id, last_id)  # subscribe: after Last-Event-ID, else the Task first
        return self._stream(task_id, -1 if after is None else after, after is None or version == "1.0", frame, hangup)

    async def _start(self, params: dict) -> dict:
        task_id = params.pop("taskId", None)
        if task_id is not None:  # a message for a task that exists: this agent takes one message per task
            snapshot = await self.engine.snapshot(task_id)
            state = a2a_state(TaskState(snapshot["status"]["state"]))
            if _is_final(snapshot):
                raise _RpcProblem(200, a2a.INVALID_PARAMS, f"task {task_id} is in terminal state {state}: "
                                                           "send a message without taskId to start a new task")
            raise _RpcProblem(200, a2a.UNSUPPORTED_OPERATION, f"task {task_id} is {state}: this agent takes no "
                                                              "further messages on a running task")
        return await self.engine.start(params, self.work_for)

    async def _after(self, task_id: str, last_id: Optional[str]) -> Optional[int]:
        """Last-Event-ID as a seq this task has sent (a later one would skip events); the task must exist."""
        try:
            after = parse_last_event_id(last_id)
        except RequestProblem:
            raise _RpcProblem(200, a2a.INVALID_PARAMS, "Last-Event-ID must be the seq of the last event seen") from None
        last = (await self.engine.snapshot(task_id))["metadata"]["seq"]
        if after is not None and after > last:
            raise _RpcProblem(200, a2a.INVALID_PARAMS, f"Last-Event-ID {after} names no update of task {task_id}: "
                                                       f"updates 0-{last} have been sent")
        return after

    def _stream(self, task_id: str, after: int, snapshot_first: bool, frame: Callable[[dict], str],
                hangup: Hangup) -> Reply:
        async def sse() -> AsyncIterator[str]:
            gone, unwatch = hangup()
            try:
                async with contextlib.aclosing(self.engine.events(task_id, after, snapshot_first, gone)) as batches:
                    async for batch in batches:
                        yield "".join(frame(event) for event in batch) if batch else ": ping\n\n"
            finally:
                unwatch()
        return Reply(stream=sse(), headers=dict(SSE_HEADERS))

    # -- python-a2a's task endpoints (tasks/sendSubscribe, tasks/resubscribe, tasks/cancel, tasks/get)
    async def python_a2a_stream(self, body: Any, last_id: Optional[str], hangup: Hangup = _no_hangup) -> Reply:
        """tasks/sendSubscribe starts a task, tasks/resubscribe joins one; both answer with SSE."""
        rpc_id = None
        try:
            rpc_id, method, params = _python_a2a_rpc(body, "tasks/sendSubscribe")
            if method == "tasks/sendSubscribe":
                first = await self._start({**params, "taskId": None})
                task_id, after, snapshot_first = first["id"], -1, False
            elif method == "tasks/resubscribe":
                task_id = a2a.task_id_param(params)
                found = await self._after(task_id, last_id)
                after, snapshot_first = (-1 if found is None else found), found is None
            else:
                raise _RpcProblem(200, a2a.METHOD_NOT_FOUND, f"method {method!r} not found here: "
                                                             "use tasks/sendSubscribe or tasks/resubscribe")
            frame = lambda event: _sse(event, "complete" if _is_final(event) else "update",
                                       event_id=event["metadata"]["seq"])
            return self._stream(task_id, after, snapshot_first, frame, hangup)
        except RequestProblem as problem:
            return _error(rpc_id, _as_rpc(problem), "0.3")

    async def python_a2a_task(self, body: Any, method: str) -> Reply:
        """tasks/cancel or tasks/get in python-a2a's shape (its own tasks from tasks/send stay its own)."""
        rpc_id = None
        try:
            rpc_id, _, params = _python_a2a_rpc(body, method)
            task_id = a2a.task_id_param(params)
            if task_id in self.agent.tasks:
                return Reply(python_a2a=True)
            found = await (self.engine.cancel(task_id) if method == "tasks/cancel" else self.engine.snapshot(task_id))
            return Reply(body=a2a.rpc_response(rpc_id, found))
        except RequestProblem as problem:
            return _error(rpc_id, _as_rpc(problem), "0.3")

    # -- the agent card
    def card(self, base_url: str) -> dict:
        skills = [a2a.skill_dict(skill) for skill in (self.agent.agent_card.skills or [])]
        return a2a.agent_card(self.agent.agent_card.to_dict(), base_url, skills)


def _error(rpc_id: Any, problem: _RpcProblem, version: str) -> Reply:
    headers = {"Retry-After": "1"} if problem.status == 503 else {}
    return Reply(problem.status, a2a.rpc_error(rpc_id, problem.code, str(problem), version), headers=headers)


def _as_rpc(problem: RequestProblem) -> _RpcProblem:
    if isinstance(problem, _RpcProblem):
        return problem
    if problem.status == 400:  # not JSON: a JSON-RPC parse error, which official clients read with HTTP 200
        return _RpcProblem(200, a2a.PARSE_ERROR, str(problem))
    return _RpcProblem(problem.status, a2a.INVALID_REQUEST, str(problem))  # 413, 415: the transport refuses


def _python_a2a_rpc(body: Any, bare_method: str) -> tuple[Any, str, dict]:
    """(id, method, params) of a JSON-RPC body; a bare Task (python-a2a's client, §17) also works."""
    if isinstance(body, RequestProblem):
        raise body
    if not isinstance(body, dict):
        raise _RpcProblem(200, a2a.INVALID_REQUEST, "request body must be a JSON object")
    if "jsonrpc" not in body:
        return None, bare_method, body
    return a2a.read_rpc(body)


def _python_a2a_shape(body: dict) -> bool:
    """A body python-a2a's own POST / handler reads: a message, a conversation or a task."""
    return "content" in body or "messages" in body or ("parts" in body and "role" in body) or (
        "id" in body and ("message" in body or "status" in body))


def _check_python_a2a_body(body: dict) -> None:
    """RequestProblem(400) unless python-a2a's own POST / handler can read the body."""
    if "messages" in body:
        if not isinstance(body["messages"], list) or not body["messages"]:
            raise RequestProblem(400, "messages must be a non-empty list of messages")
        for message in body["messages"]:
            parse_stream_request(message)
    elif "content" in body or "parts" in body:
        parse_stream_request(body)
    else:  # a task
        if not isinstance(body["id"], str):
            raise RequestProblem(400, "a task's id must be a string")
        if "message" in body:
            parse_stream_request({"message": body["message"]})
        if not isinstance(body.get("status", {}), dict):
            raise RequestProblem(400, "a task's status must be an object")


# ---------------------------------------------------------------- served by python-a2a's Flask app
class FlaskViews:
    """A2ARequests behind python-a2a's Flask endpoints; request threads wait on the task loop."""

    def __init__(self, agent: Any, app: Any):
        self.agent, self.requests = agent, A2ARequests(agent)
        self.engine = self.requests.engine
        stock_root = replace_view(app, "a2a_root_post", self.rpc_view)
        replace_view(app, "a2a_post", self.rpc_view)  # it calls the first directly, as in §18
        for endpoint in ("a2a_tasks_stream", "tasks_stream"):
            replace_view(app, endpoint, self.python_a2a_stream_view)
        self._stock = {"rpc": stock_root}
        for method, endpoints in (("tasks/cancel", ("a2a_tasks_cancel", "tasks_cancel")),
                                  ("tasks/get", ("a2a_tasks_get", "tasks_get"))):
            view = self._python_a2a_task_view(method)
            self._stock[method] = replace_view(app, endpoints[0], view)
            replace_view(app, endpoints[1], view)
        for rule in list(app.url_map.iter_rules()):
            if rule.rule in CARD_PATHS and "GET" in rule.methods:
                replace_view(app, rule.endpoint, self.card_view)

    def rpc_view(self):
        reply = self.engine.call(self.requests.rpc(self._body(), request.headers.get("A2A-Version"),
                                                   request.headers.get("Last-Event-ID"), self._hangup()))
        return self._send(reply, self._stock["rpc"], "a2a")

    def python_a2a_stream_view(self):
        reply = self.engine.call(self.requests.python_a2a_stream(self._body(), request.headers.get("Last-Event-ID"),
                                                                 self._hangup()))
        return self._send(reply, None, "python-a2a")

    def _python_a2a_task_view(self, method: str) -> Callable:
        def view():
            return self._send(self.engine.call(self.requests.python_a2a_task(self._body(), method)), self._stock[method])
        view.__name__ = f"kit {method}"
        return view

    def card_view(self):
        return jsonify(self.requests.card(request.host_url.rstrip("/")))

    def _body(self) -> Any:
        try:
            return self.agent._read_json_body()
        except RequestProblem as problem:
            return problem

    def _hangup(self) -> Hangup:
        sock = request.environ.get("werkzeug.socket") or request.environ.get("gunicorn.socket")
        return lambda: self.engine.watch_socket(sock)  # called on the task loop when a stream starts

    def _send(self, reply: Reply, stock: Optional[Callable], stream_kind: str = "a2a"):
        if reply.python_a2a:
            return stock()
        if reply.stream is not None:
            frames = self._drain(reply.stream)
            if self.agent.metrics:  # task streams count on /metrics like /stream ones
                from .metrics import A2A_ENDS, TASK_END, metrics_for  # prometheus-client only when asked
                frames = metrics_for(self.agent).track(frames, A2A_ENDS if stream_kind == "a2a" else TASK_END)
            return Response(frames, mimetype="text/event-stream", headers=reply.headers)
        response = jsonify(reply.body)
        response.status_code = reply.status
        response.headers.update(reply.headers)
        return response

    def _drain(self, stream: AsyncIterator[str]) -> Iterator[str]:
        """The SSE text for werkzeug: each batch fetched from the task loop; closing closes the stream."""
        async def step() -> Optional[str]:
            with contextlib.suppress(StopAsyncIteration):
                return await stream.__anext__()
            return None
        try:
            yield ": stream open\n\n"  # sends the headers at once
            while (text := self.engine.call(step())) is not None:
                yield text
        finally:
            self.engine.call(stream.aclose())
