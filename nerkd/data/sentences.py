"""What every reader of :mod:`nerkd.data.readers` and :mod:`nerkd.data.annotators` makes and shares.

:class:`Sentence` (words, tags and where they come from), :class:`ReadStats` (what a reader read,
skipped or reinterpreted) and the line helpers: :func:`numbered_lines` (a file's decoded lines with
their numbers), :func:`json_object` (one JSONL line that must hold an object) and :func:`split_at`
(words split at span boundaries). A module of its own, so that the format readers and the
annotation-tool readers both import it and not each other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from nerkd.data.schemes import detect_scheme, invalid_tags
from nerkd.errors import DataError


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str]
    source: str = ""
    line: int = 0
    text: str | None = None
    offsets: list[tuple[int, int]] | None = None
    token_lines: bool = False   # CoNLL: token i is on line ``line + i``
    tag_lines: list[int] | None = None   # BRAT: token i's tag comes from line ``tag_lines[i]`` of ``source``

    def line_of(self, i: int) -> int:
        """1-based line of token ``i`` (the sentence's line for one-sentence-per-line formats)."""
        if self.tag_lines is not None:
            return self.tag_lines[i]
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


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
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


def json_object(path: Path | str, no: int, line: str) -> dict:
    """Parse one JSONL line that must hold an object; DataError naming file and line otherwise."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise DataError(path, no, f"invalid JSON ({e.args[0].split(':')[0]})") from None
    if not isinstance(obj, dict):
        raise DataError(path, no, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def split_at(words: list[tuple[str, int, int]], cuts: set[int]) -> list[tuple[str, int, int]]:
    """Split words at character positions in ``cuts`` that fall inside them."""
    out = []
    for word, s, e in words:
        inner = sorted(c for c in cuts if s < c < e)
        bounds = [s, *inner, e]
        for a, b in zip(bounds, bounds[1:], strict=False):
            out.append((word[a - s : b - s], a, b))
    return out
