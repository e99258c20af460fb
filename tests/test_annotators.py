"""Pre-annotations for Label Studio and Doccano, their exports read back, and the domain data files.

Fixtures are shaped like each tool's real export:

* Label Studio JSON: https://labelstud.io/guide/export#Label-Studio-JSON-format-of-annotated-tasks
  (tasks with ``annotations[].result[]``; ``origin``, ``was_cancelled``, ``ground_truth``...), NER
  result items as in https://labelstud.io/guide/predictions#Import-span-pre-annotations-for-text,
  relations as ``{"from_id", "to_id", "type": "relation", "direction", "labels"}``;
* Label Studio JSON-MIN: label_studio_sdk ``converter.convert_to_json_min`` (data keys, ``id``, one
  key per control tag, ``annotator``, ``annotation_id``, ``created_at``, ``updated_at``, ``lead_time``);
* Doccano: ``backend/data_export/pipeline/examples/sequence_labeling/example.jsonl`` and
  ``factories.py`` / ``models.py`` of doccano (``label`` [[start, end, label]], or ``entities`` of
  ``start_offset``/``end_offset`` with ``relations`` when the project uses relations; ``Comments``);
  offsets in UTF-16 code units (doccano issue #2290).
"""

from __future__ import annotations

import importlib.util
import re

import orjson
import pytest

from nerkd.cli.app import app
from nerkd.data.annotators import ToolStats, iter_records, sniff_format
from nerkd.data.readers import detect_format, read_sentences
from nerkd.data.words import split_words
from nerkd.errors import DataError
from tests.helpers import DATA, REPO

pytestmark = pytest.mark.usefixtures("one_thread")

EMOJI_NOTE = "Visite 🙂 chez Mme Bernard, puis 👍 appel du CCAS de Lyon pour M. Nguyen."
NOTES = [
    "Mme Lefèvre quitte l’EHPAD Les Opalines pour Saint-Étienne avec le SSIAD de Lyon.",
    "",
    EMOJI_NOTE,
    "RDV au CCAS de Vénissieux mardi 14h avec M. Diallo et sa fille Aminata.",
]


def infer(runner, model, fmt, src, out, *extra):
    res = runner.invoke(app, ["infer", "--model", str(model), "-i", str(src), "-o", str(out), "--no-progress",
                              "--format", fmt, *extra])
    assert res.exit_code == 0, res.stderr
    return res


