"""Streaming readers for the three accepted formats.

* JSONL with ``tokens`` and ``tags`` (one sentence per line);
* CoNLL, one token per line and a blank line between sentences, columns separated by tabs or
  spaces: the first column is the token and the last the tag (``token tag``, CoNLL-2003's
  ``token POS chunk tag``), except 3 columns whose first one counts the tokens (``index token
  tag``); ``-DOCSTART-`` lines are skipped (and counted);
* character-span JSONL (``text`` + ``entities`` of ``start``/``end``/``label``), split into words
  with offsets kept.

Every reader yields :class:`~nerkd.data.sentences.Sentence` objects and fills a
:class:`~nerkd.data.sentences.ReadStats` (both in :mod:`nerkd.data.sentences`, with the line helpers). Bad input raises
:class:`~nerkd.errors.DataError` naming the file and the 1-based line. Tags that break the file's
scheme (an ``I-X`` after ``O`` in BIO data) are counted, never dropped: :meth:`ReadStats.warnings`
says how they are read. ``relabel`` (``labels.drop`` / ``labels.map``) renames or drops entity
types as sentences are read, before any label space is built.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from nerkd.data import annotators, brat
from nerkd.data.schemes import split_tag, tags_from_spans
from nerkd.data.sentences import ReadStats, Sentence, json_object, numbered_lines, split_at
from nerkd.data.words import split_words
from nerkd.errors import DataError

FORMATS = ("jsonl", "conll", "spans", "labelstudio", "doccano", "brat")   # the last three: annotators, brat
DOCSTART = "-DOCSTART-"


def _check_tag(path: Path, no: int, tag: object) -> str:
    if not isinstance(tag, str):
        raise DataError(path, no, f"tag {tag!r} is not a string")
    try:
        split_tag(tag)
    except ValueError as e:
        raise DataError(path, no, f"unknown tag: {e}") from None
    return tag


def read_jsonl(path: Path, stats: ReadStats) -> Iterator[Sentence]:
    for no, line in numbered_lines(path):
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

    for no, line in numbered_lines(path):
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


def read_spans(path: Path, stats: ReadStats) -> Iterator[Sentence]:
    for no, line in numbered_lines(path):
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
        words = split_at(split_words(text), {c for s, e, _ in spans for c in (s, e)})
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
    if brat.is_brat(path):   # a folder, a .ann, or a .txt with its .ann beside it
        return brat.FORMAT
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        if tool := annotators.sniff_format(path):   # Label Studio's JSON array, Doccano's JSONL
            return tool
        for no, line in numbered_lines(path):
            if line.strip():
                obj = json_object(path, no, line)
                return "spans" if "text" in obj else "jsonl"
        return "jsonl"
    return "conll"


_READERS = {"jsonl": read_jsonl, "conll": read_conll, "spans": read_spans,
            "labelstudio": annotators.read_labelstudio, "doccano": annotators.read_doccano,
            brat.FORMAT: brat.read_brat}


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
