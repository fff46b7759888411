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
    assert "streamed      9" in result.stdout and "not streamed  1" in result.stdout
    assert "Verdict: identical text both ways" in result.stdout
    assert library_noise(result.stdout + result.stderr) == []


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
