"""basic_streaming.py: run as a user runs it, and its agent and client used directly."""
import asyncio
import subprocess
import sys

import pytest

import streaming_kit as kit
from conftest import ROOT, library_noise, load_script, run_script, serve_script

basic = load_script("basic_streaming.py")


def test_demo_prints_the_whole_answer_and_a_summary():
    result = run_script("basic_streaming.py", "--fast")
    assert result.returncode == 0, result.stderr
    assert basic.ANSWER in result.stdout
    assert f"24 chunks, {len(basic.ANSWER) + 1} characters" in result.stdout  # what arrived: a space after each word
    assert "every word arrived, in order" in result.stdout
    assert library_noise(result.stdout + result.stderr) == []


def test_agent_streams_the_answer_word_by_word():
    async def words():
        return [chunk async for chunk in basic.WordStreamer(delay=0).stream_response(kit.text_message("?"))]
    chunks = asyncio.run(words())
    assert len(chunks) == len(basic.ANSWER.split(" "))
    assert "".join(chunks).strip() == basic.ANSWER


def test_client_exits_1_when_the_answer_arrives_changed(capsys):
    class WrongAnswer(kit.StreamingAgent):
        async def stream_response(self, message):
            yield "something else"
    with kit.serve(WrongAnswer()) as url:
        assert asyncio.run(basic.ask(url)) == 1
    out = capsys.readouterr().out
    assert "changed" in out and "1 chunks, 14 characters" in out  # counts what arrived, not what was expected


class BreaksAfterTwoWords(basic.WordStreamer):
    """basic's agent (same card name) whose stream fails after two words."""

    async def stream_response(self, message):
        yield "two "
        yield "words "
        raise RuntimeError("the model went away")


def test_an_error_starts_on_its_own_line():
    with kit.serve(BreaksAfterTwoWords(delay=0)) as url:
        result = run_script("basic_streaming.py", "--url", url)
    assert result.returncode == 1 and result.stdout.endswith("A: two words \n")  # the answer's line is ended
    assert result.stderr.startswith("error: ") and "the model went away" in result.stderr


def test_a_dead_url_is_one_line_saying_cannot_connect():
    with kit.serve(basic.WordStreamer()) as url:
        pass  # closed again: nothing answers there now
    result = run_script("basic_streaming.py", "--url", url)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"error: cannot connect to {url}: is the server running?")
    assert result.stderr.count("\n") == 1


def test_url_of_another_examples_agent_is_refused_in_one_line():
    explainer = load_script("01_basic_streaming.py").ExplainerAgent(0, 0)
    with kit.serve(explainer) as url:
        result = run_script("basic_streaming.py", "--url", url)
    assert (result.returncode, result.stdout) == (1, "")
    line, = result.stderr.splitlines()
    assert line == (f'error: {url} serves "Streaming explainer", not "Basic streaming agent": '
                    "point --url at python basic_streaming.py --serve")


def test_a_reader_that_goes_away_ends_the_demo_quietly():
    process = subprocess.Popen([sys.executable, str(ROOT / "basic_streaming.py")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert process.stdout.readline().startswith(b"Q: ")
    process.stdout.close()  # as `| head -1` does
    assert process.wait(timeout=60) == 141
    assert process.stderr.read() == b""


@pytest.mark.timeout(60)
def test_serve_and_url_work_from_two_processes():
    with serve_script("basic_streaming.py") as server:  # and SIGTERM stops it with exit status 0
        assert server.name == "Basic streaming agent" and server.url.startswith("http://127.0.0.1:"), server.url
        client = run_script("basic_streaming.py", "--url", server.url)
        assert client.returncode == 0, client.stderr
        assert basic.ANSWER in client.stdout
    assert "Stopped." in server.stdout


@pytest.mark.parametrize("args, complaint", [
    (["--url", "localhost:8100"], "expected http://host:port"),
    (["--port", "8100"], "--port goes with --serve"),
    (["--host", "127.0.0.1", "--url", "http://127.0.0.1:8100"], "--host goes with --serve")])
def test_bad_arguments_exit_2_with_a_usage_message(args, complaint):
    result = run_script("basic_streaming.py", *args)
    assert result.returncode == 2
    assert complaint in result.stderr


def test_help_shows_an_example_command_line():
    result = run_script("basic_streaming.py", "--help")
    assert result.returncode == 0
    assert "python basic_streaming.py --serve" in result.stdout


def test_serve_on_a_busy_port_exits_1_with_a_clear_message():
    import socket
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        result = run_script("basic_streaming.py", "--serve", "--port", port)
    assert result.returncode == 1
    assert f"error: cannot serve on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "--port 0" in result.stderr and "Traceback" not in result.stderr
