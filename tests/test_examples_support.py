"""examples_support: the command line every demo shares (argument messages, options tied to a role,
how --serve serves)."""
import argparse
import os
import subprocess
import sys
import urllib.request

import pytest

from conftest import ROOT, run_script
from examples_support import demo_parser, seconds_arg

DEMOS = ["basic_streaming.py", "01_basic_streaming.py", "02_advanced_streaming.py", "03_streaming_llm_integration.py",
         "04_task_based_streaming.py", "05_streaming_ui_integration.py", "06_distributed_streaming.py"]


@pytest.mark.parametrize("zero_ok, value, problem", [
    (True, "-1", "got '-1': a duration cannot be negative"),  # it said "a duration must be finite"
    (False, "-1", "got '-1': a duration cannot be negative"),
    (False, "0", "got '0': it must be positive"),
    (True, "nan", "got 'nan': not a number"),
    (True, "inf", "got 'inf': infinite: a wait that never ends"),
    (False, "soon", "got 'soon': not a number")])
def test_seconds_arg_says_what_is_wrong(zero_ok, value, problem):
    with pytest.raises(argparse.ArgumentTypeError) as raised:
        seconds_arg(zero_ok)(value)
    assert str(raised.value).endswith(problem)


def test_seconds_arg_takes_finite_durations():
    assert seconds_arg(zero_ok=True)("0") == 0 and seconds_arg()("0.25") == 0.25


@pytest.mark.parametrize("script", DEMOS)
def test_port_without_serve_is_refused_by_every_demo(script):
    result = run_script(script, "--port", "9")  # it used to be ignored: the demo ran on a free port
    assert result.returncode == 2 and "--port goes with --serve" in result.stderr, result.stderr


def test_host_and_port_default_with_serve_and_are_filled_in_without():
    parser = demo_parser("x", 8199)
    assert (parser.parse_args([]).host, parser.parse_args([]).port) == ("127.0.0.1", 8199)
    given = parser.parse_args(["--serve", "--host", "::1", "--port", "0"])
    assert (given.host, given.port) == ("::1", 0)


def test_client_and_server_options_are_refused_in_the_other_role(capsys):
    parser = demo_parser("x", 8199)
    parser.client_option("--report", default=None)
    parser.server_option("--provider", action="append", default=[])
    assert parser.parse_args([]).report is None and parser.parse_args([]).provider == []
    for argv, complaint in ((["--serve", "--report", "r.json"], "--report belongs to the client run: drop --serve"),
                            (["--url", "http://127.0.0.1:1", "--provider", "a"], "pass --provider to its --serve")):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 2 and complaint in capsys.readouterr().err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("script", [*DEMOS, "07_a2a_interop.py"])
def test_serve_runs_on_uvicorn_unless_the_agent_adds_flask_routes(script):
    """serving_for(): 05 adds session streams in setup_routes and stays on serve() (werkzeug);
    the others run on serve_asgi, python-a2a's own routes included."""
    process = subprocess.Popen([sys.executable, str(ROOT / script), "--serve", "--port", "0"], cwd=ROOT,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "NO_COLOR": "1"})
    try:
        first = process.stdout.readline()
        assert first.startswith("Serving ") and " at http://127.0.0.1:" in first, first
        with urllib.request.urlopen(first.rsplit(" at ", 1)[1].strip() + "/a2a/health", timeout=10) as answer:
            server, body = answer.headers["Server"], answer.read()
    finally:
        process.terminate()
        process.communicate(timeout=20)
    assert b'"ok"' in body
    assert server.startswith("Werkzeug" if script.startswith("05") else "uvicorn"), server
    assert process.returncode == 0
