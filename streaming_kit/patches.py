"""Every change the kit makes to python-a2a, in one place.

Each patch names the defect it answers (§n: the list in README "What the kit fixes"), is
applied once, and checks first that what it replaces is there: python-a2a's streaming code
is the same in every 0.5.x release, and a release that moved or renamed a target must fail
loudly here rather than quietly bring the lossy behaviour back.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import sys
import threading
import traceback
import types
from typing import Any, Callable

TESTED_VERSIONS = ("0.5.",)  # python-a2a releases whose streaming code these patches target


class PatchTargetMissing(RuntimeError):
    """python-a2a no longer has something the kit replaces: this release needs a new kit."""


# ---------------------------------------------------------------- fast start-up, made safe
# python-a2a imports openai, anthropic, boto3 and langchain at start-up (≈ 3 s) although every
# such import in it is optional (try/except ImportError). While python_a2a loads, those imports
# are refused; the python-a2a modules that asked for one are remembered, and the first time one
# of their classes or functions is used, the module's imports are completed for real. So
# OpenAIA2AServer & co. keep working; they just pay the import when first used, not at start.
# STREAMING_KIT_FULL_IMPORT=1 turns the shortcut off.
_OPTIONAL_HEAVY = frozenset({"openai", "anthropic", "boto3", "botocore", "langchain", "langchain_core",
                             "langchain_community", "langgraph"})


class _DeferOptional(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes python-a2a's guarded optional imports fail fast, noting which module asked."""

    def __init__(self) -> None:
        self.deferred: set[str] = set()

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in _OPTIONAL_HEAVY:
            return None
        frame = sys._getframe(1)
        while frame is not None:  # the python_a2a module whose import statement is running
            module = frame.f_globals.get("__name__", "")
            if module.startswith("python_a2a") and frame.f_code.co_name == "<module>":
                self.deferred.add(module)
                break
            frame = frame.f_back
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        raise ImportError(f"{spec.name} is deferred while python_a2a starts (streaming_kit)")

    def exec_module(self, module):  # never reached: create_module raises
        pass


_completion_lock = threading.Lock()


def _complete_imports(module: types.ModuleType) -> None:
    """Run the module's code again in a scratch namespace, now with the optional packages
    importable, and give the module the names that its first run left as None."""
    with _completion_lock:
        if getattr(module, "__streaming_kit_completed__", False):
            return
        module.__streaming_kit_completed__ = True
        scratch = {"__name__": module.__name__, "__package__": module.__package__,
                   "__spec__": module.__spec__, "__file__": module.__file__}
        try:
            exec(module.__spec__.loader.get_code(module.__name__), scratch)
        except Exception:  # a package that is really missing: python-a2a's own message follows
            return
        for name, value in scratch.items():
            if module.__dict__.get(name, ...) is None and value is not None:
                module.__dict__[name] = value


def _completing(function: Callable, module: types.ModuleType) -> Callable:
    def completed_first(*args: Any, **kwargs: Any) -> Any:
        _complete_imports(module)
        return function(*args, **kwargs)
    completed_first.__wrapped__ = function
    completed_first.__name__, completed_first.__doc__ = function.__name__, function.__doc__
    return completed_first


def _defer_until_used(module_names: set[str]) -> None:
    """Wrap the classes' __init__ and the functions of each deferred module (see above)."""
    for name in module_names:
        module = sys.modules.get(name)
        if module is None:
            continue
        for value in list(vars(module).values()):
            if getattr(value, "__module__", None) != name:
                continue
            if isinstance(value, type) and "__init__" in vars(value):
                value.__init__ = _completing(vars(value)["__init__"], module)
            elif isinstance(value, types.FunctionType):
                setattr(module, value.__name__, _completing(value, module))


# python-a2a calls logging.basicConfig(level=INFO) on import (§5); remember the root logger
# as it was, so quiet() can undo exactly that and keep a logging set-up of your own.
ROOT_LOGGER_BEFORE = None if "python_a2a" in sys.modules else (
    logging.getLogger().level, list(logging.getLogger().handlers))

if "python_a2a" not in sys.modules and not os.environ.get("STREAMING_KIT_FULL_IMPORT"):
    _deferrer = _DeferOptional()
    sys.meta_path.insert(0, _deferrer)
    try:
        import python_a2a  # noqa: F401
    finally:
        sys.meta_path.remove(_deferrer)
    _defer_until_used(_deferrer.deferred)

import python_a2a  # noqa: E402
from python_a2a import Task  # noqa: E402
from python_a2a.client import streaming as a2a_client_streaming  # noqa: E402
from python_a2a.server import http as a2a_http  # noqa: E402

if not python_a2a.__version__.startswith(TESTED_VERSIONS):
    raise PatchTargetMissing(f"streaming_kit targets python-a2a {TESTED_VERSIONS[0]}x, found "
                             f"{python_a2a.__version__}: check the patches in {__file__}")


