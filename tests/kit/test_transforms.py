"""streaming_kit.transforms: any token split gives the same text, and a broken stream keeps what it wrote."""
from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings, strategies as st

from streaming_kit import StopAt, pipeline, redact_secrets, tidy_whitespace, whole_words
from streaming_kit.transforms import MAX_WORD_CHARS, redact, squeeze_whitespace

SECRETS = ("sk-abcdefghij0123456789", "ops@example.com", "AKIAABCDEFGHIJKLMNOP")
PIECES = ["hello", " ", "\n", "  ", "\n\n\n", ".", *SECRETS, "User:", "\nUser:", "a-b", "@"]


async def as_stream(tokens: list[str]):
    for token in tokens:
        yield token


def transformed(transform, tokens: list[str]) -> list[str]:
    """The pieces a transform yields for these tokens."""
    async def go():
        return [piece async for piece in transform(as_stream(tokens))]
    return asyncio.run(go())


def llm_order(stop: StopAt) -> list:
    """The order 03 uses: redact first, so nothing downstream sees a secret."""
    return [redact_secrets, stop, tidy_whitespace, whole_words]


@st.composite
def text_and_tokens(draw):
    """A text made of tricky pieces, and the same text split at arbitrary points."""
    text = "".join(draw(st.lists(st.sampled_from(PIECES), max_size=12)))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=10))))
    edges = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in zip(edges, edges[1:]) if b > a]


# ---------------------------------------------------------------- the same text however the tokens split it
@settings(max_examples=150, deadline=None)
@given(text_and_tokens())
def test_redaction_is_the_same_however_the_secret_is_split(case):
    text, tokens = case
    out = "".join(transformed(redact_secrets, tokens))
    assert out == redact(text)
    assert not any(secret in out for secret in SECRETS)


def test_redaction_holds_a_secret_back_until_it_is_complete():
    pieces = transformed(redact_secrets, ["mail ", "ops", "-team@", "exam", "ple.com", " now"])
    assert pieces == ["mail ", "[redacted email] ", "now"]


def test_redaction_lets_text_without_spaces_through_as_it_comes():
    chinese = ["请", "联系", "ops@exa", "mple.com", "获取", "帮助。"]  # the address is glued to the words
    assert transformed(redact_secrets, chinese) == ["请", "联系", "[redacted email]获取", "帮助。"]


@settings(max_examples=150, deadline=None)
@given(text_and_tokens())
def test_stop_sequence_cut_is_the_same_however_it_is_split(case):
    text, tokens = case
    stop = StopAt("\nUser:")
    assert "".join(transformed(stop, tokens)) == text.split("\nUser:")[0]
    assert stop.hit == ("\nUser:" in text)


def test_stop_sequence_closes_the_source_at_the_cut():
    closed = []

    async def long_answer():
        try:
            for _ in range(100):
                yield "more words\nUs"
                yield "er: and on"
        finally:
            closed.append(True)

    async def go():
        return [piece async for piece in StopAt("\nUser:")(long_answer())]
    assert asyncio.run(go()) == ["more words"] and closed == [True]


@settings(max_examples=150, deadline=None)
@given(text_and_tokens())
def test_whitespace_tidy_and_word_grouping_do_not_depend_on_the_split(case):
    text, tokens = case
    assert "".join(transformed(tidy_whitespace, tokens)) == squeeze_whitespace(text).strip()
    words = transformed(whole_words, tokens)
    assert "".join(words) == text
    # each ends at whitespace, unless it is the last or an over-long run released anyway
    assert all(not word[-1:].strip() or word is words[-1] or len(word) > MAX_WORD_CHARS for word in words)


def test_whole_words_still_streams_text_without_spaces():
    chinese = "流式传输让人更早看到答案。" * 10  # 130 characters, no space anywhere
    pieces = transformed(whole_words, [chinese[i:i + 2] for i in range(0, len(chinese), 2)])
    assert "".join(pieces) == chinese
    assert len(pieces) > 3 and all(len(piece) <= MAX_WORD_CHARS + 2 for piece in pieces)


# ---------------------------------------------------------------- pipeline
def test_pipeline_applies_transforms_left_to_right():
    async def shout(tokens):
        async for token in tokens:
            yield token.upper()

    async def hide_hello(tokens):
        async for token in tokens:
            yield token.replace("hello", "*****")

    def run(transforms):
        return "".join(transformed(lambda tokens: pipeline(tokens, transforms), ["hel", "lo ", "you"]))
    assert run([hide_hello, shout]) == "HELLO YOU"  # hide_hello saw "hel" and "lo " apart, shout then upper-cased
    assert run([whole_words, hide_hello, shout]) == "***** YOU"


def test_llm_order_redacts_cuts_and_tidies_in_one_pass():
    stop = StopAt("\nUser:")
    tokens = ["\n Key", ": sk-", "abcdefghij", "0123456789   \n\n\n\nBye", ".\nUs", "er: more"]
    out = transformed(lambda t: pipeline(t, llm_order(stop)), tokens)
    assert "".join(out) == "Key: [redacted key]\n\nBye."
    assert stop.hit


# ---------------------------------------------------------------- a source that fails mid-stream
class SourceFailed(Exception):
    pass


def transformed_until_error(transform, tokens: list[str]) -> tuple[list[str], Exception]:
    """What a transform yields when its source fails after `tokens`, and the error it passes on."""
    async def source():
        for token in tokens:
            yield token
        raise SourceFailed("provider failed; the answer is partial")

    got: list[str] = []

    async def go():
        async for piece in transform(source()):
            got.append(piece)
    with pytest.raises(SourceFailed) as raised:
        asyncio.run(go())
    return got, raised.value


@pytest.mark.parametrize("transform", [redact_secrets, StopAt("\nUser:"), tidy_whitespace, whole_words],
                         ids=["redact", "stop", "tidy", "words"])
def test_each_transform_releases_what_it_holds_when_the_stream_breaks(transform):
    got, error = transformed_until_error(transform, ["Hello ", "wor", "ld and", " more\nUs"])
    assert "".join(got) == "Hello world and more\nUs"  # "\nUs" could have become the stop sequence "\nUser:"
    assert getattr(error, "__notes__", []) == []


def test_llm_order_delivers_every_word_written_before_a_mid_stream_failure():
    got, error = transformed_until_error(lambda t: pipeline(t, llm_order(StopAt())),
                                         ["Hello ", "wor", "ld and", " more"])
    assert "".join(got) == "Hello world and more"
    assert str(error) == "provider failed; the answer is partial" and getattr(error, "__notes__", []) == []


@pytest.mark.parametrize("tokens, shown", [
    (["key ", "sk-abcdefghij"], "key "),                 # half a key: withheld
    (["mail ", "ops@exam"], "mail "),                    # half an address: withheld
    (["key ", "sk-abcdefghij0123456789"], "key [redacted key]")])  # a whole key: redacted, as always
def test_redaction_withholds_a_possible_secret_cut_short_and_notes_it_on_the_error(tokens, shown):
    got, error = transformed_until_error(redact_secrets, tokens)
    assert "".join(got) == shown
    notes = getattr(error, "__notes__", [])
    if shown == tokens[0]:
        assert notes == [f"its last {len(tokens[1])} characters were withheld: they could be the start of a secret"]
    else:
        assert notes == []
