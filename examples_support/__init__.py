"""Demo scaffolding shared by the example scripts: the command line, colours, tables.

Not part of the kit: nothing here is needed to stream. Copy streaming_kit/, not this.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import math
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Optional

from streaming_kit import StreamingAgent, quiet, serve, serve_asgi
from streaming_kit.guard import normalise_origin
from python_a2a import A2AConnectionError, A2AError, A2AServer


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def serving_for(agent: A2AServer) -> Callable:
    """How `--serve` serves an agent: serve_asgi (one event loop, no thread per stream) for a kit agent
    that adds no Flask routes of its own; serve() otherwise. Routes added in setup_routes (05's
    session streams) would reach the ASGI app only through a thread pool that cannot notice a client
    hanging up on a stream, and the Flask hooks such an override adds miss the routes asgi.py answers."""
    if isinstance(agent, StreamingAgent) and type(agent).setup_routes is StreamingAgent.setup_routes:
        return serve_asgi
    return serve


def serve_until_interrupted(agent: A2AServer, host: str, port: int, extra_lines: Iterable[str] = ()) -> int:
    """`--serve`: print the address (then extra_lines, "{url}" filled in), serve until Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:  # around everything: a signal right after the "Serving" line must not escape
        with serving_for(agent)(agent, host, port) as url:
            print(f"Serving {agent.agent_card.name} at {url}", flush=True)
            for line in extra_lines:
                print(line.format(url=url), flush=True)
            threading.Event().wait()
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
    return 0


# ---------------------------------------------------------------- argument types
def http_url(value: str) -> str:
    """argparse type for a server address: http(s)://host:port, trailing slash dropped."""
    if not value.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected http://host:port, got {value!r}")
    return value.rstrip("/")


def seconds_arg(zero_ok: bool = False) -> Callable[[str], float]:
    """argparse type for a duration: a finite number of seconds above 0 (or 0 too, with zero_ok).

    float() alone accepts "nan" and "inf": a wait of either never ends, and nan compares false
    with everything, so a later `<= 0` check lets it through."""
    bound = "0 or more" if zero_ok else "above 0"

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is None or math.isnan(number):
            problem = "not a number"
        elif math.isinf(number):
            problem = "infinite: a wait that never ends"
        elif number < 0:
            problem = "a duration cannot be negative"
        elif number == 0 and not zero_ok:
            problem = "it must be positive"
        else:
            return number
        raise argparse.ArgumentTypeError(f"expected a number of seconds {bound}, got {value!r}: {problem}")
    return parse


def count_arg(value: str) -> int:
    """argparse type for a count of 1 or more."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return int(value)


def origin_arg(value: str) -> str:
    """argparse type for a web origin, scheme://host[:port]."""
    try:
        return normalise_origin(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(value: str) -> int:
    """argparse type for a TCP port, 0 meaning any free one."""
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {value!r}")
    return int(value)


def output_file(suffix: Optional[str] = None) -> Callable[[str], Path]:
    """argparse type for a file the run writes at its end: checked now, not after the whole run."""
    def parse(value: str) -> Path:
        path = Path(value)
        if suffix and path.suffix.lower() != suffix:
            raise argparse.ArgumentTypeError(f"{value!r} must end in {suffix}")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{value!r} is a folder; name a file in it")
        if not path.parent.is_dir():
            raise argparse.ArgumentTypeError(f"cannot write {value!r}: folder {str(path.parent)!r} does not exist")
        if not os.access(path.parent, os.W_OK):
            raise argparse.ArgumentTypeError(f"cannot write {value!r}: folder {str(path.parent)!r} is not writable")
        return path
    return parse


def text_file(value: str) -> str:
    """argparse type for a UTF-8 text file: its text, line ends kept as they are (CRLF stays CRLF)."""
    try:
        with open(value, encoding="utf-8", newline="") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"cannot read {value}: {exc}") from None


