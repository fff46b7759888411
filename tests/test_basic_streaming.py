"""basic_streaming.py: run as a user runs it, and its agent and client used directly."""
import asyncio
import subprocess
import sys

import pytest

import streaming_kit as kit
from conftest import ROOT, library_noise, load_script, run_script

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


def test_an_error_starts_on_its_own_line():
    with kit.serve(basic.WordStreamer()) as url:
        pass  # closed again: nothing answers there now
    result = run_script("basic_streaming.py", "--url", url)
    assert result.returncode == 1 and result.stdout.endswith("A: \n")  # the answer's line is ended
    assert result.stderr.startswith("error: cannot connect")


def test_a_reader_that_goes_away_ends_the_demo_quietly():
    process = subprocess.Popen([sys.executable, str(ROOT / "basic_streaming.py")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert process.stdout.readline().startswith(b"Q: ")
    process.stdout.close()  # as `| head -1` does
    assert process.wait(timeout=60) == 141
    assert process.stderr.read() == b""


@pytest.mark.timeout(60)
def test_serve_and_url_work_from_two_processes():
    import sys
    server = subprocess.Popen([sys.executable, "basic_streaming.py", "--serve", "--port", "0"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        first_line = server.stdout.readline()  # blocks until the server says where it is
        assert first_line.startswith("Serving Basic streaming agent at http://127.0.0.1:")
        url = first_line.split(" at ")[1].strip()
        client = run_script("basic_streaming.py", "--url", url)
        assert client.returncode == 0, client.stderr
        assert basic.ANSWER in client.stdout
    finally:
        server.terminate()
        assert server.wait(10) == 0  # SIGTERM is a clean stop
    assert "Stopped." in server.stdout.read()


def test_bad_arguments_exit_2_with_a_usage_message():
    result = run_script("basic_streaming.py", "--url", "localhost:8100")
    assert result.returncode == 2
    assert "expected http://host:port" in result.stderr


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
