"""examples_support: the command line every demo shares (argument messages, options tied to a role)."""
import argparse

import pytest

from conftest import run_script
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
