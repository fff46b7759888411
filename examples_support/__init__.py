"""Demo scaffolding shared by the example scripts: the command line, colours, tables.

Not part of the kit: nothing here is needed to stream. Copy streaming_kit/, not this.
"""
from __future__ import annotations

import argparse
import asyncio
import errno
import math
import os
import signal
import sys
import threading
from typing import Any, Callable, Iterable, Optional

from streaming_kit import quiet, serve
from streaming_kit.guard import normalise_origin
from python_a2a import A2AError, A2AServer


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def serve_until_interrupted(agent: A2AServer, host: str, port: int, extra_lines: Iterable[str] = ()) -> int:
    """`--serve`: print the address (then extra_lines, "{url}" filled in), serve until Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:  # around everything: a signal right after the "Serving" line must not escape
        with serve(agent, host, port) as url:
            print(f"Serving {agent.agent_card.name} at {url}", flush=True)
            for line in extra_lines:
                print(line.format(url=url), flush=True)
            threading.Event().wait()
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
    return 0


def http_url(value: str) -> str:
    """argparse type for a server address: http(s)://host:port, trailing slash dropped."""
    if not value.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected http://host:port, got {value!r}")
    return value.rstrip("/")


def seconds_arg(zero_ok: bool = False) -> Callable[[str], float]:
    """argparse type for a duration: a finite number of seconds above 0 (or 0 too, with zero_ok).

    float() alone accepts "nan" and "inf": a wait of either never ends, and nan compares false
    with everything, so a later `<= 0` check lets it through."""
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and (number > 0 or (zero_ok and number == 0))):
            bound = "0 or more" if zero_ok else "above 0"
            raise argparse.ArgumentTypeError(f"expected a number of seconds {bound}, got {value!r}: a duration "
                                             f"must be {'finite' if zero_ok else 'positive and finite'}")
        return number
    return parse


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


def demo_parser(description: str, default_port: int, script: Optional[str] = None,
                many_urls: bool = False) -> argparse.ArgumentParser:
    """The command-line contract every demo shares (--fast, --serve, --url, --verbose).

    many_urls=True makes --url repeatable (args.url is then a list or None).
    """
    script = script or os.path.basename(sys.argv[0])
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"examples:\n  python {script} --fast\n  python {script} --serve        "
               f"# then, in another terminal:\n  python {script} --url http://127.0.0.1:{default_port}")
    parser.add_argument("--fast", action="store_true", help="no simulated delays (tests, CI)")
    role = parser.add_mutually_exclusive_group()  # serve, or be the client of another server
    role.add_argument("--serve", action="store_true", help="only run the agent server, until Ctrl-C")
    parser.add_argument("--host", default="127.0.0.1", help="address for --serve (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=default_port,
                        help=f"port for --serve (default {default_port}; 0 picks a free one)")
    if many_urls:
        role.add_argument("--url", type=http_url, action="append", metavar="URL",
                          help="only run the client, against these running servers (repeat --url)")
    else:
        role.add_argument("--url", type=http_url, help="only run the client, against this running server")
    parser.add_argument("--verbose", action="store_true", help="show python-a2a's and werkzeug's logs")
    parser.add_argument("--allow-origin", action="append", default=[], type=origin_arg, metavar="ORIGIN",
                        help="with --serve: a web page origin that may call the agent, e.g. http://localhost:3000 "
                             "(repeatable; default: same-origin only)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="HOST",
                        help="with --serve: a Host name to answer besides the address served and loopback "
                             "(repeatable), e.g. agent.example.com behind a proxy")
    return parser


def run_demo(args: argparse.Namespace, make_agent: Callable[[], A2AServer],
             client: Callable[[str], Any], serve_lines: Iterable[str] = ()) -> int:
    """Dispatch the contract: --serve, --url, or server + client in one process; exit code.

    serve_lines: extra lines printed after "Serving ... at URL" with --serve ("{url}" filled in).
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


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """A plain aligned table: the summary every demo ends with."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