# ---------------------------------------------------------------- the command line
class DemoParser(argparse.ArgumentParser):
    """The parser demo_parser makes: it also refuses options given to the wrong role.

    --host and --port only mean something with --serve; options added with client_option only
    with the client (not with --serve); options added with server_option only when this script
    starts the agent (not with --url). Those options are absent from the namespace when not given
    (argparse.SUPPRESS), so "given" is known even when the value equals the default.
    """

    def __init__(self, *args: Any, script: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.script = script  # named in messages: "python <script> --serve"
        self._roles: dict[str, tuple[str, str, Any]] = {}  # dest -> (role, flag, default)

    def role_option(self, role: str, *flags: str, **kwargs: Any) -> argparse.Action:
        default = kwargs.pop("default", None)
        action = self.add_argument(*flags, default=argparse.SUPPRESS, **kwargs)
        self._roles[action.dest] = (role, flags[0], default)
        return action

    def client_option(self, *flags: str, **kwargs: Any) -> argparse.Action:
        """An option of the client run: refused with --serve."""
        return self.role_option("client", *flags, **kwargs)

    def server_option(self, *flags: str, **kwargs: Any) -> argparse.Action:
        """An option of the agent this script starts: refused with --url."""
        return self.role_option("server", *flags, **kwargs)

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed = super().parse_args(args, namespace)
        parsed.script = self.script
        for dest, (role, flag, default) in self._roles.items():
            if hasattr(parsed, dest):
                self._refuse_misplaced(parsed, role, flag)
            else:
                setattr(parsed, dest, default)
        return parsed

    def _refuse_misplaced(self, parsed: argparse.Namespace, role: str, flag: str) -> None:
        if role == "serve" and not parsed.serve:
            self.error(f"{flag} goes with --serve (without it the demo picks a free port, or uses --url's server)")
        if role == "client" and parsed.serve:
            self.error(f"{flag} belongs to the client run: drop --serve (or give {flag} to the run with --url)")
        if role == "server" and parsed.url:
            self.error(f"{flag} configures the agent this script starts; with --url the agent runs elsewhere: "
                       f"pass {flag} to its --serve instead")


def demo_parser(description: str, default_port: int, script: Optional[str] = None,
                many_urls: bool = False) -> DemoParser:
    """The command-line contract every demo shares (--fast, --serve, --url, --verbose).

    description may be a whole docstring: its first line is used. many_urls=True makes --url
    repeatable (args.url is then a list or None).
    """
    script = script or os.path.basename(sys.argv[0])
    parser = DemoParser(
        script=script, description=description.strip().split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"examples:\n  python {script} --fast\n  python {script} --serve        "
               f"# then, in another terminal:\n  python {script} --url http://127.0.0.1:{default_port}")
    parser.add_argument("--fast", action="store_true", help="no simulated delays (tests, CI)")
    role = parser.add_mutually_exclusive_group()  # serve, or be the client of another server
    role.add_argument("--serve", action="store_true", help="only run the agent server, until Ctrl-C")
    parser.role_option("serve", "--host", default="127.0.0.1", help="address for --serve (default 127.0.0.1)")
    parser.role_option("serve", "--port", type=_port, default=default_port,
                       help=f"port for --serve (default {default_port}; 0 picks a free one)")
    if many_urls:
        role.add_argument("--url", type=http_url, action="append", metavar="URL",
                          help="only run the client, against these running servers (repeat --url)")
    else:
        role.add_argument("--url", type=http_url, help="only run the client, against this running server")
    parser.add_argument("--verbose", action="store_true", help="show python-a2a's and werkzeug's logs")
    parser.role_option("serve", "--allow-origin", action="append", default=[], type=origin_arg, metavar="ORIGIN",
                       help="with --serve: a web page origin that may call the agent, e.g. http://localhost:3000 "
                            "(repeatable; default: same-origin only)")
    parser.role_option("serve", "--allow-host", action="append", default=[], metavar="HOST",
                       help="with --serve: a Host name to answer besides the address served and loopback "
                            "(repeatable), e.g. agent.example.com behind a proxy")
    return parser


class WrongAgent(A2AError):
    """--url names a server that runs another agent than the one this demo's client talks to."""


def agent_name_at(url: str) -> str:
    """The name on the agent card at url; A2AConnectionError if nothing, or no A2A agent, answers there."""
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never via a proxy
    try:
        with no_proxy.open(f"{url}/agent.json", timeout=10) as response:
            card = json.load(response)
    except urllib.error.HTTPError as exc:
        raise A2AConnectionError(f"{url} has no agent card (GET /agent.json: HTTP {exc.code}): "
                                 "is it an A2A agent?") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise A2AConnectionError(f"cannot connect to {url}: is the server running? "
                                 f"({getattr(reason, 'strerror', None) or reason})") from None
    except ValueError:
        raise A2AConnectionError(f"{url}/agent.json is not JSON: is it an A2A agent?") from None
    return str(card.get("name", "")) if isinstance(card, dict) else ""


def require_agent(url: str, expected: str, script: str) -> None:
    """Raise WrongAgent (one short line) unless the agent at url is named `expected`."""
    found = agent_name_at(url)
    if found != expected:
        raise WrongAgent(f'{url} serves "{found}", not "{expected}": point --url at python {script} --serve')


def run_demo(args: argparse.Namespace, make_agent: Callable[[], A2AServer],
             client: Callable[[str], Any], serve_lines: Iterable[str] = (), own_agent_only: bool = False) -> int:
    """Dispatch the contract: --serve, --url, or server + client in one process; exit code.

    serve_lines: extra lines printed after "Serving ... at URL" with --serve ("{url}" filled in).
    own_agent_only: with --url, first check that the server runs this demo's agent (by its card's
    name); another agent is refused in one line, exit 1, before the client starts.
    """
    if not args.verbose:
        quiet()
    try:
        if args.serve:
            agent = make_agent()
            agent.allowed_origins = (*getattr(agent, "allowed_origins", ()), *args.allow_origin)
            agent.allowed_hosts = (*getattr(agent, "allowed_hosts", ()), *args.allow_host)
            return serve_until_interrupted(agent, args.host, args.port, serve_lines)
        if args.url:
            if own_agent_only:
                require_agent(args.url, make_agent().agent_card.name, args.script)
            return asyncio.run(client(args.url))
        with serve(make_agent()) as url:
            return asyncio.run(client(url))
    except A2AError as exc:
        print(paint(f"error: {exc}", "red", sys.stderr), file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly
        return stdout_gone()
    except OSError as exc:  # e.g. --serve on a port that is taken
        where = f" on {args.host}:{args.port}" if args.serve else ""
        hint = "; choose another --port, or --port 0 for any free one" if exc.errno == errno.EADDRINUSE else ""
        print(paint(f"error: cannot serve{where}: {exc.strerror or exc}{hint}", "red", sys.stderr), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# ---------------------------------------------------------------- output
def stdout_gone() -> int:
    """After a BrokenPipeError: send the rest of stdout to /dev/null (so Python's exit flush does
    not fail again) and return 141, the status of a process ended by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def use_colour(stream=sys.stdout) -> bool:
    """Colour only on a terminal and only when NO_COLOR is not set."""
    return stream.isatty() and not os.environ.get("NO_COLOR")  # no-color.org: set and not empty


def paint(text: str, colour: str, stream=sys.stdout) -> str:
    """text in a colorama colour ("green", "red", ...), plain when colour is off."""
    if not use_colour(stream):
        return text
    import colorama
    return f"{getattr(colorama.Fore, colour.upper())}{text}{colorama.Style.RESET_ALL}"


@contextlib.asynccontextmanager
async def spinner(label: str) -> AsyncIterator[None]:
    """While the block awaits: "label: 0:03", ticking on stderr when it is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield
        return
    from tqdm import tqdm

    async def tick(bar: Any) -> None:
        while True:
            await asyncio.sleep(0.1)
            bar.refresh()

    with tqdm(desc=label, bar_format="{desc}: {elapsed}", leave=False) as bar:
        ticker = asyncio.ensure_future(tick(bar))
        try:
            yield
        finally:
            ticker.cancel()


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """A plain aligned table: the summary every demo ends with."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
