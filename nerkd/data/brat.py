"""BRAT standoff (``.txt`` + ``.ann``) as training and evaluation data.

The format of the brat annotation tool (https://brat.nlplab.org/standoff.html) and of most
French clinical annotation projects (EDS-NLP reads and writes it): each document is a ``.txt``
file and, beside it, a ``.ann`` file of the same name with one annotation per line. Only text-bound
annotations are entities::

    T1<TAB>PER 31 41<TAB>Loïc Robin
    T2<TAB>ORG 75 81;82 90<TAB>CHU de Poitiers

Offsets count Unicode code points of the ``.txt`` (``\\r`` included, no newline translation),
``end`` exclusive: the same conventions as character-span JSONL. The text after the second tab
must equal the ``.txt`` slice (the fragments joined by one space), or the reader stops naming
the ``.ann`` file and line, never the text.

* A path is a folder (every ``*.ann`` below it, recursively, hidden folders left out, in name
  order), a ``.ann`` file, or a ``.txt`` file with its ``.ann`` beside it. A ``.ann`` without its
  ``.txt`` is an error; in a folder, a ``.txt`` without a ``.ann`` is not annotated: skipped and
  counted.
* Discontinuous entities (``T1 PER 0 5;10 15``): fragments separated only by white space (brat
  cuts an entity at each line break) are read as one entity; otherwise each fragment is an
  entity of its own, of the same type (counted), since word tags cannot hold a gap.
* Attributes, relations, events, normalisations, equivalences and notes (``A``/``M``, ``R``,
  ``E``, ``N``, ``*``, ``#`` lines) are ignored and counted. The same entity annotated twice (same
  fragments, same type) is read once (counted); other overlapping or nested entities are an error,
  as in character-span JSONL, since flat word tags cannot hold them.
* Each line of a ``.txt`` is a sentence (blank lines skipped), except that lines an entity
  crosses are read as one. Words and BIO tags are made as for character-span JSONL.

Entity types go through ``labels.map`` / ``labels.drop`` and the label-set check as every reader's
do; a tag of an unknown type names the ``.ann`` line of its entity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nerkd.data.schemes import tags_from_spans
from nerkd.data.sentences import ReadStats, Sentence, split_at
from nerkd.data.words import split_words
from nerkd.errors import DataError

FORMAT = "brat"

IGNORED = {"A": "attributes", "M": "attributes", "R": "relations", "E": "events", "N": "normalisations",
           "*": "equivalences", "#": "notes"}
T_LINE = "T1<TAB>TYPE START END<TAB>TEXT"


@dataclass
class BratStats:
    documents: int = 0
    no_ann: int = 0            # .txt files of a folder without a .ann: not annotated, skipped
    empty_docs: int = 0        # documents whose .txt holds no word
    ignored: Counter = field(default_factory=Counter)   # kind -> lines (attributes, relations, ...)
    split: int = 0             # discontinuous entities read as one entity per fragment
    fragments: int = 0         # ... and the entities they gave
    rejoined: int = 0          # discontinuous entities whose fragments only a line break or spaces separate
    joined_lines: int = 0      # line breaks inside an entity: the lines read as one sentence
    duplicates: int = 0        # the same entity annotated twice: read once

    def notes(self) -> list[str]:
        out = [_n(self.documents, "BRAT document")]
        if self.no_ann:
            out.append(f"{_n(self.no_ann, '.txt file')} without a .ann skipped (not annotated)")
        if self.empty_docs:
            out.append(_n(self.empty_docs, "empty document"))
        if self.ignored:
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.ignored.items()))
            out.append(f"annotation lines that are not entities ignored: {kinds}")
        if self.split:
            out.append(f"{_n(self.split, 'discontinuous entity')} read as {self.fragments} entities, one per "
                       "fragment")
        if self.rejoined:
            out.append(f"{_n(self.rejoined, 'discontinuous entity')} split only by white space read as one")
        if self.joined_lines:
            out.append(f"{_n(self.joined_lines, 'line break')} inside an entity: those lines read as one sentence")
        if self.duplicates:
            out.append(f"{_n(self.duplicates, 'entity')} annotated twice read once")
        return out


def _n(count: int, what: str) -> str:
    plural = what[:-1] + "ies" if what.endswith("y") else what + "s"
    return f"{count} {what if count == 1 else plural}"


@dataclass(frozen=True)
class Entity:
    start: int
    end: int
    label: str
    line: int          # 1-based line of the .ann
    ident: str


# -- files -------------------------------------------------------------------------------------
def is_brat(path: Path) -> bool:
    """A folder, a ``.ann`` file, or a ``.txt`` file with a ``.ann`` of the same name beside it."""
    suffix = path.suffix.lower()
    return path.is_dir() or suffix == ".ann" or (suffix == ".txt" and path.with_suffix(".ann").is_file())


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def pairs(path: Path, stats: BratStats) -> list[tuple[Path, Path]]:
    """(.ann, .txt) pairs of ``path`` (see module doc), in name order."""
    if path.is_dir():
        anns = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".ann" and p.is_file()
                      and not _hidden(p, path))
        if not anns:
            raise DataError(path, None, "no .ann file in this folder (BRAT data: .txt and .ann pairs)")
        have = {p.with_suffix("") for p in anns}
        stats.no_ann = sum(1 for p in path.rglob("*.txt") if p.with_suffix("") not in have and not _hidden(p, path))
    elif path.suffix.lower() == ".txt":
        anns = [path.with_suffix(".ann")]
    elif path.is_file():
        anns = [path]
    else:
        raise DataError(path, None, "file not found")
    out = []
    for ann in anns:
        txt = ann.with_suffix(".txt")
        if not txt.is_file():
            raise DataError(ann, None, f"no {txt.name} beside it (a BRAT .ann needs its .txt)")
        out.append((ann, txt))
    return out


def files(path: Path) -> list[Path]:
    """Every file the reader reads for ``path`` (each pair's ``.ann`` then ``.txt``), for content hashes."""
    return [f for pair in pairs(path, BratStats()) for f in pair]


def read_text(txt: Path) -> str:
    """The document, decoded as brat reads it (UTF-8, no newline translation)."""
    raw = txt.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = raw.rfind(b"\n", 0, e.start) + 1
        raise DataError(txt, raw[:line_start].count(b"\n") + 1,
                        f"invalid UTF-8 (byte {e.start - line_start} of the line)") from None


def ann_lines(ann: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without newline) of a ``.ann``; invalid UTF-8 is a DataError."""
    with ann.open("rb") as fh:
        for no, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(ann, no, f"invalid UTF-8 (byte {e.start} of the line)") from None
            yield no, (line.lstrip("\ufeff") if no == 1 else line).rstrip("\r\n")


# -- annotations -------------------------------------------------------------------------------
def _fragments(ann: Path, no: int, label: str, offsets: str, size: int) -> list[tuple[int, int]]:
    frags = []
    for part in offsets.split(";"):
        bounds = part.split()
        if len(bounds) != 2 or not all(b.isdigit() for b in bounds):
            raise DataError(ann, no, f"offsets {offsets!r} of a {label} entity are not START END[;START END...]")
        s, e = int(bounds[0]), int(bounds[1])
        if not 0 <= s < e <= size:
            raise DataError(ann, no, f"span {s}-{e} ({label}) out of range for a .txt of {size} characters")
        frags.append((s, e))
    for (_, e1), (s2, _) in zip(frags, frags[1:], strict=False):
        if s2 < e1:
            raise DataError(ann, no, f"fragments of the {label} entity ({offsets}) are not in order or overlap")
    return frags


def _entity(ann: Path, no: int, line: str, text: str, stats: BratStats) -> list[Entity]:
    """The entities of one ``T`` line: one, or one per fragment of a discontinuous entity."""
    cols = line.split("\t", 2)
    head = cols[1].split(" ", 1) if len(cols) == 3 else []
    if len(head) != 2 or not head[0]:
        raise DataError(ann, no, f"not a BRAT entity line (expected {T_LINE})")
    label, offsets = head
    frags = _fragments(ann, no, label, offsets, len(text))
    if " ".join(text[s:e] for s, e in frags) != cols[2]:
        raise DataError(ann, no, f"entity {cols[0]} ({label} {offsets}): its text differs from the .txt at those "
                                 "offsets (another .txt, or offsets not counted in characters)")
    merged = [frags[0]]
    for s, e in frags[1:]:
        if text[merged[-1][1]:s].strip():
            merged.append((s, e))
        else:
            merged[-1] = (merged[-1][0], e)
    if len(frags) > 1:
        if len(merged) > 1:
            stats.split += 1
            stats.fragments += len(merged)
        else:
            stats.rejoined += 1
    for s, e in merged:
        if not text[s:e].strip():
            raise DataError(ann, no, f"span {s}-{e} ({label}) covers only white space")
    return [Entity(s, e, label, no, cols[0]) for s, e in merged]


def read_entities(ann: Path, text: str, stats: BratStats) -> list[Entity]:
    """Every entity of a ``.ann``, in text order, checked against ``text``; other lines counted."""
    entities: list[Entity] = []
    ids: dict[str, int] = {}
    for no, line in ann_lines(ann):
        if not line.strip():
            continue
        kind = line[0]
        if kind in IGNORED:
            stats.ignored[IGNORED[kind]] += 1
            continue
        if kind != "T":
            raise DataError(ann, no, f"not a BRAT annotation line (expected {T_LINE}, or a line starting with "
                                     f"{', '.join(IGNORED)})")
        ident = line.split("\t", 1)[0]
        if ident in ids:
            raise DataError(ann, no, f"{ident} is defined again (first on line {ids[ident]})")
        ids[ident] = no
        entities.extend(_entity(ann, no, line, text, stats))
    return _flat(ann, entities, stats)


def _flat(ann: Path, entities: list[Entity], stats: BratStats) -> list[Entity]:
    """Entities sorted, the same one annotated twice kept once; overlaps are an error."""
    out: list[Entity] = []
    for ent in sorted(entities, key=lambda x: (x.start, x.end, x.line)):
        prev = out[-1] if out else None
        if prev is not None and (prev.start, prev.end, prev.label) == (ent.start, ent.end, ent.label):
            stats.duplicates += 1
            continue
        if prev is not None and ent.start < prev.end:
            later, first = (ent, prev) if ent.line >= prev.line else (prev, ent)
            raise DataError(ann, later.line, f"{later.ident} ({later.label} {later.start}-{later.end}) overlaps "
                                             f"{first.ident} ({first.label} {first.start}-{first.end}, line "
                                             f"{first.line}): nested or overlapping entities cannot be read as "
                                             "word tags")
        out.append(ent)
    return out


# -- sentences ---------------------------------------------------------------------------------
def _cuts(text: str, entities: list[Entity], stats: BratStats) -> list[int]:
    """Positions of the line breaks that end a sentence: every ``\\n`` not inside an entity."""
    inside = set()
    for ent in entities:
        pos = text.find("\n", ent.start, ent.end)
        while pos != -1:
            inside.add(pos)
            pos = text.find("\n", pos + 1, ent.end)
    stats.joined_lines += len(inside)
    return [i for i, ch in enumerate(text) if ch == "\n" and i not in inside]


def _sentence(source: str, text: str, start: int, entities: list[Entity]) -> Sentence | None:
    """The sentence ``text`` (at ``start`` in its document) with ``entities`` (document offsets): each
    word's tag line is the ``.ann`` line of its entity (``line``, its first entity's, for the others)."""
    spans = [(e.start - start, e.end - start, e) for e in entities]
    words = split_at(split_words(text), {c for s, e, _ in spans for c in (s, e)})
    if not words:
        return None
    line = spans[0][2].line if spans else 0
    tag_lines = [line] * len(words)
    word_spans = []
    for s, e, ent in spans:
        idx = [i for i, (_, ws, we) in enumerate(words) if ws >= s and we <= e]
        word_spans.append((ent.label, idx[0], idx[-1] + 1))
        for i in idx:
            tag_lines[i] = ent.line
    return Sentence([w for w, _, _ in words], tags_from_spans(len(words), word_spans, "BIO"), source, line, text,
                    [(s, e) for _, s, e in words], tag_lines=tag_lines)


def document(ann: Path, text: str, stats: BratStats) -> Iterator[Sentence]:
    """The sentences of one document (see module doc)."""
    entities = read_entities(ann, text, stats)
    start = 1 if text.startswith("\ufeff") else 0
    found = False
    k = 0
    for cut in [*_cuts(text, entities, stats), len(text)]:
        end = cut - 1 if cut > start and text[cut - 1] == "\r" else cut
        mine = []
        while k < len(entities) and entities[k].start < cut:
            mine.append(entities[k])
            k += 1
        end = max(end, *(e.end for e in mine)) if mine else end
        sent = _sentence(str(ann), text[start:end], start, mine)
        if sent is not None:
            found = True
            yield sent
        start = cut + 1
    if not found:
        stats.empty_docs += 1


def iter_brat(path: Path, stats: BratStats) -> Iterator[Sentence]:
    """The sentences of every document of ``path`` (a folder, a ``.ann`` or a ``.txt``)."""
    for ann, txt in pairs(path, stats):
        stats.documents += 1
        yield from document(ann, read_text(txt), stats)


def read_brat(path: Path, stats: ReadStats) -> Iterator[Sentence]:
    """The reader of :mod:`nerkd.data.readers` for ``data.format: brat``; what was ignored, split or joined
    goes to the data summary's notes."""
    brat = BratStats()
    try:
        yield from iter_brat(path, brat)
    finally:
        stats.extra_notes = brat.notes()
