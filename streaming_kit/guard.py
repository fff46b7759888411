"""The HTTP boundary of every app the kit serves: who may call it, and what a request may carry.

A local agent is reachable by every web page its user opens, so by default:
- a request with a foreign `Origin` gets 403, and no response carries CORS headers unless the
  page's origin is listed in the agent's `allowed_origins` (then only for that origin);
- a `Host` header that is neither the served address nor a loopback name gets 421, which stops
  DNS rebinding; list real host names in `allowed_hosts` (`"*"` turns the check off);
- a body must be JSON (`Content-Type: application/json`, else 415) and at most
  `max_body_bytes` (413), and it is parsed strictly: finite numbers, at most MAX_JSON_DEPTH
  levels (400);
- every error is a JSON object `{"error": "..."}`, the server's own (405, 414, 431) included.
`StreamingAgent.setup_routes` calls `install_guard(app, self)`; `serve()` uses JSONErrorRequestHandler.
"""
from __future__ import annotations

import json
import math
from http import HTTPStatus
from typing import Any, Optional
from urllib.parse import urlsplit

from flask import Response, current_app, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler

from .messages import RequestProblem
from .patches import answer_head_like_get, drop_stock_cors

MAX_JSON_DEPTH = 64  # A2A messages nest about 6 deep; Python's parser fails with RecursionError near 1,000
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
MAX_LINE_BYTES, MAX_HEADERS = 65536, 100  # http.server's, which serve() answers with 414/431 (asgi.py too)
CORS_ALLOW_HEADERS = "Content-Type, Authorization, Last-Event-ID"


class InvalidJSON(RequestProblem):
    """A body that is not JSON the kit accepts (HTTP 400; JSON-RPC -32700, parse error)."""

    def __init__(self, reason: str):
        super().__init__(400, reason)


# --8<-- [start:parse_json_body]
def parse_json_body(raw: bytes | str) -> Any:
    """The JSON value of a request body; InvalidJSON if it is not valid, finite, shallow JSON."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:  # the C parser's own depth guard: far deeper than MAX_JSON_DEPTH
        raise InvalidJSON(f"JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError as exc:  # syntax, encoding, and integers over 4,300 digits
        raise InvalidJSON(f"request body is not valid JSON: {exc}") from None
    if _nested_deeper_than(value, MAX_JSON_DEPTH):
        raise InvalidJSON(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")  # Python accepts NaN/Infinity; JSON does not


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999 parses as inf, which no JSON encoder can send back
        raise ValueError(f"{text} is too large for a JSON number")
    return number


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest deeper than limit (iterative: no recursion to run out of)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False
# --8<-- [end:parse_json_body]


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, but `request.json` parses as parse_json_body does (python-a2a's views use it)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return parse_json_body(s)


def normalise_origin(value: str) -> str:
    """An origin as browsers send it, `scheme://host[:port]`, lower case; ValueError if it is not one."""
    parts = urlsplit(value.strip().rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        raise ValueError(f"expected an origin like http://localhost:3000, got {value!r}")
    return f"{parts.scheme}://{parts.netloc}".lower()


# --8<-- [start:install_guard]
def install_guard(app: Any, agent: Any) -> None:
    """Put the boundary in front of every route of app; the agent's settings are read per request."""
    drop_stock_cors(app)  # python-a2a sends Access-Control-Allow-Origin: * on every response
    answer_head_like_get(app)
    app.json = StrictJSONProvider(app)
    app.before_request_funcs.setdefault(None, []).insert(0, lambda: _refusal(agent))
    app.after_request(lambda response: _cors_headers(agent, response))
    app.register_error_handler(HTTPException, _json_error)


def _refusal(agent: Any) -> Optional[Response]:
    """A JSON error response for a request that must not reach the views, else None."""
    refused = boundary_refusal(agent, request.host, request.environ.get("SERVER_PORT", ""),
                               request.headers.get("Origin"))
    if refused:
        return _error(*refused)
    if request.method == "OPTIONS":  # a CORS preflight that got this far is from a listed origin
        return Response(status=204)
    return _body_refusal(getattr(agent, "max_body_bytes", 1 << 20))


def boundary_refusal(agent: Any, host: str, port: str, origin: Optional[str]) -> Optional[tuple[int, str]]:
    """(status, reason) for a request from a foreign Host (421: DNS rebinding) or a foreign web page
    (403), else None. Framework-free: both serving paths ask it."""
    if not _host_allowed(agent, host, port):
        return 421, (f"this server does not answer to the host name {host!r}; "
                     "add it to the agent's allowed_hosts (--allow-host)")
    if origin is not None and urlsplit(origin).netloc.lower() != host.lower() and not _origin_listed(agent, origin):
        return 403, (f"requests from web pages at {origin} are refused; "
                     "add the origin to the agent's allowed_origins (--allow-origin)")
    return None