def _require(owner: Any, name: str) -> Any:
    if not hasattr(owner, name):
        raise PatchTargetMissing(f"python-a2a {python_a2a.__version__}: {getattr(owner, '__name__', owner)}."
                                 f"{name} is gone; streaming_kit's patch for it needs updating")
    return getattr(owner, name)


def replace_view(app: Any, endpoint: str, view: Callable) -> Callable:
    """Swap the view behind one of python-a2a's Flask endpoints (§7: re-declaring a route does
    nothing); returns the stock view. Raises if the endpoint is not there."""
    if endpoint not in app.view_functions:
        raise PatchTargetMissing(f"python-a2a {python_a2a.__version__} has no Flask endpoint {endpoint!r}; "
                                 "streaming_kit cannot replace it (its lossy stock version would stay)")
    stock, app.view_functions[endpoint] = app.view_functions[endpoint], view
    return stock


# §12: client/streaming.py uses `traceback` without importing it, so every stream error turns
# into a NameError. Supplying the module restores the real exception.
_require(a2a_client_streaming, "StreamingClient")
a2a_client_streaming.traceback = traceback

# Task.from_dict keeps only "parts" of A2A-style artifacts, dropping artifactId, append and
# lastChunk, so no client could assemble chunks by id. Keep the other fields as sent.
_stock_task_from_google = _require(Task, "from_google_a2a").__func__


def _task_from_google_keeping_artifact_fields(cls, data: dict) -> Task:
    task = _stock_task_from_google(cls, data)
    for kept, sent in zip(task.artifacts, data.get("artifacts", [])):
        kept.update({key: value for key, value in sent.items() if key not in kept})
    return task


Task.from_google_a2a = classmethod(_task_from_google_keeping_artifact_fields)


# ---------------------------------------------------------------- silence (§5)
class _SilentTraceback:
    """Stands in for `traceback` inside python-a2a's server module: no print_exc output."""

    format_exc = staticmethod(traceback.format_exc)

    @staticmethod
    def print_exc(*args: Any, **kwargs: Any) -> None:
        pass


def quiet() -> None:
    """Silence python-a2a's prints and INFO logs, werkzeug's request log (§5), and the INFO logs of
    httpx, uvicorn and a2a-sdk that the A2A paths use.

    Rebinds `print` inside python-a2a's server module only; the script's own output stays.
    """
    _require(a2a_http, "create_flask_app")
    a2a_http.print = lambda *args, **kwargs: None
    a2a_http.traceback = _SilentTraceback()
    logging.getLogger("python_a2a").setLevel(logging.CRITICAL)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    for name in ("httpx", "uvicorn", "uvicorn.error", "a2a"):  # the A2A paths: a2a-sdk's client, serve_asgi
        logging.getLogger(name).setLevel(logging.WARNING)
    root = logging.getLogger()
    if ROOT_LOGGER_BEFORE is None:  # python_a2a was imported before the kit: plain default
        root.setLevel(logging.WARNING)
        return
    level, handlers = ROOT_LOGGER_BEFORE
    root.setLevel(level)
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)


# ---------------------------------------------------------------- the HTTP boundary (guard.py)
# §24: create_flask_app adds `Access-Control-Allow-Origin: *` to every response (its after_request
# add_cors_headers), so any web page the user opens may read the agent's answers. guard.py
# decides CORS instead; the stock hook must go, as after_request hooks run last-added first.
def drop_stock_cors(app: Any) -> None:
    """Remove python-a2a's add_cors_headers hook from app."""
    hooks = app.after_request_funcs.get(None, [])
    stock = [hook for hook in hooks if getattr(hook, "__name__", "") == "add_cors_headers"
             and getattr(hook, "__module__", "") == a2a_http.__name__]
    if not stock:
        raise PatchTargetMissing(f"python-a2a {python_a2a.__version__}: create_flask_app no longer adds "
                                 "add_cors_headers; check streaming_kit's CORS handling (guard.py)")
    for hook in stock:
        hooks.remove(hook)


# §25: the catch-all GET route answers only `request.method == "GET"`; for HEAD it returns None,
# which Flask turns into a 500. HEAD of any unknown path now gets what GET gets, without the body.
# (The route is added after setup_routes runs, so the fix is a hook rather than replace_view.)
def answer_head_like_get(app: Any) -> None:
    from flask import request
    index = app.view_functions.get("enhanced_a2a_index")
    if index is None:
        raise PatchTargetMissing(f"python-a2a {python_a2a.__version__} has no endpoint 'enhanced_a2a_index'")

    def head_of_catch_all() -> Any:
        if request.method == "HEAD" and request.endpoint == "catch_all":
            return index()
        return None
    app.before_request(head_of_catch_all)
