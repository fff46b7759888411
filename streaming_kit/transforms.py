"""Transforms for a stream of LLM text, on its way to an A2A stream.

Each transform takes an async iterator of text pieces and returns another, so they chain:

    text = pipeline(tokens, [redact_secrets, StopAt("\\nUser:"), tidy_whitespace, whole_words])

Why streaming needs its own versions: a model's tokens split text anywhere ("sk-ab" + "cd12..."),
so a check made on each piece alone misses whatever spans two pieces. Each transform holds back
only the tail that could still become what it looks for. When the source fails mid-stream, each
releases what it holds before passing the error on (the reader keeps every word the model wrote),
except a possible secret's start, which is withheld and noted on the error (`exc.add_note`).
Each closes its source when it stops early, so the provider stops generating.
"""
from __future__ import annotations

import re
from contextlib import aclosing
from typing import AsyncIterator, Callable, Iterable

Transform = Callable[[AsyncIterator[str]], AsyncIterator[str]]

SECRETS = (  # no word boundaries: a key glued to a word must not slip through
    (re.compile(r"sk-[A-Za-z0-9_-]{16,}"), "[redacted key]"), (re.compile(r"AKIA[0-9A-Z]{16}"), "[redacted key]"),
    (re.compile(r"[A-Za-z0-9_.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), "[redacted email]"))
LAST_NON_SECRET_CHAR = re.compile(r"[^A-Za-z0-9_.+@-][A-Za-z0-9_.+@-]*\Z")  # secrets use these characters only
SECRET_START = re.compile(r"sk-|AKIA|@")  # an unfinished run holding one of these may be half a secret
MAX_HELD_CHARS = 400  # a longer run without a break is released anyway: no secret is that long
MAX_WORD_CHARS = 24  # whole_words releases text without spaces (Chinese, a URL) at this length


def redact(text: str) -> str:
    """Every secret SECRETS knows (API keys, e-mail addresses) in text, replaced."""
    for pattern, replacement in SECRETS:
        text = pattern.sub(replacement, text)
    return text


async def redact_secrets(tokens: AsyncIterator[str]) -> AsyncIterator[str]:
    """redact() on a stream. Why: a model may repeat a key or an address from its context, and
    tokens split it ("sk-ab", "cd12..."), so redacting each token alone lets every piece through.

    Text up to the last character no secret contains is final; the run after it waits. On a
    failure, a held run that may be half a secret is withheld (half a key is still a leak) and a
    note on the error says so; other held text is released."""
    held = ""
    async with aclosing(tokens):
        try:
            async for token in tokens:
                held += token
                tail = LAST_NON_SECRET_CHAR.search(held)
                cut = len(held) if not tail and len(held) > MAX_HELD_CHARS else (tail.start() + 1 if tail else 0)
                if cut:
                    yield redact(held[:cut])
                    held = held[cut:]
        except Exception as exc:
            unfinished, held = redact(held), ""
            if not SECRET_START.search(unfinished):
                yield unfinished
            else:
                exc.add_note(f"its last {len(unfinished)} characters were withheld: they could be the start "
                             "of a secret")
            raise
    if held:
        yield redact(held)


class StopAt:
    """Cut the answer at the first stop sequence and stop reading the provider; `hit` says whether
    one was found. Why: a bridge needs one cut whatever the provider (each names and limits its own
    stop parameter differently), a sequence can arrive split across tokens, and closing the
    provider's stream at the cut stops paying for tokens nobody will see."""

    def __init__(self, *sequences: str):
        self.sequences, self.hit = [s for s in sequences if s], False

    async def __call__(self, tokens: AsyncIterator[str]) -> AsyncIterator[str]:
        held = ""
        async with aclosing(tokens):
            try:
                async for token in tokens:
                    held += token
                    if found := [i for i in (held.find(s) for s in self.sequences) if i >= 0]:
                        self.hit = True
                        if held[:min(found)]:
                            yield held[:min(found)]
                        return  # aclosing closes the provider's stream
                    keep = self.could_still_stop(held)
                    if len(held) > keep:
                        yield held[:len(held) - keep]
                        held = held[len(held) - keep:]
            except Exception:
                if held:  # the stream broke: what we held never became a stop sequence
                    yield held
                raise
        if held:
            yield held

    def could_still_stop(self, text: str) -> int:
        """The length of text's longest tail that could still grow into a stop sequence."""
        return max((n for s in self.sequences for n in range(1, len(s)) if text.endswith(s[:n])), default=0)


def squeeze_whitespace(text: str) -> str:
    """No trailing spaces on lines, at most one blank line in a row, "\\n" line ends."""
    return re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]+\n", "\n", re.sub(r"\r\n?", "\n", text)))


async def tidy_whitespace(tokens: AsyncIterator[str]) -> AsyncIterator[str]:
    """squeeze_whitespace() on a stream, without the answer's leading and trailing whitespace.
    Why: models pad answers with blank lines and trailing spaces, and a run of them arrives in
    pieces ("\\n", "  \\n\\n"), so squeezing each piece alone leaves them. Only whitespace is ever
    held, so a broken stream loses nothing but that."""
    held, started = "", False
    async with aclosing(tokens):
        async for token in tokens:
            held += token
            if body_end := len(held.rstrip()):  # trailing whitespace waits: it cannot be squeezed yet
                text = squeeze_whitespace(held[:body_end])
                yield text if started else text.lstrip()
                started, held = True, held[body_end:]


async def whole_words(tokens: AsyncIterator[str]) -> AsyncIterator[str]:
    """Coalesce word pieces into whole words. Why: tokens are word pieces ("Hel", "lo"), and each
    becomes an A2A chunk (one SSE event, one render) of its own: whole words are fewer and read
    well. Text without spaces (Chinese, a long URL) is released every MAX_WORD_CHARS characters,
    so it still streams; a half word held when the stream breaks is released."""
    held = ""
    async with aclosing(tokens):
        try:
            async for token in tokens:
                held += token
                cut = len(held) - len(re.split(r"\s", held)[-1])
                cut = len(held) if cut == 0 and len(held) > MAX_WORD_CHARS else cut
                if cut:
                    yield held[:cut]
                    held = held[cut:]
        except Exception:
            if held:  # the half word is still text the model wrote
                yield held
            raise
    if held:
        yield held


def pipeline(tokens: AsyncIterator[str], transforms: Iterable[Transform]) -> AsyncIterator[str]:
    """Apply transforms left to right: the first one sees the provider's tokens."""
    for transform in transforms:
        tokens = transform(tokens)
    return tokens
