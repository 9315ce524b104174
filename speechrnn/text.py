"""Text normalization and the character token set shared by training and runtime.

The model's alphabet is blank, space, a-z and apostrophe; every transcript and
command is normalized to it the same way (lowercase, digits spelled out).
"""

from __future__ import annotations

import re

BLANK = "<blank>"
TOKENS: tuple[str, ...] = (BLANK, " ", *"abcdefghijklmnopqrstuvwxyz", "'")
BLANK_INDEX = 0

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_to_words(n: int) -> str:
    """Spell a non-negative integer below one billion in English words."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, rest = divmod(n, 10)
        return _TENS[tens] + ("" if rest == 0 else " " + _ONES[rest])
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            head, rest = divmod(n, size)
            words = number_to_words(head) + " " + name
            return words if rest == 0 else words + " " + number_to_words(rest)
    raise ValueError(f"number too large to spell: {n}")


def normalize_text(text: str) -> str:
    """Lowercase, spell out digits, keep only a-z, apostrophe and single spaces."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"\d+", lambda m: " " + number_to_words(int(m.group())) + " ", text)
    text = re.sub(r"[-_/]", " ", text)
    text = re.sub(r"[^a-z' ]", "", text)
    text = re.sub(r"\s+'|'\s+|^'|'$", " ", text)  # stray quotes, not contractions
    return " ".join(text.split())


def encode(text: str, tokens: tuple[str, ...] | list[str] = TOKENS) -> list[int]:
    """Token indices of already normalized text."""
    index = {t: i for i, t in enumerate(tokens)}
    return [index[c] for c in text]


def decode(ids, tokens: tuple[str, ...] | list[str] = TOKENS) -> str:
    """Text of token indices, blanks skipped (no CTC collapsing)."""
    return "".join(tokens[i] for i in ids if i != BLANK_INDEX)
