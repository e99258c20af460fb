"""Streaming readers for the three accepted formats.

* JSONL with ``tokens`` and ``tags`` (one sentence per line);
* CoNLL, one token per line and a blank line between sentences, columns separated by tabs or
  spaces: the first column is the token and the last the tag (``token tag``, CoNLL-2003's
  ``token POS chunk tag``), except 3 columns whose first one counts the tokens (``index token
  tag``); ``-DOCSTART-`` lines are skipped (and counted);
* character-span JSONL (``text`` + ``entities`` of ``start``/``end``/``label``), split into words
  with offsets kept.

Every reader yields :class:`Sentence` objects and fills a :class:`ReadStats`. Bad input raises
:class:`~nerkd.errors.DataError` naming the file and the 1-based line. Tags that break the file's
scheme (an ``I-X`` after ``O`` in BIO data) are counted, never dropped: :meth:`ReadStats.warnings`
says how they are read. ``relabel`` (``labels.drop`` / ``labels.map``) renames or drops entity
types as sentences are read, before any label space is built.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from nerkd.data.schemes import detect_scheme, invalid_tags, split_tag, tags_from_spans
from nerkd.data.words import split_words
from nerkd.errors import DataError

FORMATS = ("jsonl", "conll", "spans", "labelstudio", "doccano")   # the last two: nerkd.data.annotators
DOCSTART = "-DOCSTART-"


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str]
    source: str = ""
    line: int = 0
    text: str | None = None
    offsets: list[tuple[int, int]] | None = None
    token_lines: bool = False   # CoNLL: token i is on line ``line + i``

    def line_of(self, i: int) -> int:
        """1-based line of token ``i`` (the sentence's line for one-sentence-per-line formats)."""
        return self.line + i if self.token_lines else self.line


@dataclass
class SchemeBreaks:
    """Tags that break a scheme in one file (see :func:`~nerkd.data.schemes.invalid_tags`)."""

    count: int = 0
    first_line: int = 0

    def add(self, sent: Sentence, positions: list[int]) -> None:
        if positions and not self.count:
            self.first_line = sent.line_of(positions[0])
        self.count += len(positions)


@dataclass
class ReadStats:
    path: str = ""
    format: str = ""
    sentences: int = 0
    tokens: int = 0
    skipped_empty: int = 0
    extra_notes: list[str] = field(default_factory=list)   # from an annotation tool's reader
    docstarts: int = 0            # CoNLL ``-DOCSTART-`` lines skipped
    comments: int = 0             # CoNLL-U ``# ...`` comment lines skipped
    tags: Counter = field(default_factory=Counter)
    relabel: dict[str, str] = field(default_factory=dict)   # type -> type or "O" (labels.drop / labels.map)
    relabeled: Counter = field(default_factory=Counter)     # tags changed per source type
    bio_breaks: SchemeBreaks = field(default_factory=SchemeBreaks)
    bioes_breaks: SchemeBreaks = field(default_factory=SchemeBreaks)
    b_tags: int = 0               # B- tags, and those right after a tag of their own type (IOB1's only B-)
    b_inside: int = 0

    def count(self, sent: Sentence) -> None:
        self.sentences += 1
        self.tokens += len(sent.tokens)
        self.tags.update(sent.tags)
        tags = sent.tags
        if any(t[0] != "O" for t in tags):
            self.bio_breaks.add(sent, invalid_tags(tags, "BIO"))
            self.bioes_breaks.add(sent, invalid_tags(tags, "BIOES"))
            for i, tag in enumerate(tags):
                if tag[0] == "B":
                    self.b_tags += 1
                    if i and tags[i - 1][0] in "BI" and tags[i - 1][2:] == tag[2:]:
                        self.b_inside += 1

    @property
    def scheme(self) -> str:
        return detect_scheme(self.tags)

    @property
    def iob1(self) -> bool:
        """BIO tags written as IOB1 (original CoNLL-2003): ``I-`` opens entities, ``B-`` only splits two."""
        return self.scheme == "BIO" and self.bio_breaks.count > 0 and self.b_tags == self.b_inside

    def notes(self) -> list[str]:
        """What was skipped, changed or reinterpreted while reading, for summaries and logs."""
        out = []
        if self.skipped_empty:
            out.append(f"{self.skipped_empty} empty sentences skipped")
        if self.docstarts:
            out.append(f"{self.docstarts} -DOCSTART- lines skipped")
        if self.comments:
            out.append(f"{self.comments} comment lines skipped")
        if self.relabel:
            changes = ", ".join(f"{self.relabeled.get(t, 0)} {t} -> {to}" for t, to in sorted(self.relabel.items()))
            out.append(f"tags relabelled by labels.drop/labels.map: {changes}")
        if self.iob1:
            out.append(f"IOB1 tags ({self.bio_breaks.count} I- open an entity, B- only splits two touching "
                       "entities): read as BIO")
        out.extend(self.extra_notes)
        return out

    def warnings(self) -> list[str]:
        """Tags that break the file's own scheme, and how they are read (never dropped)."""
        scheme = self.scheme
        if scheme == "BIO" and self.bio_breaks.count and not self.iob1:
            b = self.bio_breaks
            what = "1 tag I-X follows" if b.count == 1 else f"{b.count} tags I-X follow"
            return [f"{self.path}: {what} O or another type (invalid BIO, read as B-X); "
                    f"first at line {b.first_line}"]
        if scheme == "BIOES" and self.bioes_breaks.count:
            b = self.bioes_breaks
            what = "1 tag breaks" if b.count == 1 else f"{b.count} tags break"
            return [f"{self.path}: {what} BIOES (an I-X or E-X without B-X before it, or a B-X or I-X "
                    f"without I-X or E-X after it; read leniently: one opens an entity, one without E-X ends at the "
                    f"next O, B- or S-); first at line {b.first_line}"]
        return []


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


def _is_tag(text: str) -> bool:
    try:
        split_tag(text)
    except ValueError:
        return False
    return True


def _is_index(first: list[str]) -> bool:
    """The first column of a 3-column sentence counts its tokens (``0 1 2 ...`` or ``1 2 3 ...``)."""
    if not all(c.isdigit() for c in first):
        return False
    start = int(first[0])
    return [int(c) for c in first] == list(range(start, start + len(first)))


def read_conll(path: Path, stats: ReadStats) -> Iterator[Sentence]:
    """Token in the first column, tag in the last; ``index token tag`` when 3 columns count the tokens.

    Columns are split at tabs when the line has one, else at runs of spaces; every line of a file
    has the same number of columns. The layout of a 3-column file is decided on its first sentence.
    """
    ncols: int | None = None
    ncols_line = 0
    token_col: int | None = None
    layout_line = 0
    rows: list[tuple[int, list[str]]] = []

    def sentence() -> Sentence:
        nonlocal token_col, layout_line
        if token_col is None:
            token_col = 1 if ncols == 3 and _is_index([c[0].strip() for _, c in rows]) else 0
            layout_line = rows[0][0]
        tokens, tags = [], []
        for no, cols in rows:
            if token_col == 1 and not cols[0].strip().isdigit():
                raise DataError(path, no, f"first column {cols[0].strip()!r} is not a token index, as in the "
                                          f"index token tag lines from line {layout_line}")
            token = cols[token_col].strip()
            if not token:
                raise DataError(path, no, "empty token")
            tokens.append(token)
            tags.append(_check_tag(path, no, cols[-1].strip()))
        return Sentence(tokens, tags, str(path), rows[0][0], token_lines=True)

    for no, line in _lines(path):
        if not line.strip():
            if rows:
                yield sentence()
                rows = []
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        if (line.startswith("#") and not rows and "\t" not in line
                and not (len(cols) >= 2 and len(cols) == (ncols or len(cols)) and _is_tag(cols[-1]))):
            stats.comments += 1   # CoNLL-U style comment (a "# O" line stays a token)
            continue
        if DOCSTART in (c.strip() for c in cols[:2]):
            stats.docstarts += 1  # a document boundary, not a sentence
            if rows:
                yield sentence()
                rows = []
            continue
        if len(cols) < 2:
            raise DataError(path, no, "expected a token and a tag (columns separated by a tab or spaces), "
                                      "got 1 column")
        if ncols is None:
            ncols, ncols_line = len(cols), no
        elif len(cols) != ncols:
            raise DataError(path, no, f"{len(cols)} columns where line {ncols_line} has {ncols}")
        rows.append((no, cols))
    if rows:
        yield sentence()


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
        from nerkd.data.annotators import sniff_format

        if tool := sniff_format(path):   # Label Studio's JSON array, Doccano's JSONL
            return tool
        for no, line in _lines(path):
            if line.strip():
                obj = json_object(path, no, line)
                return "spans" if "text" in obj else "jsonl"
        return "jsonl"
    return "conll"


def _tool_reader(name: str):
    def read(path: Path, stats: ReadStats) -> Iterator[Sentence]:
        from nerkd.data import annotators

        return getattr(annotators, f"read_{name}")(path, stats)
    return read


_READERS = {"jsonl": read_jsonl, "conll": read_conll, "spans": read_spans,
            "labelstudio": _tool_reader("labelstudio"), "doccano": _tool_reader("doccano")}


def _relabel(sent: Sentence, relabel: Mapping[str, str], stats: ReadStats) -> None:
    """Rename or drop (``-> "O"``) the entity types of ``relabel`` in place, counting changed tags."""
    new = []
    for tag in sent.tags:
        to = relabel.get(tag[2:]) if tag != "O" else None
        if to is not None:
            stats.relabeled[tag[2:]] += 1
            tag = "O" if to == "O" else f"{tag[0]}-{to}"
        new.append(tag)
    sent.tags = new


def iter_sentences(path: str | Path, fmt: str = "auto", stats: ReadStats | None = None,
                   limit: int | None = None, relabel: Mapping[str, str] | None = None) -> Iterator[Sentence]:
    """Stream the sentences of ``path``; an empty file is a DataError.

    ``relabel`` maps entity types to other types or to ``"O"`` (``labels.map`` / ``labels.drop``).
    """
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    fmt = detect_format(path) if fmt == "auto" else fmt
    stats.path, stats.format = str(path), fmt
    stats.relabel = dict(relabel or {})
    for sent in _READERS[fmt](path, stats):
        if limit is not None and stats.sentences >= limit:
            break
        if stats.relabel:
            _relabel(sent, stats.relabel, stats)
        stats.count(sent)
        yield sent
    if stats.sentences == 0:
        raise DataError(path, None, "empty file: no sentence found")


def read_sentences(path: str | Path, fmt: str = "auto", limit: int | None = None,
                   relabel: Mapping[str, str] | None = None) -> tuple[list[Sentence], ReadStats]:
    stats = ReadStats()
    return list(iter_sentences(path, fmt, stats, limit, relabel)), stats
