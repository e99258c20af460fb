"""Raw-text documents, read lazily: the readers of ``nerkd infer`` and of the unlabelled transfer set.

Input is read line by line from a binary stream: plain text (one document per line) or JSONL
objects with ``text`` and an optional ``id``. The format is detected from the first non-empty line
(``{`` opens JSONL) unless forced. Every input line gives one document, empty lines included, so
output line *n* always answers input line *n*. Invalid UTF-8 or a malformed JSONL line raises
:class:`~nerkd.errors.DataError` naming the source and the 1-based line; the documents read before
it are yielded first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from nerkd.data.sentences import json_object
from nerkd.errors import DataError

FORMATS = ("auto", "text", "jsonl")
NO_ID = object()


@dataclass
class Doc:
    line: int              # 1-based input line
    text: str
    id: Any = NO_ID        # JSONL "id", passed through as is (absent: not written)
    size: int = 0          # bytes of the raw input line (for progress)


def _decode(raw: bytes, name: str, no: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(name, no, f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if no == 1 and text.startswith("\ufeff"):
        text = text[1:]
    return text.rstrip("\r\n")


def _jsonl_doc(text: str, name: str, no: int, size: int) -> Doc:
    if not text.strip():
        return Doc(no, "", size=size)
    obj = json_object(name, no, text)
    if not isinstance(obj.get("text"), str):
        raise DataError(name, no, 'missing "text" string')
    return Doc(no, obj["text"], obj.get("id", NO_ID), size)


def detect_format(first_line: str) -> str:
    return "jsonl" if first_line.lstrip().startswith("{") else "text"


def read_docs(stream: BinaryIO | Iterable[bytes], name: str, fmt: str = "auto") -> Iterator[Doc]:
    """Yield one :class:`Doc` per input line, lazily (see module doc)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown input format {fmt!r}")
    pending: list[Doc] = []   # leading empty lines while the format is still unknown
    for no, raw in enumerate(stream, start=1):
        text = _decode(raw, name, no)
        if fmt == "auto":
            if not text.strip():
                pending.append(Doc(no, text, size=len(raw)))
                continue
            fmt = detect_format(text)
            for doc in pending:
                yield Doc(doc.line, "", size=doc.size) if fmt == "jsonl" else doc
            pending = []
        yield _jsonl_doc(text, name, no, len(raw)) if fmt == "jsonl" else Doc(no, text, size=len(raw))
    yield from pending