def jsonl(path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


def spans_of(entities) -> list[tuple[int, int, str]]:
    return [(e["start"], e["end"], e["label"]) for e in entities]


@pytest.fixture
def reference(runner, in_tmp, tiny_bio):
    """The notes (one empty) and infer's default JSONL for them: the entities every format must carry."""
    src = in_tmp / "notes.txt"
    src.write_text("\n".join(NOTES) + "\n", encoding="utf-8")
    infer(runner, tiny_bio, "jsonl", src, in_tmp / "ref.jsonl")
    ref = jsonl(in_tmp / "ref.jsonl")
    assert [r["text"] for r in ref] == NOTES
    assert sum(len(r["entities"]) for r in ref) >= 5   # the untrained tiny model tags plenty
    return src, ref


# -- Label Studio --------------------------------------------------------------------------------
def ls_export(tasks: list[dict]) -> list[dict]:
    """What Label Studio's JSON export holds once an annotator accepted every prediction: an id per
    task, and an annotation whose result copies the prediction's, marked ``origin: prediction``."""
    out = []
    for i, task in enumerate(tasks, start=1):
        pred = task["predictions"][0]
        result = [dict(r, origin="prediction") for r in pred["result"]]
        for r in result:
            r["value"] = {k: v for k, v in r["value"].items() if k != "score"}
        out.append({
            "id": i, "data": task["data"], "project": 3, "created_at": "2025-03-01T09:00:00.000000Z",
            "updated_at": "2025-03-01T09:05:00.000000Z", "inner_id": i, "total_annotations": 1,
            "cancelled_annotations": 0, "total_predictions": 1, "comment_count": 0, "file_upload": "pre.json",
            "annotations": [{
                "id": 100 + i, "completed_by": 1, "result": result, "was_cancelled": False, "ground_truth": False,
                "created_at": "2025-03-01T09:04:00.000000Z", "updated_at": "2025-03-01T09:04:30.000000Z",
                "draft_created_at": None, "lead_time": 12.5, "prediction": {"id": 50 + i},
                "result_count": len(result), "unique_id": f"u{i}", "import_id": None, "last_action": None,
                "task": i, "project": 3, "updated_by": 1, "parent_prediction": 50 + i, "parent_annotation": None,
                "last_created_by": None}],
            "predictions": [dict(pred, id=50 + i, task=i, project=3)],
        })
    return out


def ls_json_min(export: list[dict]) -> list[dict]:
    """The same export as JSON-MIN (label_studio_sdk converter: data keys, id, one key per control tag)."""
    out = []
    for task in export:
        ann = task["annotations"][0]
        rec = dict(task["data"])
        rec["id"] = task["id"]
        if ann["result"]:
            rec["label"] = [r["value"] for r in ann["result"]]
        rec.update(annotator=1, annotation_id=ann["id"], created_at=ann["created_at"],
                   updated_at=ann["updated_at"], lead_time=ann["lead_time"])
        out.append(rec)
    return out


def test_infer_labelstudio_round_trips_through_the_reader(runner, in_tmp, tiny_bio, reference):
    src, ref = reference
    res = infer(runner, tiny_bio, "labelstudio", src, in_tmp / "pre.json")
    raw = (in_tmp / "pre.json").read_bytes()
    assert raw.startswith(b"[\n{") and raw.endswith(b"}\n]\n")
    tasks = orjson.loads(raw)   # one JSON array: what Label Studio imports
    non_empty = [r for r in ref if r["text"]]
    assert [t["data"]["text"] for t in tasks] == [r["text"] for r in non_empty]
    assert "1 empty texts skipped" in res.stderr and "3 Label Studio tasks" in res.stderr
    assert f"wrote 3 tasks to {in_tmp / 'pre.json'}" in res.stderr
    version = tasks[0]["predictions"][0]["model_version"]
    assert re.fullmatch(r"tiny_bio-[0-9a-f]{8}", version) and version in res.stderr
    for task, r in zip(tasks, non_empty, strict=True):
        (pred,) = task["predictions"]
        assert pred["model_version"] == version
        assert pred["score"] == min(e["score"] for e in r["entities"])
        assert [(x["from_name"], x["to_name"], x["type"]) for x in pred["result"]] == \
            [("label", "text", "labels")] * len(r["entities"])
        assert [x["value"] for x in pred["result"]] == [
            {"start": e["start"], "end": e["end"], "text": e["text"], "labels": [e["label"]], "score": e["score"]}
            for e in r["entities"]]
        assert len({x["id"] for x in pred["result"]}) == len(pred["result"])

    export = ls_export(tasks)
    (in_tmp / "export.json").write_bytes(orjson.dumps(export, option=orjson.OPT_INDENT_2))
    (in_tmp / "export_min.json").write_bytes(orjson.dumps(ls_json_min(export), option=orjson.OPT_INDENT_2))
    for name in ("export.json", "export_min.json"):
        stats = ToolStats()
        records = list(iter_records(in_tmp / name, "labelstudio", stats))
        assert [(x.text, x.spans) for x in records] == [(r["text"], spans_of(r["entities"])) for r in non_empty]
        assert stats.notes() == []
        assert detect_format(in_tmp / name) == "labelstudio"
    assert_same_sentences(in_tmp / "export.json", non_empty, in_tmp)
    assert_same_sentences(in_tmp / "export_min.json", non_empty, in_tmp)

    # the pre-annotations themselves are not gold: every task is skipped, and the error says why
    with pytest.raises(DataError, match="no annotated task: 3 tasks have predictions only"):
        read_sentences(in_tmp / "pre.json")


def assert_same_sentences(export, ref_rows, tmp):
    """The export gives the sentences (words, tags, offsets) that the char-span reader gives for infer's JSONL."""
    spans = tmp / "ref_spans.jsonl"
    spans.write_bytes(b"".join(orjson.dumps({"text": r["text"], "entities": r["entities"]}) + b"\n"
                               for r in ref_rows))
    want, _ = read_sentences(spans, "spans")
    got, stats = read_sentences(export)
    assert stats.format in ("labelstudio", "doccano")
    assert [(s.tokens, s.tags, s.offsets, s.text) for s in got] == [(s.tokens, s.tags, s.offsets, s.text)
                                                                    for s in want]
    assert any(t != "O" for s in got for t in s.tags)


# -- Doccano -------------------------------------------------------------------------------------
def test_infer_doccano_round_trips_through_the_reader(runner, in_tmp, tiny_bio, reference):
    src, ref = reference
    res = infer(runner, tiny_bio, "doccano", src, in_tmp / "pre.jsonl")
    rows = jsonl(in_tmp / "pre.jsonl")
    non_empty = [r for r in ref if r["text"]]
    assert [r["text"] for r in rows] == [r["text"] for r in non_empty]
    assert "3 Doccano lines" in res.stderr and "1 empty texts skipped" in res.stderr
    assert f"wrote 3 lines to {in_tmp / 'pre.jsonl'}" in res.stderr
    for row, r in zip(rows, non_empty, strict=True):
        assert set(row) == {"text", "label"}
        if r["text"] == EMOJI_NOTE:   # UTF-16 code units: +1 after 🙂, +2 after 👍 (an entity may hold one)
            def u16(i: int, text: str = r["text"]) -> int:
                return i + sum(ord(c) > 0xFFFF for c in text[:i])
            assert row["label"] == [[u16(e["start"]), u16(e["end"]), e["label"]] for e in r["entities"]]
            assert any(u16(e["start"]) != e["start"] for e in r["entities"])
        else:
            assert row["label"] == [list(x) for x in spans_of(r["entities"])]

    # Doccano's export: its own id, the text, the spans as they were imported, Comments
    plain = [{"id": 40 + i, "text": row["text"], "Comments": [], "label": row["label"]} for i, row in enumerate(rows)]
    (in_tmp / "admin.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in plain))
    # ... and from a project with relations: entities as objects, relations beside them
    rel = [{"id": 40 + i, "text": row["text"], "Comments": [], "relations": [],
            "entities": [{"id": 900 + 10 * i + k, "label": lab, "start_offset": s, "end_offset": e}
                         for k, (s, e, lab) in enumerate(row["label"])]} for i, row in enumerate(rows)]
    (in_tmp / "all.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in rel))
    for name in ("admin.jsonl", "all.jsonl"):
        records = list(iter_records(in_tmp / name, "doccano"))
        assert [(x.text, x.spans) for x in records] == [(r["text"], spans_of(r["entities"])) for r in non_empty]
        assert detect_format(in_tmp / name) == "doccano"
        assert_same_sentences(in_tmp / name, non_empty, in_tmp)


def test_input_ids_go_to_doc_id(runner, in_tmp, tiny_bio):
    src = in_tmp / "in.jsonl"
    src.write_text('{"id": "n-1", "text": "Mme Lefèvre"}\n{"text": "sans id"}\n', encoding="utf-8")
    infer(runner, tiny_bio, "labelstudio", src, in_tmp / "t.json")
    infer(runner, tiny_bio, "doccano", src, in_tmp / "d.jsonl")
    tasks = orjson.loads((in_tmp / "t.json").read_bytes())
    assert [t["data"] for t in tasks] == [{"text": "Mme Lefèvre", "doc_id": "n-1"}, {"text": "sans id"}]
    rows = jsonl(in_tmp / "d.jsonl")
    assert [r.get("doc_id") for r in rows] == ["n-1", None] and "id" not in rows[0]


def test_format_names_the_output_format_only(runner, in_tmp, tiny_bio):
    """``--format`` takes output formats; the input's (text, auto) are refused with the option that takes them."""
    line = '{"id": 1, "text": "Lyon"}'
    src = in_tmp / "in.txt"
    src.write_text(line + "\n", encoding="utf-8")
    for value in ("text", "auto"):
        res = runner.invoke(app, ["infer", "--model", str(tiny_bio), "-i", str(src), "--format", value])
        assert res.exit_code == 2 and f"{value} is a choice of --input-format: --input-format {value}" in res.output
    res = infer(runner, tiny_bio, "jsonl", src, in_tmp / "b.jsonl", "--input-format", "text")
    assert jsonl(in_tmp / "b.jsonl")[0]["text"] == line                # read as plain text
    res = infer(runner, tiny_bio, "jsonl", src, in_tmp / "d.jsonl")   # JSONL input is auto-detected
    assert jsonl(in_tmp / "d.jsonl")[0]["text"] == "Lyon"


# -- readers on tool-shaped fixtures ------------------------------------------------------------
UNICODE = "Mme Øyvind 🙂 vit à Saint-Étienne ; appel de l’ADMR."   # 🙂 is 2 UTF-16 code units


def result(rid, start, end, text, label, origin="manual"):
    return {"value": {"start": start, "end": end, "text": text, "labels": [label]}, "id": rid,
            "from_name": "label", "to_name": "text", "type": "labels", "origin": origin}


def annotation(aid, res, created="2025-02-03T10:00:00.000000Z", **kw):
    return {"id": aid, "completed_by": 1, "result": res, "was_cancelled": False, "ground_truth": False,
            "created_at": created, "updated_at": created, "draft_created_at": None, "lead_time": 8.2,
            "prediction": {}, "result_count": 0, "unique_id": f"u{aid}", "import_id": None, "last_action": None,
            "task": 0, "project": 1, "updated_by": 1, "parent_prediction": None, "parent_annotation": None,
            "last_created_by": None, **kw}


def task(tid, text, annotations, predictions=()):
    return {"id": tid, "annotations": annotations, "file_upload": "notes.json", "drafts": [],
            "predictions": list(predictions), "data": {"text": text}, "meta": {},
            "created_at": "2025-02-03T09:00:00.000000Z", "updated_at": "2025-02-03T10:00:00.000000Z",
            "inner_id": tid, "total_annotations": len(annotations), "cancelled_annotations": 0,
            "total_predictions": len(predictions), "comment_count": 0, "unresolved_comment_count": 0,
            "last_comment_updated_at": None, "project": 1, "updated_by": 1, "comment_authors": []}


LS_EXPORT = [
    # with a relation between its two spans
    task(1, "Appel de Mme Vasseur au CCAS de Vierzon.", [annotation(11, [
        result("a1", 13, 20, "Vasseur", "PER"), result("a2", 24, 39, "CCAS de Vierzon", "ORG"),
        {"from_id": "a1", "to_id": "a2", "type": "relation", "direction": "right", "labels": []}])]),
    # relation-free, unicode (code points, as Label Studio stores them today)
    task(2, UNICODE, [annotation(12, [result("b1", 4, 10, "Øyvind", "PER"),
                                      result("b2", 19, 32, "Saint-Étienne", "LOC"),
                                      result("b3", 46, 50, "ADMR", "ORG", origin="prediction")])]),
    # an empty annotation: the annotator saw no entity
    task(3, "RAS ce jour, on repasse jeudi.", [annotation(13, [])]),
    # no annotation, only a prediction: not gold, skipped
    task(4, "Mme Brunel à Mâcon.", [], [{"id": 7, "model_version": "tiny-0a1b2c3d", "score": 0.4,
                                         "result": [result("p1", 4, 10, "Brunel", "PER", origin=None)]}]),
    # cancelled (skipped by the annotator): skipped
    task(5, "M. Jaouen, CAF de l’Indre.", [annotation(15, [], was_cancelled=True)]),
    # two annotations: the later one wins
    task(6, "Sortie du CH de Bourges.", [annotation(16, [result("c1", 10, 23, "CH de Bourges", "LOC")]),
                                        annotation(17, [result("c2", 10, 23, "CH de Bourges", "ORG")],
                                                   created="2025-02-04T08:00:00.000000Z")]),
    # older Label Studio: UTF-16 offsets after the emoji (value.text tells)
    task(7, UNICODE, [annotation(18, [result("d1", 20, 33, "Saint-Étienne", "LOC")])]),
]
LS_EXPECTED = [
    ("Appel de Mme Vasseur au CCAS de Vierzon.", [(13, 20, "PER"), (24, 39, "ORG")]),
    (UNICODE, [(4, 10, "PER"), (19, 32, "LOC"), (46, 50, "ORG")]),
    ("RAS ce jour, on repasse jeudi.", []),
    ("Sortie du CH de Bourges.", [(10, 23, "ORG")]),
    (UNICODE, [(19, 32, "LOC")]),
]


def test_labelstudio_json_export(tmp_path):
    assert [UNICODE[s:e] for s, e, _ in LS_EXPECTED[1][1]] == ["Øyvind", "Saint-Étienne", "ADMR"]
    path = tmp_path / "project-1-at-2025-02-04-08-10-0a1b2c3d.json"
    path.write_bytes(orjson.dumps(LS_EXPORT))
    stats = ToolStats()
    assert [(r.text, r.spans) for r in iter_records(path, "labelstudio", stats)] == LS_EXPECTED
    assert stats.unannotated == 1 and stats.cancelled == 1 and stats.several == 1 and stats.utf16_spans == 1
    assert stats.ignored == {"relation": 1}
    sents, read = read_sentences(path)
    assert read.format == "labelstudio" and len(sents) == 5
    assert sents[2].tags == ["O"] * len(sents[2].tokens)
    assert sents[1].tokens[:3] == ["Mme", "Øyvind", "🙂"] and sents[1].tags[:3] == ["O", "B-PER", "O"]
    notes = " | ".join(read.notes())
    for part in ("1 tasks without annotation skipped", "1 tasks whose annotations were all cancelled",
                 "1 tasks with several annotations", "1 spans had UTF-16 offsets", "1 relation"):
        assert part in notes


def test_labelstudio_json_min_export(tmp_path):
    records = [
        {"text": "Appel de Mme Vasseur au CCAS de Vierzon.", "id": 1,
         "label": [{"start": 13, "end": 20, "text": "Vasseur", "labels": ["PER"]},
                   {"start": 24, "end": 39, "text": "CCAS de Vierzon", "labels": ["ORG"]}],
         "annotator": 1, "annotation_id": 11, "created_at": "2025-02-03T10:00:00.000000Z",
         "updated_at": "2025-02-03T10:00:00.000000Z", "lead_time": 8.2},
        {"text": UNICODE, "id": 2, "label": [{"start": 4, "end": 10, "text": "Øyvind", "labels": ["PER"]}],
         "annotator": 1, "annotation_id": 12, "created_at": "2025-02-03T10:00:00.000000Z",
         "updated_at": "2025-02-03T10:00:00.000000Z", "lead_time": 3.0},
        {"text": "RAS ce jour, on repasse jeudi.", "id": 3, "annotator": 1, "annotation_id": 13,   # empty annotation
         "created_at": "2025-02-03T10:00:00.000000Z", "updated_at": "2025-02-03T10:00:00.000000Z", "lead_time": 1.0},
        {"text": "Mme Brunel à Mâcon.", "id": 4, "annotator": {}, "annotation_id": None, "created_at": None,
         "updated_at": None, "lead_time": None},                                                  # never annotated
    ]
    path = tmp_path / "min.json"
    path.write_bytes(orjson.dumps(records, option=orjson.OPT_INDENT_2))
    stats = ToolStats()
    got = [(r.text, r.spans) for r in iter_records(path, "labelstudio", stats)]
    assert got == [LS_EXPECTED[0], (UNICODE, [(4, 10, "PER")]), LS_EXPECTED[2]]
    assert stats.unannotated == 1
    assert sniff_format(path) == "labelstudio"


DOCCANO = [  # UTF-16 offsets: "Saint-Étienne" is 19-32 in characters, 20-33 in Doccano
    {"id": 7, "text": UNICODE, "Comments": [], "label": [[4, 10, "PER"], [20, 33, "LOC"], [47, 51, "ORG"]]},
    {"id": 8, "text": "RAS ce jour, on repasse jeudi.", "Comments": ["vu"], "label": []},
    {"id": 9, "text": "Appel de Mme Vasseur au CCAS de Vierzon.", "Comments": [], "label": [[24, 39, "ORG"],
                                                                                             [13, 20, "PER"]]},
]


def test_doccano_jsonl_export(tmp_path):
    path = tmp_path / "admin.jsonl"
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in DOCCANO))
    stats = ToolStats()
    got = [(r.text, r.spans) for r in iter_records(path, "doccano", stats)]
    assert got == [(UNICODE, [(4, 10, "PER"), (19, 32, "LOC"), (46, 50, "ORG")]),
                   ("RAS ce jour, on repasse jeudi.", []),
                   ("Appel de Mme Vasseur au CCAS de Vierzon.", [(24, 39, "ORG"), (13, 20, "PER")])]
    assert stats.utf16_spans == 2
    sents, read = read_sentences(path)
    assert read.format == "doccano" and [s.line for s in sents] == [1, 2, 3]
    assert [t for t in sents[0].tags if t != "O"] == ["B-PER", "B-LOC", "B-ORG"]
    rel = tmp_path / "rel.jsonl"
    rel.write_bytes(orjson.dumps({"id": 3, "text": UNICODE, "Comments": [], "relations": [
        {"id": 1, "from_id": 31, "to_id": 32, "type": "vit à"}], "entities": [
        {"id": 31, "label": "PER", "start_offset": 4, "end_offset": 10},
        {"id": 32, "label": "LOC", "start_offset": 20, "end_offset": 33}]}) + b"\n")
    assert [r.spans for r in iter_records(rel, "doccano")] == [[(4, 10, "PER"), (19, 32, "LOC")]]
    assert detect_format(rel) == "doccano"


@pytest.mark.parametrize("fmt, content, message", [
    ("doccano", {"id": 1, "text": "Appel du CCAS.", "label": ["urgent"]}, "text-classification export"),
    ("doccano", {"id": 1, "text": UNICODE, "label": [[12, 17, "LOC"]]}, "cuts a character in two"),
    ("doccano", {"id": 1, "text": "Lyon", "label": [[0, 9, "LOC"]]}, "out of range"),
    ("doccano", {"id": 1, "label": []}, '"text"'),
    ("labelstudio", [task(4, "Mme Brunel.", [annotation(1, [result("x", 0, 3, "Brunel", "PER")])])],
     "is 'Mme' in the text but 'Brunel' in the export"),
    ("labelstudio", [task(4, "Mme Brunel.", [annotation(1, [dict(result("x", 4, 10, "Brunel", "PER"),
                                                                    value={"start": 4, "end": 10, "labels": []})])])],
     "exactly one label"),
])
def test_bad_exports_name_the_place(tmp_path, fmt, content, message):
    path = tmp_path / ("x.jsonl" if fmt == "doccano" else "x.json")
    path.write_bytes(b'{"id": 0, "text": "ok", "label": []}\n' + orjson.dumps(content) + b"\n" if fmt == "doccano"
                     else orjson.dumps(content))
    with pytest.raises(DataError, match=re.escape(message)) as err:
        read_sentences(path, fmt)
    where = f"{path}:2:" if fmt == "doccano" else f"{path}: task 1 (id 4)"
    assert str(err.value).startswith(where), str(err.value)


def test_spans_and_data_format_setting_unchanged(tmp_path):
    from nerkd.settings import DataSettings

    assert DataSettings(format="labelstudio").format == "labelstudio"
    assert DataSettings(format="doccano").format == "doccano"
    assert detect_format(DATA / "spans.jsonl") == "spans"
    assert detect_format(DATA / "train.jsonl") == "jsonl"


# -- domain data ---------------------------------------------------------------------------------
def labelled_texts() -> set[tuple[str, ...]]:
    out = set()
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        out |= {tuple(orjson.loads(x)["tokens"]) for x in (DATA / name).read_bytes().splitlines() if x.strip()}
    return out


def test_handwritten_set_reads_with_the_char_span_reader():
    path = DATA / "medsoc_handwritten.jsonl"
    sents, stats = read_sentences(path, "spans")
    assert stats.sentences >= 60 and not stats.notes() and not stats.warnings()
    types = {t[2:] for s in sents for t in s.tags if t != "O"}
    assert types == {"PER", "LOC", "ORG"}
    train = labelled_texts()
    for no, line in enumerate(path.read_bytes().splitlines(), start=1):
        row = orjson.loads(line)
        words = split_words(row["text"])
        assert tuple(w for w, _, _ in words) not in train, no
        starts, ends = {s for _, s, _ in words}, {e for _, _, e in words}
        for e in row["entities"]:   # every entity starts and ends on a word boundary
            assert e["start"] in starts and e["end"] in ends, (no, row["text"][e["start"]:e["end"]])


def load_make_sample():
    spec = importlib.util.spec_from_file_location("make_sample", REPO / "data" / "make_sample.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_unlabelled_notes_are_disjoint_from_train_dev_test(tmp_path, capsys):
    notes = (DATA / "unlabeled.txt").read_text(encoding="utf-8").splitlines()
    assert len(notes) == 500 and len(set(notes)) == 500 and all(n.strip() for n in notes)
    labelled = labelled_texts()
    assert not {tuple(w for w, _, _ in split_words(n)) for n in notes} & labelled
    assert not set(notes) & set((DATA / "texts.txt").read_text(encoding="utf-8").splitlines())
    ms = load_make_sample()
    pool = ms.labelled_pool()   # the labelled draws are untouched by the second stream
    train = [tuple(orjson.loads(x)["tokens"]) for x in (DATA / "train.jsonl").read_bytes().splitlines()]
    assert [tuple(w for w, _, _ in split_words(t)) for t in list(pool)[:len(train)]] == train
    ms.write_unlabeled(40, tmp_path / "u.txt")   # the committed file is reproducible, and a run for N is a prefix
    assert (tmp_path / "u.txt").read_text(encoding="utf-8").splitlines() == notes[:40]
    assert "draws equal to a labelled sentence skipped" in capsys.readouterr().out


def test_labelstudio_array_stays_valid_when_input_breaks(runner, in_tmp, tiny_bio):
    src = in_tmp / "bad.txt"
    src.write_bytes("Mme Lefèvre\nà Lyon\n".encode() + b"\xff\xfe pas utf8\nfin\n")
    res = runner.invoke(app, ["infer", "--model", str(tiny_bio), "-i", str(src), "-o", str(in_tmp / "t.json"),
                              "--format", "labelstudio"])
    assert res.exit_code == 1 and f"{src}:3:" in res.stderr
    tasks = orjson.loads((in_tmp / "t.json").read_bytes())   # closed: the tasks written before the error
    assert [t["data"]["text"] for t in tasks] == ["Mme Lefèvre", "à Lyon"]
