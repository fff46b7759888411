"""streaming_kit/guard.py: the HTTP boundary of a served StreamingAgent, over real sockets, on both
serving paths (serve_asgi answers python-a2a's own routes, /tasks/send ..., through the agent's Flask app).

Every check here failed on the kit before guard.py: python-a2a answered any Origin with
`Access-Control-Allow-Origin: *`, any Host, any Content-Type, and several bad inputs with 500 or HTML.
"""
from __future__ import annotations

import json
import math
import socket
import threading

import pytest

from conftest import stock_agent_class
from streaming_kit import RequestProblem, StreamingAgent, TaskStreamingAgent, TaskUpdate, serve
from streaming_kit.guard import MAX_JSON_DEPTH, InvalidJSON, parse_json_body

MESSAGE = json.dumps({"role": "user", "content": {"type": "text", "text": "hi"}}).encode()
TASK = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tasks/send",
                   "params": {"id": "t1", "message": {"role": "user", "content": {"type": "text", "text": "hi"}}}}).encode()


class CountingAgent(StreamingAgent):
    """Counts how often its work starts, so a refused request can be shown to have run nothing."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.runs = 0
        self.lock = threading.Lock()

    async def stream_response(self, message):
        with self.lock:
            self.runs += 1
        yield "one "
        yield "two"


def exchange(url: str, head: str, body: bytes = b"", host: str | None = None) -> tuple[int, dict, bytes]:
    """One raw HTTP/1.0 request (any header, any method, lies included): (status, headers, body)."""
    address = url.removeprefix("http://")
    name, port = address.rsplit(":", 1)
    with socket.create_connection((name, int(port)), timeout=10) as sock:
        sock.sendall(f"{head}\r\nHost: {host or address}\r\n\r\n".encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    top, _, payload = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for name, _, value in (line.partition(":") for line in lines[1:]):  # a repeated header: joined, so it shows
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return int(lines[0].split()[1]), headers, payload


def post(url: str, path: str, body: bytes, content_type: str = "application/json", extra: str = "",
         host: str | None = None) -> tuple[int, dict, bytes]:
    head = (f"POST {path} HTTP/1.0\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}"
            + (f"\r\n{extra}" if extra else ""))
    return exchange(url, head, body, host)


def json_error(status: int, headers: dict, payload: bytes) -> str:
    """The message of a JSON error reply; fails unless it is one, written as strict JSON."""
    assert headers.get("content-type") == "application/json", (status, headers, payload[:200])
    return parse_json_body(payload)["error"]


@pytest.fixture
def served(serving):
    """On both paths: serve_asgi answers python-a2a's own routes through the agent's Flask app."""
    agent = CountingAgent()
    with serving(agent) as url:
        yield agent, url


# ---------------------------------------------------------------- the browser boundary
def test_no_response_carries_cors_headers_unless_an_origin_is_listed(served):
    agent, url = served
    port = url.rsplit(":", 1)[1]
    for head in ("GET /agent.json HTTP/1.0", "GET /a2a/health HTTP/1.0",
                 f"GET /agent.json HTTP/1.0\r\nOrigin: http://127.0.0.1:{port}"):
        status, headers, _ = exchange(url, head)
        assert status == 200 and not [h for h in headers if h.startswith("access-control-")], (head, headers)
    status, headers, _ = post(url, "/stream", MESSAGE)
    assert status == 200 and "access-control-allow-origin" not in headers


@pytest.mark.parametrize("path", ["/stream", "/tasks/send"])  # the kit's own view; python-a2a's (via a2wsgi on ASGI)
def test_a_foreign_origin_is_refused_with_403_and_runs_nothing(served, path):
    agent, url = served
    for origin in ("http://127.0.0.1:1", "http://evil.example", "null"):
        status, headers, payload = post(url, path, TASK if "tasks" in path else MESSAGE, extra=f"Origin: {origin}")
        assert status == 403 and "allowed_origins" in json_error(status, headers, payload)
        assert "access-control-allow-origin" not in headers
        preflight = ("OPTIONS /stream HTTP/1.0\r\nAccess-Control-Request-Method: POST\r\n"
                     f"Access-Control-Request-Headers: content-type\r\nOrigin: {origin}")
        status, headers, payload = exchange(url, preflight)
        assert status == 403 and "access-control-allow-origin" not in headers
    assert agent.runs == 0 and agent.tasks == {}


def test_a_listed_origin_gets_cors_for_itself_only(serving):
    agent = CountingAgent(allowed_origins=["http://LOCALHOST:3000/"])  # normalised: lower case, no slash
    with serving(agent) as url:
        preflight = ("OPTIONS /stream HTTP/1.0\r\nAccess-Control-Request-Method: POST\r\n"
                     "Access-Control-Request-Headers: content-type\r\nOrigin: http://localhost:3000")
        status, headers, _ = exchange(url, preflight)
        assert status == 204 and headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "content-type" in headers["access-control-allow-headers"].lower()
        status, headers, payload = post(url, "/stream", MESSAGE, extra="Origin: http://localhost:3000")
        assert status == 200 and headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "origin" in headers["vary"].lower() and b'"lastChunk": true' in payload
        status, headers, _ = post(url, "/stream", MESSAGE, extra="Origin: http://localhost:3001")
        assert status == 403 and "access-control-allow-origin" not in headers
        status, headers, _ = exchange(url, "GET /a2a/health HTTP/1.0\r\nOrigin: http://localhost:3000")
        assert status == 200 and headers["access-control-allow-origin"] == "http://localhost:3000"  # once
    assert agent.runs == 1


def test_a_foreign_host_is_refused_with_421_loopback_names_and_listed_hosts_are_not(served):
    agent, url = served
    port = url.rsplit(":", 1)[1]
    for host in (f"rebound.example:{port}", "rebound.example", f"127.0.0.2:{port}", f"localhost.example:{port}"):
        status, headers, payload = exchange(url, "GET /agent.json HTTP/1.0", host=host)
        assert status == 421 and "allowed_hosts" in json_error(status, headers, payload), host
        assert post(url, "/stream", MESSAGE, host=host)[0] == 421
        status, headers, payload = exchange(url, "GET /a2a/health HTTP/1.0", host=host)  # python-a2a's route
        assert status == 421 and "allowed_hosts" in json_error(status, headers, payload), host
        assert post(url, "/tasks/send", TASK, host=host)[0] == 421
    assert agent.runs == 0 and agent.tasks == {}
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", f"[::1]:{port}",
                 f"127.0.0.1:{int(port) + 1}", "localhost"):  # a proxy on this machine passes its own port
        assert exchange(url, "GET /agent.json HTTP/1.0", host=host)[0] == 200, host
    agent.allowed_hosts = ("agent.example.com",)  # behind a proxy that passes the public name on
    assert exchange(url, "GET /agent.json HTTP/1.0", host="agent.example.com")[0] == 200
    agent.allowed_hosts = ("*",)
    assert exchange(url, "GET /agent.json HTTP/1.0", host=f"anything.example:{port}")[0] == 200


@pytest.mark.parametrize("path", ["/stream", "/tasks/send", "/a2a/tasks/send"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_that_is_not_declared_json_gets_415_and_runs_nothing(served, path, content_type):
    agent, url = served
    status, headers, payload = post(url, path, TASK if "tasks" in path else MESSAGE, content_type)
    assert status == 415 and "application/json" in json_error(status, headers, payload)
    assert agent.runs == 0 and agent.tasks == {}


# ---------------------------------------------------------------- body limits, python-a2a's own endpoints included
@pytest.mark.parametrize("path", ["/tasks/send", "/a2a/tasks/send", "/tasks/get", "/", "/a2a", "/stream"])
def test_a_body_over_max_body_bytes_gets_413_before_it_is_read(serving, path):
    agent = CountingAgent()
    agent.max_body_bytes = 1000
    with serving(agent) as url:
        # Only the headers are sent: the reply comes without the server waiting for the 200 MiB announced.
        status, headers, payload = exchange(url, f"POST {path} HTTP/1.0\r\nContent-Type: application/json\r\n"
                                                 f"Content-Length: {200 << 20}")
        assert status == 413 and json_error(status, headers, payload) == "request body over 1000 bytes"
        padded = json.dumps({**json.loads(TASK), "padding": "x" * 2000}).encode()
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(padded[i:i + 500]), padded[i:i + 500])
                           for i in range(0, len(padded), 500)) + b"0\r\n\r\n"
        status, headers, payload = exchange(url, f"POST {path} HTTP/1.1\r\nConnection: close\r\n"
                                                 "Content-Type: application/json\r\nTransfer-Encoding: chunked", chunked)
        assert status == 413, payload
        json_error(status, headers, payload)
    assert agent.runs == 0 and agent.tasks == {}


# ---------------------------------------------------------------- every bad request: 4xx JSON, never 500 or HTML
BAD_VALUES = {  # each inside an otherwise valid request: only the value itself can be the reason to refuse
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "nested 65 deep": b'{"a": ' * 65 + b"1" + b"}" * 65,
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "-Infinity": b"-Infinity",
    "1e999": b"1e999",
    "5,000-digit integer": b"7" * 5000,
    "not UTF-8": b'"\xff\xfe"',
}


def with_extra(body: bytes, value: bytes) -> bytes:
    """body (a JSON object) with one more member whose value is the raw JSON text value."""
    return body[:-1] + b', "extra": ' + value + b"}"


@pytest.mark.parametrize("path", ["/stream", "/tasks/send", "/tasks/cancel"])
@pytest.mark.parametrize("name", BAD_VALUES)
def test_bad_json_gets_400_json_on_every_endpoint(served, path, name):
    agent, url = served
    status, headers, payload = post(url, path, with_extra(MESSAGE if path == "/stream" else TASK, BAD_VALUES[name]))
    if path == "/tasks/cancel":  # a JSON-RPC endpoint: a parse error is -32700, with HTTP 200 as A2A clients expect
        assert status == 200 and json_error(status, headers, payload)["code"] == -32700, (status, payload[:300])
    else:
        assert status == 400 and "JSON" in json_error(status, headers, payload), (status, payload[:300])
    assert agent.runs == 0 and agent.tasks == {}


@pytest.mark.parametrize("path", ["/tasks/send", "/tasks/get"])
@pytest.mark.parametrize("body", [b"[]", b'"text"', b"7", b"null"])
def test_python_a2a_endpoints_refuse_a_body_that_is_not_an_object_with_400(served, path, body):
    agent, url = served
    status, headers, payload = post(url, path, body)
    if path == "/tasks/get":  # the kit's JSON-RPC view: an invalid request, with HTTP 200 as A2A clients expect
        error = json_error(status, headers, payload)
        assert status == 200 and error["code"] == -32600 and "JSON object" in error["message"]
    else:
        assert status == 400 and "JSON object" in json_error(status, headers, payload)


LONG_IDS = {"19 digits": "9" * 19, "4,301 digits": "9" * 4301, "10,000 digits": "9" * 10_000}


@pytest.mark.parametrize("digits", LONG_IDS.values(), ids=LONG_IDS)
def test_a_long_last_event_id_gets_400_without_an_int_conversion(served, digits):
    agent, url = served
    status, headers, payload = post(url, "/stream", MESSAGE, extra=f"Last-Event-ID: {digits}")
    assert status == 400 and "Last-Event-ID" in json_error(status, headers, payload)
    assert agent.runs == 0


class OneStepTasks(TaskStreamingAgent):
    async def run_task(self, message):
        yield TaskUpdate(text="working")


@pytest.mark.parametrize("digits", LONG_IDS.values(), ids=LONG_IDS)
def test_a_long_last_event_id_on_a_task_stream_is_a_json_rpc_error(serving, digits):
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tasks/resubscribe", "params": {"id": "t1"}}).encode()
    with serving(OneStepTasks()) as url:
        status, headers, payload = post(url, "/tasks/stream", body, extra=f"Last-Event-ID: {digits}")
    reply = parse_json_body(payload)
    assert status == 200 and reply["id"] == 7 and reply["error"]["code"] == -32602, reply  # JSON-RPC: HTTP 200


@pytest.mark.parametrize("path", ["/nope", "/stream", "/ui", "/", "/agent.json"])
def test_head_answers_like_get_without_a_body(served, path):
    agent, url = served
    status, headers, payload = exchange(url, f"HEAD {path} HTTP/1.0")
    get_status, get_headers, _ = exchange(url, f"GET {path} HTTP/1.0")
    assert (status, headers["content-type"], payload) == (get_status, get_headers["content-type"], b"")
    assert status == 200


@pytest.mark.parametrize("method, path", [("PUT", "/stream"), ("DELETE", "/agent.json"), ("POST", "/agent.json"),
                                          ("POST", "/no/such/path"), ("PATCH", "/tasks/send")])
def test_a_wrong_method_gets_405_json_with_allow(served, method, path):
    agent, url = served
    status, headers, payload = exchange(url, f"{method} {path} HTTP/1.0")
    assert status == 405 and json_error(status, headers, payload)
    assert "GET" in headers["allow"] or "POST" in headers["allow"]


def test_an_overlong_url_or_header_gets_414_or_431_json(served):
    agent, url = served
    status, headers, payload = exchange(url, f"GET /{'a' * 70_000} HTTP/1.0")
    assert status == 414 and json_error(status, headers, payload)
    status, headers, payload = exchange(url, f"GET /agent.json HTTP/1.0\r\nX-Long: {'a' * 70_000}")
    assert status == 431 and json_error(status, headers, payload)
    many = "\r\n".join(f"X-{i}: {i}" for i in range(120))
    status, headers, payload = exchange(url, f"GET /agent.json HTTP/1.0\r\n{many}")
    assert status == 431 and json_error(status, headers, payload)
    assert exchange(url, "GET /agent.json HTTP/1.0")[0] == 200  # still serving


def test_stock_python_a2a_fails_these_checks():
    """The same requests against python-a2a's own server: what the guard exists for."""
    with serve(stock_agent_class()()) as url:
        status, headers, _ = exchange(url, "GET /agent.json HTTP/1.0\r\nOrigin: http://evil.example")
        assert status == 200 and headers["access-control-allow-origin"] == "*"
        assert exchange(url, "GET /agent.json HTTP/1.0", host="rebound.example")[0] == 200
        assert post(url, "/tasks/send", b"[]")[0] == 500
        assert exchange(url, "HEAD /nope HTTP/1.0")[0] == 500
        assert post(url, "/stream", MESSAGE, extra="Last-Event-ID: " + "9" * 4301)[0] == 200  # not even read
        status, headers, _ = exchange(url, "PUT /stream HTTP/1.0")
        assert status == 405 and headers["content-type"].startswith("text/html")


# ---------------------------------------------------------------- parse_json_body, for the JSON-RPC endpoint
def test_parse_json_body_accepts_json_and_refuses_the_rest_as_invalid_json():
    assert parse_json_body(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json_body(nested) is not None  # exactly at the limit
    for name, value in BAD_VALUES.items():
        with pytest.raises(InvalidJSON) as caught:
            parse_json_body(with_extra(TASK, value))
        assert isinstance(caught.value, RequestProblem) and caught.value.status == 400, name
    for body in (b"", b"{", b"{'a': 1}", b"[1,]"):
        with pytest.raises(InvalidJSON):
            parse_json_body(body)
    assert not math.isinf(parse_json_body(b"1e308"))