def head_refusal(target_bytes: int, header_lines: list[int]) -> Optional[tuple[int, str]]:
    """(status, reason) for a request line or headers past http.server's limits (serve() refuses
    those itself), else None: for a server that has no such limits (uvicorn)."""
    if target_bytes > MAX_LINE_BYTES:
        return 414, "Request-URI Too Long"
    if len(header_lines) > MAX_HEADERS:
        return 431, "Too many headers"
    if any(length > MAX_LINE_BYTES for length in header_lines):
        return 431, "Line too long"
    return None


def is_json_type(content_type: Optional[str]) -> bool:
    """application/json or application/...+json, parameters aside (Flask's request.is_json rule): the
    one test both serving paths use."""
    mimetype = (content_type or "").split(";")[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def cors_headers(agent: Any, origin: Optional[str]) -> dict:
    """The CORS headers for a listed origin (for that origin only), else none at all."""
    if not origin or not _origin_listed(agent, origin):
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS, "Access-Control-Max-Age": "600", "Vary": "Origin"}


# --8<-- [end:install_guard]


def _body_refusal(max_bytes: int) -> Optional[Response]:
    length = request.content_length
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not (length or chunked):
        return None  # no body: pause, cancel, GET
    if (length or 0) > max_bytes:  # refused before a byte of it is read
        return _error(413, f"request body over {max_bytes} bytes")
    if not is_json_type(request.content_type):  # text/plain and forms need no preflight: a page could send them
        return _error(415, "send the body as JSON, with Content-Type: application/json")
    request.max_content_length = max_bytes + 1  # werkzeug stops reading a body without a length there
    if _is_python_a2a_view(request.endpoint):  # they answer 500 to a bad body; the kit's views check it
        raw = request.get_data(cache=True)
        if len(raw) > max_bytes:
            return _error(413, f"request body over {max_bytes} bytes")
        try:
            if not isinstance(parse_json_body(raw), dict):
                return _error(400, "request body must be a JSON object")
        except InvalidJSON as problem:
            return _error(400, str(problem))
    return None


def _is_python_a2a_view(endpoint: Optional[str]) -> bool:
    view = current_app.view_functions.get(endpoint) if endpoint else None
    return getattr(view, "__module__", "").startswith("python_a2a")


def _host_allowed(agent: Any, host: str, port: str) -> bool:
    extra = [h.lower() for h in getattr(agent, "allowed_hosts", ())]
    if "*" in extra:
        return True
    card = getattr(agent, "agent_card", None)
    served = urlsplit(getattr(card, "url", "") or "").netloc.lower()  # serve() puts the bound address there
    if host.lower() in [served, *extra]:
        return True
    # A loopback name with any port (or none): only a client on this machine, or a proxy on it (nginx
    # passes its own host:port), sends one; a rebinding page sends its own, foreign, host name.
    name = host.lower().rsplit(":", 1)[0] if not host.endswith("]") else host.lower()
    return name in LOOPBACK_NAMES


def _origin_listed(agent: Any, origin: str) -> bool:
    try:
        origin = normalise_origin(origin)
    except ValueError:  # "null" (sandboxed frames, file://) and junk
        return False
    return origin in {normalise_origin(o) for o in getattr(agent, "allowed_origins", ())}


def _cors_headers(agent: Any, response: Response) -> Response:
    """No CORS header at all, unless the request's Origin is listed: then for that origin only."""
    for name in [n for n in response.headers.keys() if n.lower().startswith("access-control-")]:
        del response.headers[name]
    for name, value in cors_headers(agent, request.headers.get("Origin")).items():
        if name == "Vary":
            response.vary.add(value)
        else:
            response.headers[name] = value
    return response


def _json_error(error: HTTPException) -> Response:
    """Flask's and werkzeug's errors (404, 405, 413, 500 ...) as JSON instead of HTML."""
    response = _error(error.code or 500, error.description or HTTPStatus(error.code or 500).phrase)
    if error.code == 405 and getattr(error, "valid_methods", None):
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def _error(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


class JSONErrors:
    """Mix into a request handler: the errors http.server sends itself (414 URL too long,
    431 headers too large, 400 bad request line) as JSON, not HTML."""

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        body = json.dumps({"error": message or HTTPStatus(code).phrase}).encode()
        self.close_connection = True
        self.send_response(code, message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if getattr(self, "command", None) != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)


class JSONErrorRequestHandler(JSONErrors, WSGIRequestHandler):
    """werkzeug's request handler with JSON errors (serve() uses it)."""
