"""01_basic_streaming.py: clause chunking, thinking pause, streamed vs. not streamed."""
import asyncio

import pytest

import streaming_kit as kit
from conftest import library_noise, load_script, run_script

basics = load_script("01_basic_streaming.py")


def test_demo_streams_then_compares_and_verifies_identical_text():
    result = run_script("01_basic_streaming.py", "--fast")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(basics.ANSWER) == 2  # once streamed, once whole
    assert "Verdict: identical text both ways" in result.stdout
    assert library_noise(result.stdout + result.stderr) == [] and result.stderr == ""


def test_streamed_answer_arrives_one_clause_per_chunk_and_the_whole_one_in_one():
    async def both(url):
        client = kit.StrictStreamingClient(url)
        return await basics.ask_streaming(client, "?"), await basics.ask_whole(client, "?")

    with kit.serve(basics.ExplainerAgent(0, 0)) as url:
        streamed, whole = asyncio.run(both(url))
    assert streamed["chunks"] == len(basics.clauses(basics.ANSWER)) == 9
    assert (whole["chunks"], whole["text"], streamed["text"]) == (1, basics.ANSWER, basics.ANSWER)
    assert streamed["first"] <= streamed["total"]


def test_url_of_another_examples_agent_is_refused_in_one_line():
    with kit.serve(load_script("basic_streaming.py").WordStreamer(delay=0)) as url:
        result = run_script("01_basic_streaming.py", "--url", url)
    assert (result.returncode, result.stdout) == (1, "")  # it used to pass: both paths gave basic's answer
    line, = result.stderr.splitlines()
    assert f'{url} serves "Basic streaming agent", not "Streaming explainer"' in line


def test_a_dead_url_is_one_line_saying_cannot_connect():
    with kit.serve(basics.ExplainerAgent(0, 0)) as url:
        pass  # closed again: nothing answers there now
    result = run_script("01_basic_streaming.py", "--url", url)
    assert (result.returncode, result.stdout) == (1, "")
    line, = result.stderr.splitlines()
    assert line.startswith(f"error: cannot connect to {url}: is the server running?")


@pytest.mark.parametrize("text", ["", "no punctuation", "One. Two, three; four: five! Six?", "a,,b..  c\n\nd",
                                  "trailing space. ", "ünïcödé, ✓ done."])
def test_clauses_are_lossless(text):
    assert "".join(basics.clauses(text)) == text


def test_clauses_end_after_punctuation_and_its_spaces():
    assert basics.clauses("Hi, there. Bye") == ["Hi, ", "there. ", "Bye"]


def test_agent_thinks_before_the_first_chunk():
    agent = basics.ExplainerAgent(thinking_seconds=0.3, chars_per_second=0)

    async def time_to_first_chunk():
        loop = asyncio.get_running_loop()
        started = loop.time()
        stream = agent.stream_response(kit.text_message("?"))
        await stream.__anext__()
        await stream.aclose()
        return loop.time() - started

    assert asyncio.run(time_to_first_chunk()) >= 0.3


def test_comparison_fails_when_the_two_paths_disagree(capsys):
    class Inconsistent(basics.ExplainerAgent):
        def handle_message(self, message):
            reply = super().handle_message(message)
            reply.content.text += " (extra)"
            return reply

    with kit.serve(Inconsistent(0, 0)) as url:
        assert asyncio.run(basics.compare(url)) == 1
    assert "the two answers differ" in capsys.readouterr().out
