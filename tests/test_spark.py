"""Spark: ``nerkd.spark.tag_notes`` and ``nerkd infer --engine spark`` on a local[2] session (#23).

One session for the module (it takes ~10 s to start); skipped when pyspark or Java is missing. Spark's output
must equal ``nerkd infer``'s, row for row; bad rows become error rows; the model loads once per Python worker.
"""

from __future__ import annotations

import os
import shutil

import orjson
import pytest

from nerkd.cli.app import app
from tests.helpers import sample_texts

pytest.importorskip("pyspark")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    pytest.skip("Spark needs Java (none on the PATH, no JAVA_HOME)", allow_module_level=True)

pytestmark = [pytest.mark.spark, pytest.mark.usefixtures("one_thread")]

ONE_MB = 1_000_000
NULL, EMPTY, HUGE, BAD_UTF8 = 9001, 9002, 9003, 9004


@pytest.fixture(scope="module")
def spark():
    from nerkd.spark import spark_session

    session = spark_session("local[2]", batch_rows=16, conf={"spark.ui.enabled": "false",
                                                             "spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    """~200 sample notes and the bad rows: null, empty, 1 MB of text, bytes that are not UTF-8 (a surrogate)."""
    texts = sample_texts()[::3][:200]
    huge = (" ".join(texts[:20]) + " ") * (ONE_MB // len(" ".join(texts[:20])) + 1)
    good = {i + 1: t for i, t in enumerate(texts)} | {EMPTY: "", HUGE: huge[:ONE_MB]}
    raw = [t.encode() for t in good.values()] + [b"", b"Mme \xed\xa0\x80 Lyon"]
    offsets = [0]
    for r in raw:
        offsets.append(offsets[-1] + len(r))
    column = pa.Array.from_buffers(pa.string(), len(raw), [None, pa.array(offsets, pa.int32()).buffers()[1],
                                                           pa.py_buffer(b"".join(raw))])
    column = pa.compute.if_else(pa.array([False] * len(good) + [True, False]), pa.scalar(None, pa.string()),
                                column)
    ids = [*good, NULL, BAD_UTF8]
    folder = tmp_path_factory.mktemp("spark")
    pq.write_table(pa.table({"note_id": pa.array(ids, pa.int64()), "note_text": column}), folder / "notes.parquet",
                   row_group_size=64)
    return folder / "notes.parquet", good


@pytest.fixture(scope="module")
def reference(notes, tiny_bio, tmp_path_factory):
    """``nerkd infer``'s entities (JSONL, one thread) for every good note: note id -> entities."""
    from typer.testing import CliRunner

    _, good = notes
    folder = tmp_path_factory.mktemp("ref")
    (folder / "in.jsonl").write_bytes(b"".join(orjson.dumps({"id": i, "text": t}) + b"\n" for i, t in good.items()))
    res = CliRunner().invoke(app, ["infer", "-m", str(tiny_bio), "-i", str(folder / "in.jsonl"), "-o",
                                   str(folder / "out.jsonl"), "--threads", "1", "--no-progress"])
    assert res.exit_code == 0, res.stderr
    return {x["id"]: x["entities"] for x in map(orjson.loads, (folder / "out.jsonl").read_bytes().splitlines())}


def by_note(rows) -> tuple[dict, dict]:
    """(note id -> entities, note id -> error) of Spark output rows."""
    entities: dict = {}
    errors: dict = {}
    for r in sorted(rows, key=lambda r: (r["note_id"], r["start_char"] or 0)):
        if r["error"] is not None:
            errors[r["note_id"]] = r["error"]
        else:
            entities.setdefault(r["note_id"], []).append(
                {"start": r["start_char"], "end": r["end_char"], "label": r["label"], "text": r["text"],
                 "score": r["score"]})
    return entities, errors


def probe(frames):
    """What each Python worker that runs this task has done: loads, batches, torch threads."""
    import pandas as pd
    import torch

    from nerkd.spark.worker import STATS

    for _ in frames:
        yield pd.DataFrame({"pid": [os.getpid()], "loads": [STATS["loads"]], "batches": [STATS["batches"]],
                            "threads": [torch.get_num_threads()]})


def test_rows_equal_infer_and_the_model_loads_once_per_worker(spark, notes, reference, tiny_bio):
    from nerkd.infer.formats import model_version
    from nerkd.spark import tag_notes

    path, good = notes
    rows = [r.asDict() for r in tag_notes(spark.read.parquet(str(path)), tiny_bio, partitions=4).collect()]
    workers = spark.range(0, 8, numPartitions=8).mapInPandas(probe, "pid long, loads long, batches long, "
                                                                    "threads long").collect()
    entities, errors = by_note(rows)
    assert errors == {NULL: "text is null", BAD_UTF8: "text is not valid UTF-8 (invalid continuation byte at byte 4)"}
    assert {i: entities.get(i, []) for i in good} == reference           # row for row, 1 MB note included
    assert EMPTY not in entities and max(e["end"] for e in entities[HUGE]) > ONE_MB - 200   # nothing truncated
    assert {r["model"] for r in rows} == {model_version(tiny_bio)}
    busy = {w["pid"]: w for w in workers if w["batches"]}
    assert busy and all(w["loads"] == 1 and w["threads"] == 1 for w in busy.values())   # spark.task.cpus = 1
    assert sum(w["batches"] for w in busy.values()) >= len(good) // 16 > len(busy)      # batches share one load


def test_python_strings_with_lone_surrogates_are_tagged_as_spark_stores_them(spark, tiny_bio):
    from nerkd.infer import Engine
    from nerkd.spark import tag_notes

    df = spark.createDataFrame([(1, "Mme Lefèvre \ud800 quitte Lyon")], "id long, text string")
    stored = df.collect()[0]["text"]           # Spark keeps U+FFFD in place of the surrogate
    assert stored == "Mme Lefèvre \ufffd quitte Lyon"
    entities, errors = by_note(r.asDict() for r in tag_notes(df, tiny_bio).collect())
    assert not errors
    assert entities.get(1, []) == Engine.load(tiny_bio, device="cpu").predict([stored])[0]


def test_command_counts_rows_and_reruns_to_the_same_output(spark, notes, reference, runner, in_tmp, tiny_bio):
    from nerkd.spark import MARKER

    table = pq.read_table(notes[0])
    path = in_tmp / "some.parquet"   # 60 notes and the bad rows, without the 1 MB one (tagged by the test above)
    keep = pa.compute.is_in(table["note_id"], pa.array([*range(1, 61), EMPTY, NULL, BAD_UTF8]))
    pq.write_table(table.filter(keep), path)
    good = {i: t for i, t in notes[1].items() if i <= 60 or i == EMPTY}
    args = ["infer", "--engine", "spark", "--master", "local[2]", "-m", str(tiny_bio), "-i", str(path)]
    outputs = []
    for _ in range(2):
        res = runner.invoke(app, [*args, "-o", "out/ents.parquet", "--chunk-size", "32"])
        assert res.exit_code == 0, res.stderr
        assert f"{len(good) + 2} rows read, {len(good)} tagged, 2 in error" in res.stderr
        rows = [r.asDict() for r in spark.read.parquet(str(in_tmp / "out/ents.parquet")).collect()]
        outputs.append(sorted(rows, key=lambda r: (r["note_id"], r["start_char"] or -1, r["label"] or "")))
    assert outputs[0] == outputs[1]                    # rerun: the same rows, none twice
    entities, errors = by_note(outputs[0])
    assert {i: entities.get(i, []) for i in good} == {i: reference[i] for i in good} and set(errors) == {NULL, BAD_UTF8}
    manifest = orjson.loads((in_tmp / "out/ents.parquet" / MARKER).read_bytes())
    assert manifest["counts"] == {"rows": len(outputs[0]), "errors": 2} and manifest["rows_read"] == len(good) + 2
    assert not list((in_tmp / "out").glob(".*nerkd-tmp"))
    (in_tmp / "mine").mkdir()
    (in_tmp / "mine/keep.txt").write_text("x")
    for out, message in (("mine", "exists and was not written by nerkd"), (str(path), "is the --input")):
        res = runner.invoke(app, [*args, "-o", out])
        assert res.exit_code == 1 and message in res.stderr and "Traceback" not in res.stderr
    assert (in_tmp / "mine/keep.txt").read_text() == "x" and path.is_file()


def test_redact_on_spark_equals_redact_on_parquet(spark, notes, runner, in_tmp, tiny_bio):
    pytest.importorskip("phonenumbers")
    path, good = notes
    small = in_tmp / "small.parquet"
    pq.write_table(pq.read_table(path).slice(0, 40), small)
    common = ["redact", "-m", str(tiny_bio), "--set", "redact.dates=keep", "-i", str(small)]
    res = runner.invoke(app, [*common, "--engine", "spark", "-o", "spark_out"])
    assert res.exit_code == 0, res.stderr
    assert "40 rows read, 40 tagged, 0 in error; 40 notes pseudonymised" in res.stderr
    res = runner.invoke(app, [*common, "-o", "local.parquet"])
    assert res.exit_code == 0, res.stderr
    local = sorted(pq.read_table(in_tmp / "local.parquet").to_pylist(), key=lambda r: r["note_id"])
    got = sorted((r.asDict(recursive=True) for r in spark.read.parquet(str(in_tmp / "spark_out")).collect()),
                 key=lambda r: r["note_id"])
    assert got == local and any(r["replacements"] for r in got)
