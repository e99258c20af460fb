"""Output formats of ``nerkd infer``: pre-annotations that a person corrects in an annotation tool.

* ``jsonl``: nerkd's own lines ``{"id"?, "text", "entities"}`` (:func:`nerkd.infer.io.result_line`).
* ``labelstudio``: Label Studio import tasks with ``predictions``. Label Studio reads tasks with
  pre-annotations from a ``.json`` file holding one JSON array (or one task), not from JSONL
  (https://labelstud.io/guide/predictions, "Import span pre-annotations for text";
  ``label_studio/data_import/models.py``: only ``.json`` files are read as task lists). The array
  is streamed: ``[``, one task per line, ``]``, so nothing is held in memory. Each task is
  ``{"data": {"text", "doc_id"?}, "predictions": [{"model_version", "score"?, "result": [...]}]}``
  and each result item ``{"id", "from_name": "label", "to_name": "text", "type": "labels",
  "value": {"start", "end", "text", "labels": [TYPE], "score"}}``: the names of Label Studio's
  Named Entity Recognition template (``<Labels name="label" toName="text">``,
  ``<Text name="text" value="$text"/>``). Offsets are Unicode code points, as Label Studio
  stores them. The prediction's ``score`` is its least confident entity's (absent when there is
  no entity), so sorting tasks by score shows the doubtful ones first.
* ``doccano``: Doccano's sequence-labelling import JSONL, ``{"text", "label": [[start, end,
  TYPE], ...], "doc_id"?}`` (``backend/data_import/pipeline/catalog.py`` of doccano: columns
  ``text`` and ``label``). Doccano's editor counts offsets in UTF-16 code units, as JavaScript
  strings do (doccano issue #2290), so they are written that way: they differ from code points
  only after a character outside the Basic Multilingual Plane (most emojis).

Empty texts make no task (an annotator has nothing to do there); :attr:`ToolWriter.skipped_empty`
counts them. An input ``id`` goes to ``doc_id``: both tools use ``id`` for their own numbering.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson

from nerkd.infer.io import NO_ID, Doc, result_line

OUTPUT_FORMATS = ("jsonl", "labelstudio", "doccano")
FROM_NAME, TO_NAME = "label", "text"   # Label Studio's NER template


def model_version(ref: str | Path) -> str:
    """``<folder name>-<8 hex>`` for a model folder: a SHA-256 of its ``config.json`` and weight
    files (safetensors, bin, pt, onnx), so two different models saved under the same name do not
    share a version. A hub id is returned as it is."""
    path = Path(ref)
    if not path.is_dir():
        return str(ref)
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file() and (
        p.name == "config.json" or p.suffix in (".safetensors", ".bin", ".pt", ".onnx")))
    for p in files:
        digest.update(p.name.encode() + b"\0")
        with p.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return f"{path.resolve().name}-{digest.hexdigest()[:8]}"


def utf16_offsets(text: str) -> list[int]:
    """UTF-16 offset of every code-point offset of ``text`` (``len(text) + 1`` values)."""
    out = [0] * (len(text) + 1)
    pos = 0
    for i, ch in enumerate(text):
        out[i] = pos
        pos += 2 if ord(ch) > 0xFFFF else 1
    out[len(text)] = pos
    return out


class ToolWriter:
    """Turns each document's entities into bytes of one output format (see module doc).

    ``head()`` goes first, then ``line(doc, entities)`` for every document in input order, then
    ``tail()``; the three together are the whole file.
    """

    def __init__(self, fmt: str, model_version: str = ""):
        if fmt not in OUTPUT_FORMATS:
            raise ValueError(f"unknown output format {fmt!r}")
        self.fmt = fmt
        self.model_version = model_version
        self.tasks = 0
        self.skipped_empty = 0

    def head(self) -> bytes:
        return b"[" if self.fmt == "labelstudio" else b""

    def tail(self) -> bytes:
        if self.fmt != "labelstudio":
            return b""
        return b"\n]\n" if self.tasks else b"]\n"

    def line(self, doc: Doc, entities: list[dict]) -> bytes:
        if self.fmt == "jsonl":
            return result_line(doc, entities)
        if not doc.text.strip():
            self.skipped_empty += 1
            return b""
        obj = self.labelstudio_task(doc, entities) if self.fmt == "labelstudio" else doccano_line(doc, entities)
        self.tasks += 1
        if self.fmt == "labelstudio":
            return (b"\n" if self.tasks == 1 else b",\n") + orjson.dumps(obj)
        return orjson.dumps(obj) + b"\n"

    def labelstudio_task(self, doc: Doc, entities: list[dict]) -> dict[str, Any]:
        data: dict[str, Any] = {"text": doc.text}
        if doc.id is not NO_ID:
            data["doc_id"] = doc.id
        result = [{
            "id": f"n{doc.line}-{k}",
            "from_name": FROM_NAME, "to_name": TO_NAME, "type": "labels",
            "value": {"start": e["start"], "end": e["end"], "text": e["text"], "labels": [e["label"]],
                      "score": e["score"]},
        } for k, e in enumerate(entities)]
        prediction: dict[str, Any] = {"model_version": self.model_version}
        if entities:
            prediction["score"] = min(e["score"] for e in entities)
        prediction["result"] = result
        return {"data": data, "predictions": [prediction]}


def doccano_line(doc: Doc, entities: list[dict]) -> dict[str, Any]:
    pos = utf16_offsets(doc.text) if any(ord(c) > 0xFFFF for c in doc.text) else None
    labels = [[pos[e["start"]], pos[e["end"]], e["label"]] if pos else [e["start"], e["end"], e["label"]]
              for e in entities]
    obj: dict[str, Any] = {"text": doc.text, "label": labels}
    if doc.id is not NO_ID:
        obj["doc_id"] = doc.id
    return obj
