"""Streaming input and output for ``nerkd infer``.

Input is read lazily, line by line, by :func:`nerkd.data.docs.read_docs` (re-exported here with
:class:`~nerkd.data.docs.Doc`, ``detect_format``, ``FORMATS`` and ``NO_ID``; the data layer owns them
so that the unlabelled transfer set of ``distill`` reads texts exactly as ``infer`` does): plain text
(one document per line) or JSONL objects with ``text`` and an optional ``id``. Every input line
gives one document, empty lines included, so output line *n* always answers input line *n*. Invalid
UTF-8 or a malformed JSONL line raises :class:`~nerkd.errors.DataError` naming the source and the
1-based line; the documents read before it are still yielded first (see :func:`chunked`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from nerkd.data.docs import FORMATS, NO_ID, Doc, detect_format, read_docs
from nerkd.errors import DataError

__all__ = ["FORMATS", "NO_ID", "Doc", "chunked", "detect_format", "detokenize", "file_texts", "gold_texts", "read_docs",
           "result_line"]


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


def file_texts(path: str | Path, limit: int) -> list[str]:
    """Up to ``limit`` non-empty texts of a text or JSONL file (one per line, read as ``nerkd infer`` reads)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "file not found")
    texts: list[str] = []
    with path.open("rb") as fh:
        for doc in read_docs(fh, str(path)):
            if doc.text.strip():
                texts.append(doc.text)
                if len(texts) >= limit:
                    break
    return texts


def gold_texts(path: str | Path, fmt: str, limit: int) -> list[str]:
    """Up to ``limit`` sentences of a gold data file as text (their own text, else the tokens detokenised)."""
    from nerkd.data.readers import read_sentences

    sentences, _ = read_sentences(path, fmt, limit)
    return [s.text if s.text else detokenize(s.tokens) for s in sentences if s.tokens]
