"""Where text may be cut without splitting what a reader sees as one character (02's by_size).

Python strings hold code points, so a cut never splits a UTF-8 byte sequence; these rules keep
the common multi-code-point characters whole too (not every rule of Unicode's grapheme clusters).
"""
from __future__ import annotations

import unicodedata

# What 02 streams unless --text names a file: prose, paragraphs, accents, an emoji sequence, Chinese.
SAMPLE_TEXT = (
    "Streaming lets a reader start before the writer has finished. How you cut the text decides "
    "what the reader experiences: when the first words appear, how long the silences between "
    "updates last, and whether a word is ever shown half-written.\n\n"
    "Big chunks are cheap to send but slow to start. A paragraph-sized chunk cannot leave until "
    "the whole paragraph exists! Small chunks start at once; each one costs a little framing, "
    "and a user interface redraws more often.\n\n"
    "Text is not only ASCII: a naïve café menu, an emoji like 👩‍💻, a combining accent in "
    "“cafe\u0301”, or a line of Chinese such as 流式传输让人更早看到答案。 must all arrive "
    "byte for byte.\n\n"
    "Measure on both sides of the wire. The server knows when it yielded a chunk; the client "
    "knows when it arrived. The difference is what the transport adds."
)


def is_flag_letter(char: str) -> bool:
    """A regional indicator: two of them make one flag (🇫 + 🇷 = 🇫🇷)."""
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def can_cut(text: str, i: int) -> bool:
    """False if text[i] belongs to the character before it: a combining mark, an emoji joiner,
    modifier or tag (🏴 + tags = the flag of England), the second letter of a flag, the LF of a CRLF."""
    before, after = text[i - 1], text[i]
    if (before, after) == ("\r", "\n") or before == "\u200d":
        return False
    if is_flag_letter(before) and is_flag_letter(after):
        letters_before = 1
        while letters_before < i and is_flag_letter(text[i - 1 - letters_before]):
            letters_before += 1
        return letters_before % 2 == 0  # 🇫🇷|🇩🇪: cut between pairs, never inside one
    return not (unicodedata.category(after).startswith("M") or after == "\u200d"
                or "\ufe00" <= after <= "\ufe0f" or "\U0001f3fb" <= after <= "\U0001f3ff"
                or "\U000e0020" <= after <= "\U000e007f")


def ends(pieces: list[str]) -> list[int]:
    """The position in the joined text where each piece ends."""
    positions, position = [], 0
    for piece in pieces:
        position += len(piece)
        positions.append(position)
    return positions


def mid_word(text: str, position: int) -> bool:
    """True if a cut at `position` falls inside a word of `text`."""
    return 0 < position < len(text) and not text[position - 1].isspace() and not text[position].isspace()
