"""Streaming input and output for ``nerkd infer``.

Input is read lazily, line by line, from a binary stream: plain text (one document per line)
or JSONL objects with ``text`` and an optional ``id``. The format is detected from the first
non-empty line (``{`` opens JSONL) unless forced. Every input line gives one document, empty
lines included, so output line *n* always answers input line *n*. Invalid UTF-8 or a malformed
JSONL line raises :class:`~nerkd.errors.DataError` naming the source and the 1-based line; the
documents read before it are still yielded first (see :func:`chunked`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson

from nerkd.data.readers import json_object
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


def chunked(docs: Iterator[Doc], size: int, max_chars: int = 2_000_000) -> Iterator[list[Doc]]:
    """Chunks of at most ``size`` documents (or about ``max_chars`` characters).

    A :class:`DataError` raised while reading is held until the documents read before it have
    been yielded (and so processed and written), then re-raised.
    """
    buf: list[Doc] = []
    chars = 0
    error: DataError | None = None
    try:
        for doc in docs:
            buf.append(doc)
            chars += len(doc.text)
            if len(buf) >= size or chars >= max_chars:
                yield buf
                buf, chars = [], 0
    except DataError as e:
        error = e
    if buf:
        yield buf
    if error is not None:
        raise error


_NO_SPACE_BEFORE = {",", ".", ")", "]", "}", "…", "..."}
_NO_SPACE_AFTER = {"(", "[", "{"}


def detokenize(tokens: Iterable[str]) -> str:
    """Rebuild plausible text from word tokens: elisions glued back (``["l'", "EHPAD"]`` ->
    ``"l'EHPAD"``), no space before ``, . ) ]`` nor after ``( [``; French spacing before
    ``: ; ! ?`` kept."""
    out: list[str] = []
    prev = None
    for tok in tokens:
        if prev is not None:
            glued = (len(prev) > 1 and prev.endswith(("'", "\u2019"))) or prev in _NO_SPACE_AFTER
            if not glued and tok not in _NO_SPACE_BEFORE:
                out.append(" ")
        out.append(tok)
        prev = tok
    return "".join(out)


def result_line(doc: Doc, entities: list[dict]) -> bytes:
    """One output line: ``{"id"?, "text", "entities"}``."""
    obj: dict[str, Any] = {}
    if doc.id is not NO_ID:
        obj["id"] = doc.id
    obj["text"] = doc.text
    obj["entities"] = entities
    return orjson.dumps(obj) + b"\n"
