"""Readers for what annotation tools export once a person has corrected the pre-annotations.

``nerkd infer --format labelstudio|doccano`` writes pre-annotations (:mod:`nerkd.infer.formats`);
the exports read here turn back into training data, character spans first, then words and BIO
tags as for character-span JSONL (``data.format: labelstudio`` or ``doccano``, or auto-detected).

**Label Studio**, JSON export (https://labelstud.io/guide/export#JSON): one JSON array of tasks
``{"id", "data": {"text", ...}, "annotations": [{"id", "result": [{"id", "from_name",
"to_name", "type": "labels", "value": {"start", "end", "text", "labels": [TYPE]}, "origin"},
...], "was_cancelled", "ground_truth", "created_at", "updated_at", ...}], "predictions": [...]}``.
Only ``annotations`` count: ``predictions`` are the model's own guesses, so a task that nobody
annotated is skipped (and counted), never read as gold. Cancelled (skipped) annotations are
ignored; a task with several annotations gives one sentence, from its ground-truth annotation if
it has one, else its latest (counted). Result items of other types (relations, choices, ...) are
counted and ignored. The JSON-MIN export (https://labelstud.io/guide/export#JSON-MIN:
``label_studio_sdk/converter/converter.py``, ``convert_to_json_min``) is read too: one record per
annotation, ``{"text", "id", "<from_name>": [{"start", "end", "text", "labels"}], "annotator",
"annotation_id", "created_at", "updated_at", "lead_time"}`` (no ``<from_name>`` key when the
annotation has no span). The text is ``data["text"]`` (or the task's only string in ``data``).
Offsets are Unicode code points; each span's ``text`` is checked against them, and spans that
only match as UTF-16 code units (older Label Studio versions, texts with emojis) are converted
and counted.

**Doccano**, sequence-labelling JSONL export (doccano ``backend/data_export/pipeline/
factories.py`` and ``models.py``): ``{"id", "text", "label": [[start, end, TYPE], ...],
"Comments": [...], ...}``, or with relations ``{"id", "text", "entities": [{"id", "label",
"start_offset", "end_offset"}], "relations": [...], "Comments": [...]}``. Doccano counts offsets
in UTF-16 code units (JavaScript strings, doccano issue #2290); they are converted to code points
(the same numbers unless a character outside the Basic Multilingual Plane, most emojis, comes
before). Doccano exports every example unless "Export only approved documents" is ticked: tick
it, or unreviewed pre-annotations come back as if a person had checked them.

Bad input raises :class:`~nerkd.errors.DataError` naming the file and the line (Doccano) or the
task's position in the array (Label Studio, ``file:task N``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from nerkd.data.schemes import tags_from_spans
from nerkd.data.sentences import ReadStats, Sentence, json_object, numbered_lines, split_at
from nerkd.data.words import split_words
from nerkd.errors import DataError

FORMATS = ("labelstudio", "doccano")
MIN_META = ("id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement")


@dataclass
class Record:
    """One annotated text in character-span form (code-point offsets, ``end`` exclusive)."""

    text: str
    spans: list[tuple[int, int, str]]
    line: int                       # Doccano: 1-based line; Label Studio: 1-based position in the array
    where: str = ""                 # for messages: "line 3", "task 2 (id 17)"


@dataclass
class ToolStats:
    unannotated: int = 0            # Label Studio tasks with no annotation (predictions only): skipped
    cancelled: int = 0              # tasks whose every annotation was cancelled: skipped
    several: int = 0                # tasks with several annotations: one kept
    utf16_spans: int = 0            # spans whose offsets were UTF-16 code units, converted
    ignored: Counter = field(default_factory=Counter)   # result items of other types (relation, choices...)

    def notes(self) -> list[str]:
        out = []
        if self.unannotated:
            out.append(f"{self.unannotated} tasks without annotation skipped (predictions are not gold)")
        if self.cancelled:
            out.append(f"{self.cancelled} tasks whose annotations were all cancelled skipped")
        if self.several:
            out.append(f"{self.several} tasks with several annotations: the ground-truth one, else the latest, kept")
        if self.utf16_spans:
            out.append(f"{self.utf16_spans} spans had UTF-16 offsets (text with emojis): converted to characters")
        if self.ignored:
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.ignored.items()))
            out.append(f"result items that are not entity spans ignored: {kinds}")
        return out


# -- offsets ---------------------------------------------------------------------------------
def _astral(text: str) -> bool:
    return any(ord(c) > 0xFFFF for c in text)


def utf16_to_chars(text: str) -> dict[int, int]:
    """UTF-16 offset -> code-point offset, for every offset that falls between two characters."""
    out, pos = {}, 0
    for i, ch in enumerate(text):
        out[pos] = i
        pos += 2 if ord(ch) > 0xFFFF else 1
    out[pos] = len(text)
    return out


# -- sniffing --------------------------------------------------------------------------------
def sniff_format(path: Path) -> str | None:
    """``labelstudio`` for a JSON array (Label Studio's JSON and JSON-MIN exports), ``doccano``
    for JSONL whose first object has a ``text`` and Doccano's ``label`` [[start, end, type]] or
    ``entities`` with ``start_offset``; None otherwise (the other readers decide)."""
    with path.open("rb") as fh:
        head = fh.read(1 << 16).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        return "labelstudio"
    if not head.startswith(b"{"):
        return None
    first = head.split(b"\n", 1)[0]
    try:
        obj = orjson.loads(first)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return None
    label, ents = obj.get("label"), obj.get("entities")
    if "entities" not in obj and isinstance(label, list) and all(isinstance(x, list) for x in label):
        return "doccano"
    if isinstance(ents, list) and ents and isinstance(ents[0], dict) and "start_offset" in ents[0]:
        return "doccano"
    return None


# -- Label Studio ----------------------------------------------------------------------------
def _ls_text(path: Path, where: str, data: Any) -> str:
    if not isinstance(data, dict):
        raise DataError(path, None, f"{where}: \"data\" is not an object")
    if isinstance(data.get("text"), str):
        return data["text"]
    strings = [k for k, v in data.items() if isinstance(v, str)]
    if len(strings) == 1:
        return data[strings[0]]
    raise DataError(path, None, f"{where}: no \"text\" in data (keys: {', '.join(data) or 'none'})")


def _ls_span(path: Path, where: str, text: str, value: Any, stats: ToolStats) -> tuple[int, int, str]:
    if not isinstance(value, dict):
        raise DataError(path, None, f"{where}: result value {value!r} is not an object")
    s, e, labels = value.get("start"), value.get("end"), value.get("labels")
    if not isinstance(s, int) or not isinstance(e, int):
        raise DataError(path, None, f"{where}: span {value!r} needs integer start and end")
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str) or not labels[0]:
        raise DataError(path, None, f"{where}: span {s}-{e} needs exactly one label, has {labels!r}")
    label, surface = labels[0], value.get("text")
    if isinstance(surface, str) and text[s:e] != surface and _astral(text):
        chars = utf16_to_chars(text)
        if s in chars and e in chars and text[chars[s]:chars[e]] == surface:
            stats.utf16_spans += 1
            return chars[s], chars[e], label
    if isinstance(surface, str) and 0 <= s < e <= len(text) and text[s:e] != surface:
        raise DataError(path, None, f"{where}: span {s}-{e} ({label}) is {text[s:e]!r} in the text but "
                                    f"{surface!r} in the export")
    return s, e, label


def _latest(annotations: list[dict]) -> dict:
    def key(ia):
        i, a = ia
        return (bool(a.get("ground_truth")), str(a.get("updated_at") or a.get("created_at") or ""), i)
    return max(enumerate(annotations), key=key)[1]


def _ls_task(path: Path, pos: int, task: dict, stats: ToolStats) -> Record | None:
    where = f"task {pos}" + (f" (id {task['id']})" if "id" in task else "")
    text = _ls_text(path, where, task.get("data"))
    anns = task.get("annotations", task.get("completions", []))
    if not isinstance(anns, list):
        raise DataError(path, None, f"{where}: \"annotations\" is not a list")
    if not anns:
        stats.unannotated += 1
        return None
    kept = [a for a in anns if isinstance(a, dict) and not a.get("was_cancelled") and not a.get("skipped")]
    if not kept:
        stats.cancelled += 1
        return None
    if len(kept) > 1:
        stats.several += 1
    result = _latest(kept).get("result", [])
    if not isinstance(result, list):
        raise DataError(path, None, f"{where}: annotation \"result\" is not a list")
    spans = []
    for r in result:
        kind = r.get("type") if isinstance(r, dict) else None
        if kind != "labels":
            stats.ignored[str(kind)] += 1
            continue
        spans.append(_ls_span(path, where, text, r.get("value"), stats))
    return Record(text, spans, pos, where)


def _min_spans(rec: dict) -> list[dict] | None:
    """JSON-MIN: the values of every key that holds Labels results (dicts with start, end, labels)."""
    found = None
    for key, value in rec.items():
        if key in MIN_META or not isinstance(value, list) or not value:
            continue
        if all(isinstance(v, dict) and {"start", "end", "labels"} <= v.keys() for v in value):
            found = (found or []) + value
    return found


def _ls_min_records(path: Path, items: list[tuple[int, dict]], stats: ToolStats) -> Iterator[Record]:
    by_task: dict[Any, list[tuple[int, dict]]] = {}
    for pos, rec in items:
        by_task.setdefault(rec.get("id", f"#{pos}"), []).append((pos, rec))
    for task_id, recs in by_task.items():
        pos, rec = recs[0]
        annotated = [(p, r) for p, r in recs if r.get("annotation_id", 0) is not None]
        where = f"record {pos} (id {task_id})"
        if not isinstance(rec.get("text"), str):
            raise DataError(path, None, f"{where}: no \"text\" string (keys: {', '.join(rec)})")
        if not annotated:
            stats.unannotated += 1
            continue
        if len(annotated) > 1:
            stats.several += 1
        pos, rec = max(annotated, key=lambda pr: (str(pr[1].get("updated_at") or pr[1].get("created_at") or ""),
                                                  pr[0]))
        where = f"record {pos} (id {task_id})"
        text = rec["text"]
        spans = [_ls_span(path, where, text, v, stats) for v in _min_spans(rec) or []]
        yield Record(text, spans, pos, where)


def iter_labelstudio(path: Path, stats: ToolStats) -> Iterator[Record]:
    """Records of a Label Studio JSON or JSON-MIN export (see module doc); the file is read whole."""
    if not path.is_file():
        raise DataError(path, None, "file not found")
    try:
        tasks = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise DataError(path, None, f"invalid JSON ({e.args[0].split(':')[0]}); expected Label Studio's JSON "
                                    f"export, one array of tasks") from None
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise DataError(path, None, "expected a JSON array of Label Studio tasks")
    minimal: list[tuple[int, dict]] = []
    read = 0
    for pos, task in enumerate(tasks, start=1):
        if not isinstance(task, dict):
            raise DataError(path, None, f"task {pos}: expected an object, got {type(task).__name__}")
        if "data" in task:
            rec = _ls_task(path, pos, task, stats)
            if rec is not None:
                read += 1
                yield rec
        else:
            minimal.append((pos, task))
    for rec in _ls_min_records(path, minimal, stats):
        read += 1
        yield rec
    if not read and stats.unannotated:
        raise DataError(path, None, f"no annotated task: {stats.unannotated} tasks have predictions only (export "
                                    f"from Label Studio after annotating, not the file nerkd infer wrote)")


# -- Doccano ---------------------------------------------------------------------------------
def _doccano_spans(path: Path, no: int, obj: dict) -> list[tuple[int, int, str]]:
    if "label" in obj and "entities" not in obj:
        raw = obj["label"]
        if not isinstance(raw, list):
            raise DataError(path, no, "\"label\" is not a list of [start, end, label]")
        spans = []
        for item in raw:
            if isinstance(item, str):
                raise DataError(path, no, f"\"label\" holds {item!r}, a category: a text-classification export, "
                                          "not sequence labelling")
            if not isinstance(item, list) or len(item) != 3:
                raise DataError(path, no, f"label item {item!r} is not [start, end, label]")
            spans.append((item[0], item[1], item[2]))
        return spans
    ents = obj.get("entities")
    if not isinstance(ents, list):
        raise DataError(path, no, "expected Doccano's \"label\": [[start, end, label]] or \"entities\": "
                                  "[{start_offset, end_offset, label}]")
    spans = []
    for ent in ents:
        if not isinstance(ent, dict) or not {"start_offset", "end_offset", "label"} <= ent.keys():
            raise DataError(path, no, f"entity {ent!r} needs start_offset, end_offset and label")
        spans.append((ent["start_offset"], ent["end_offset"], ent["label"]))
    return spans


def iter_doccano(path: Path, stats: ToolStats) -> Iterator[Record]:
    """Records of a Doccano sequence-labelling JSONL export (see module doc), streamed."""
    for no, line in numbered_lines(path):
        if not line.strip():
            continue
        obj = json_object(path, no, line)
        text = obj.get("text")
        if not isinstance(text, str):
            raise DataError(path, no, 'expected a "text" string')
        spans = _doccano_spans(path, no, obj)
        for s, e, label in spans:
            if not isinstance(s, int) or not isinstance(e, int) or not isinstance(label, str) or not label:
                raise DataError(path, no, f"span {[s, e, label]!r} needs integer offsets and a label")
        if spans and _astral(text):
            chars = utf16_to_chars(text)
            converted = []
            for s, e, label in spans:
                if s not in chars or e not in chars:
                    raise DataError(path, no, f"span {s}-{e} ({label}) cuts a character in two (offsets are "
                                              "read as UTF-16 code units, as Doccano writes them)")
                converted.append((chars[s], chars[e], label))
            stats.utf16_spans += sum(1 for a, b in zip(spans, converted, strict=True) if a[:2] != b[:2])
            spans = converted
        yield Record(text, spans, no, f"line {no}")


# -- sentences ---------------------------------------------------------------------------------
def iter_records(path: str | Path, fmt: str, stats: ToolStats | None = None) -> Iterator[Record]:
    """Character-span records of a tool's export (``fmt``: labelstudio or doccano)."""
    stats = stats if stats is not None else ToolStats()
    path = Path(path)
    if fmt == "labelstudio":
        return iter_labelstudio(path, stats)
    if fmt == "doccano":
        return iter_doccano(path, stats)
    raise ValueError(f"unknown annotation tool format {fmt!r}")


def to_sentence(path: Path, rec: Record, stats: ReadStats) -> Sentence | None:
    """Words and BIO tags of a record, as the character-span reader makes them (None: empty text)."""
    line = rec.line if rec.where.startswith("line") else None
    where = "" if line is not None else f"{rec.where}: "
    text = rec.text
    for s, e, label in rec.spans:
        if not 0 <= s < e <= len(text):
            raise DataError(path, line, f"{where}span {s}-{e} ({label}) out of range for a text of "
                                        f"{len(text)} characters")
        if not text[s:e].strip():
            raise DataError(path, line, f"{where}span {s}-{e} ({label}) covers only white space")
    spans = sorted(rec.spans)
    for (s1, e1, l1), (s2, e2, l2) in zip(spans, spans[1:], strict=False):
        if s2 < e1:
            raise DataError(path, line, f"{where}spans {s1}-{e1} ({l1}) and {s2}-{e2} ({l2}) overlap")
    words = split_at(split_words(text), {c for s, e, _ in spans for c in (s, e)})
    if not words:
        stats.skipped_empty += 1
        return None
    word_spans = []
    for s, e, label in spans:
        idx = [i for i, (_, ws, we) in enumerate(words) if ws >= s and we <= e]
        word_spans.append((label, idx[0], idx[-1] + 1))
    tags = tags_from_spans(len(words), word_spans, "BIO")
    return Sentence([w for w, _, _ in words], tags, str(path), rec.line, text, [(s, e) for _, s, e in words])


def _read(fmt: str, path: Path, stats: ReadStats) -> Iterator[Sentence]:
    tool = ToolStats()
    try:
        for rec in iter_records(path, fmt, tool):
            sent = to_sentence(path, rec, stats)
            if sent is not None:
                yield sent
    finally:
        stats.extra_notes = tool.notes()


def read_labelstudio(path: Path, stats: ReadStats) -> Iterator[Sentence]:
    return _read("labelstudio", path, stats)


def read_doccano(path: Path, stats: ReadStats) -> Iterator[Sentence]:
    return _read("doccano", path, stats)
