"""French-aware word splitting with exact character offsets.

Elisions stay attached to their apostrophe (``l'EHPAD`` -> ``l'`` + ``EHPAD``), hyphenated
compounds stay whole (``Saint-Étienne``), numbers with separators stay whole (``12,5``), and any
other non-space character is a token of its own. Offsets always satisfy
``text[start:end] == word``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_APOS = "'\u2019"
_ELISION = rf"(?:[lLdDjJmMnNsStTcC]|[qQ]u|[jJ]usqu|[lL]orsqu|[pP]uisqu|[qQ]uoiqu)[{_APOS}](?=\w)"
_WORD = r"\w+(?:[-\u2010\u2011]\w+)*"
_NUMBER = r"\d+(?:[.,]\d+)+"
_FIXED = rf"[aA]ujourd[{_APOS}]hui"
_TOKEN_RE = re.compile(rf"{_FIXED}|{_ELISION}|{_NUMBER}|{_WORD}|[^\w\s]", re.UNICODE)


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Return ``(word, start, end)`` for every word of ``text``, in order."""
    return [(m.group(), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


def iter_words(text: str) -> Iterator[tuple[str, int, int]]:
    for m in _TOKEN_RE.finditer(text):
        yield m.group(), m.start(), m.end()
