"""Streaming readers for the three accepted formats.

* JSONL with ``tokens`` and ``tags`` (one sentence per line);
* CoNLL with 2 columns (token, tag) or 3 (index, token, tag), blank line between sentences;
* character-span JSONL (``text`` + ``entities`` of ``start``/``end``/``label``), split into words
  with offsets kept.

Every reader yields :class:`Sentence` objects and fills a :class:`ReadStats`. Bad input raises
:class:`~nerkd.errors.DataError` naming the file and the 1-based line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from nerkd.data.schemes import split_tag, tags_from_spans
from nerkd.data.words import split_words
from nerkd.errors import DataError

FORMATS = ("jsonl", "conll", "spans")


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str]
    source: str = ""
    line: int = 0
    text: str | None = None
    offsets: list[tuple[int, int]] | None = None


@dataclass
class ReadStats:
    path: str = ""
    format: str = ""
    sentences: int = 0
    tokens: int = 0
    skipped_empty: int = 0
    tags: Counter = field(default_factory=Counter)

    def count(self, sent: Sentence) -> None:
        self.sentences += 1
        self.tokens += len(sent.tokens)
        self.tags.update(sent.tags)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line without newline); invalid UTF-8 is a DataError."""
    if not path.is_file():
        raise DataError(path, None, "file not found")
    with path.open("rb") as fh:
        for no, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, no, f"invalid UTF-8 (byte {e.start} of the line)") from None
            if no == 1:
                text = text.lstrip("\ufeff")
            yield no, text.rstrip("\r\n")


def _check_tag(path: Path, no: int, tag: object) -> str:
    if not isinstance(tag, str):
        raise DataError(path, no, f"tag {tag!r} is not a string")
    try:
        split_tag(tag)
    except ValueError as e:
        raise DataError(path, no, f"unknown tag: {e}") from None
    return tag


def json_object(path: Path | str, no: int, line: str) -> dict:
    """Parse one JSONL line that must hold an object; DataError naming file and line otherwise."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise DataError(path, no, f"invalid JSON ({e.args[0].split(':')[0]})") from None
    if not isinstance(obj, dict):
        raise DataError(path, no, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def read_jsonl(path: Path, stats: ReadStats) -> Iterator[Sentence]:
    for no, line in _lines(path):
        if not line.strip():
            continue
        obj = json_object(path, no, line)
        tokens, tags = obj.get("tokens"), obj.get("tags")
        if not isinstance(tokens, list) or not isinstance(tags, list):
            raise DataError(path, no, 'expected "tokens" and "tags" lists')
        if len(tokens) != len(tags):
            raise DataError(path, no, f"{len(tokens)} tokens but {len(tags)} tags")
        if not all(isinstance(t, str) and t for t in tokens):
            raise DataError(path, no, "every token must be a non-empty string")
        if not tokens:
            stats.skipped_empty += 1
            continue
        yield Sentence(tokens, [_check_tag(path, no, t) for t in tags], str(path), no)


def read_conll(path: Path, stats: ReadStats) -> Iterator[Sentence]:
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    ncols = None
    for no, line in _lines(path):
        if not line.strip():
            if tokens:
                yield Sentence(tokens, tags, str(path), start)
                tokens, tags = [], []
            continue
        if line.startswith("#") and not tokens and "\t" not in line:
            continue  # CoNLL-U style comment
        cols = line.split("\t") if "\t" in line else line.split()
        if len(cols) not in (2, 3):
            raise DataError(path, no, f"expected 2 (token, tag) or 3 (index, token, tag) columns, got {len(cols)}")
        if ncols is None:
            ncols = len(cols)
        elif len(cols) != ncols:
            raise DataError(path, no, f"{len(cols)} columns where earlier lines have {ncols}")
        token, tag = cols[-2].strip(), cols[-1].strip()
        if not token:
            raise DataError(path, no, "empty token")
        if not tokens:
            start = no
        tokens.append(token)
        tags.append(_check_tag(path, no, tag))
    if tokens:
        yield Sentence(tokens, tags, str(path), start)


def _split_at(words: list[tuple[str, int, int]], cuts: set[int]) -> list[tuple[str, int, int]]:
    """Split words at character positions in ``cuts`` that fall inside them."""
    out = []
    for word, s, e in words:
        inner = sorted(c for c in cuts if s < c < e)
        bounds = [s, *inner, e]
        for a, b in zip(bounds, bounds[1:], strict=False):
            out.append((word[a - s : b - s], a, b))
    return out


def read_spans(path: Path, stats: ReadStats) -> Iterator[Sentence]:
    for no, line in _lines(path):
        if not line.strip():
            continue
        obj = json_object(path, no, line)
        text, ents = obj.get("text"), obj.get("entities", obj.get("label", []))
        if not isinstance(text, str):
            raise DataError(path, no, 'expected a "text" string')
        if not isinstance(ents, list):
            raise DataError(path, no, 'expected an "entities" list')
        spans = []
        for ent in ents:
            if isinstance(ent, list) and len(ent) == 3:  # Doccano [start, end, label]
                ent = {"start": ent[0], "end": ent[1], "label": ent[2]}
            if not isinstance(ent, dict):
                raise DataError(path, no, f"entity {ent!r} is not an object")
            s, e, label = ent.get("start"), ent.get("end"), ent.get("label")
            if not isinstance(s, int) or not isinstance(e, int) or not isinstance(label, str) or not label:
                raise DataError(path, no, f"entity {ent!r} needs integer start/end and a label")
            if not 0 <= s < e <= len(text):
                raise DataError(path, no, f"span {s}-{e} ({label}) out of range for a text of {len(text)} characters")
            if not text[s:e].strip():
                raise DataError(path, no, f"span {s}-{e} ({label}) covers only white space")
            spans.append((s, e, label))
        spans.sort()
        for (s1, e1, l1), (s2, e2, l2) in zip(spans, spans[1:], strict=False):
            if s2 < e1:
                raise DataError(path, no, f"spans {s1}-{e1} ({l1}) and {s2}-{e2} ({l2}) overlap")
        words = _split_at(split_words(text), {c for s, e, _ in spans for c in (s, e)})
        if not words:
            stats.skipped_empty += 1
            continue
        word_spans = []
        for s, e, label in spans:
            idx = [i for i, (_, ws, we) in enumerate(words) if ws >= s and we <= e]
            word_spans.append((label, idx[0], idx[-1] + 1))
        tags = tags_from_spans(len(words), word_spans, "BIO")
        yield Sentence([w for w, _, _ in words], tags, str(path), no, text, [(s, e) for _, s, e in words])


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        for no, line in _lines(path):
            if line.strip():
                obj = json_object(path, no, line)
                return "spans" if "text" in obj else "jsonl"
        return "jsonl"
    return "conll"


_READERS = {"jsonl": read_jsonl, "conll": read_conll, "spans": read_spans}


def iter_sentences(path: str | Path, fmt: str = "auto", stats: ReadStats | None = None,
                   limit: int | None = None) -> Iterator[Sentence]:
    """Stream the sentences of ``path``; an empty file is a DataError."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    fmt = detect_format(path) if fmt == "auto" else fmt
    stats.path, stats.format = str(path), fmt
    for sent in _READERS[fmt](path, stats):
        if limit is not None and stats.sentences >= limit:
            break
        stats.count(sent)
        yield sent
    if stats.sentences == 0:
        raise DataError(path, None, "empty file: no sentence found")


def read_sentences(path: str | Path, fmt: str = "auto", limit: int | None = None) -> tuple[list[Sentence], ReadStats]:
    stats = ReadStats()
    return list(iter_sentences(path, fmt, stats, limit)), stats
