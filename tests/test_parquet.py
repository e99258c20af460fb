"""``nerkd infer`` (and ``redact``) on Parquet, one machine: round trip, row-group streaming, bad rows, errors (#23)."""

from __future__ import annotations

import orjson
import pytest

from nerkd.cli.app import app
from tests.helpers import sample_texts

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

pytestmark = pytest.mark.usefixtures("one_thread")


def notes_table(texts, ids=None, *, id_name="note_id", text_name="note_text", text_type=None):
    ids = list(range(1, len(texts) + 1)) if ids is None else ids
    return pa.table({id_name: ids, text_name: pa.array(texts, text_type or pa.string())})


def invalid_utf8(texts: list[bytes]) -> pa.Array:
    """A string array holding bytes that are not UTF-8 (pyarrow refuses to build one from Python strings):
    what a Parquet file written by another tool may hold, e.g. a UTF-8-encoded lone surrogate."""
    offsets, at = [0], 0
    for t in texts:
        at += len(t)
        offsets.append(at)
    return pa.Array.from_buffers(pa.string(), len(texts), [None, pa.py_buffer(pa.array(offsets, pa.int32())
                                                                                .buffers()[1]),
                                                           pa.py_buffer(b"".join(texts))])


def infer(runner, *args):
    return runner.invoke(app, ["infer", *args])


def jsonl_entities(runner, tmp, model, texts) -> list[list[dict]]:
    """What ``nerkd infer`` writes as JSONL for ``texts``: the reference every table output must equal."""
    src = tmp / "ref.jsonl"
    src.write_bytes(b"".join(orjson.dumps({"text": t}) + b"\n" for t in texts))
    res = infer(runner, "-m", str(model), "-i", str(src), "-o", str(tmp / "ref.out.jsonl"), "--threads", "1")
    assert res.exit_code == 0, res.stderr
    return [orjson.loads(x)["entities"] for x in (tmp / "ref.out.jsonl").read_bytes().splitlines()]


def rows_by_note(table) -> dict:
    out: dict = {}
    for r in table.to_pylist():
        if r["error"] is None:
            out.setdefault(r["note_id"], []).append(
                {"start": r["start_char"], "end": r["end_char"], "label": r["label"], "text": r["text"],
                 "score": r["score"]})
    return out


def test_round_trip_equals_jsonl_infer(runner, in_tmp, tiny_bio):
    from nerkd.infer.formats import model_version

    texts = sample_texts()[:60]
    ids = [f"n-{i:03d}" for i in range(len(texts))]
    pq.write_table(notes_table(texts, ids), in_tmp / "notes.parquet", row_group_size=16)
    res = infer(runner, "-m", str(tiny_bio), "-i", "notes.parquet", "-o", "out/ents.parquet", "--threads", "1")
    assert res.exit_code == 0, res.stderr
    assert "60 rows read, 60 tagged, 0 in error" in res.stderr and "row groups to out/ents.parquet" in res.stderr
    table = pq.read_table(in_tmp / "out/ents.parquet")
    assert table.schema.names == ["note_id", "start_char", "end_char", "label", "text", "score", "model", "error"]
    assert table.schema.field("note_id").type == pa.string() and table.schema.field("start_char").type == pa.int32()
    assert set(table.column("model").to_pylist()) == {model_version(tiny_bio)}
    ref = jsonl_entities(runner, in_tmp, tiny_bio, texts)
    got = rows_by_note(table)
    assert sum(len(e) for e in ref) == table.num_rows > 0
    assert [got.get(i, []) for i in ids] == ref          # row for row, in the note's order
    assert not list(in_tmp.glob("out/.*"))               # no temporary file left


def test_id_and_text_columns_detected_or_named(runner, in_tmp, tiny_bio):
    pq.write_table(notes_table(["Mme Lefèvre à Lyon"], [7], id_name="id", text_name="text"), in_tmp / "a.parquet")
    res = infer(runner, "-m", str(tiny_bio), "-i", "a.parquet", "-o", "a.out.parquet")
    assert res.exit_code == 0, res.stderr and "(id id, text text)" in res.stderr
    pq.write_table(notes_table(["Lyon"], [1], id_name="doc", text_name="body"), in_tmp / "b.parquet")
    res = infer(runner, "-m", str(tiny_bio), "-i", "b.parquet", "-o", "b.out.parquet")
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    assert ("b.parquet: no id column (note_id or id); columns are doc, body (give --id-column)"
            in " ".join(res.stderr.split()))
    res = infer(runner, "-m", str(tiny_bio), "-i", "b.parquet", "-o", "b.out.parquet", "--id-column", "doc",
                "--text-column", "body")
    assert res.exit_code == 0, res.stderr
    assert pq.read_table(in_tmp / "b.out.parquet").column("note_id").to_pylist()[0] == 1


def test_parquet_in_needs_parquet_out_and_no_format(runner, in_tmp, tiny_bio):
    pq.write_table(notes_table(["Lyon"]), in_tmp / "n.parquet")
    for args, message in ((["-o", "out.jsonl"], "Parquet in, Parquet out"),
                          (["-o", "o.parquet", "--format", "doccano"], "--format doccano: a Parquet output")):
        res = infer(runner, "-m", str(tiny_bio), "-i", "n.parquet", *args)
        assert res.exit_code == 1 and message in res.stderr and "Traceback" not in res.stderr
    (in_tmp / "bad.parquet").write_bytes(b"not parquet at all")
    res = infer(runner, "-m", str(tiny_bio), "-i", "bad.parquet", "-o", "o.parquet")
    assert res.exit_code == 1 and "bad.parquet: not a readable Parquet file" in res.stderr


def test_row_groups_are_streamed_in_bounded_batches(in_tmp, tiny_bio, monkeypatch):
    from nerkd.settings import Settings
    from nerkd.stages.parquet import TableJob, run_parquet
    from nerkd.tables import NoteTagger

    texts = (sample_texts() * 2)[:95]
    pq.write_table(notes_table(texts), in_tmp / "n.parquet", row_group_size=10)
    sizes = []
    tag = NoteTagger.tag

    def spy(self, rows):
        sizes.append(len(rows))
        return tag(self, rows)

    monkeypatch.setattr(NoteTagger, "tag", spy)
    read = []
    batches = pq.ParquetFile.iter_batches

    def reader(self, *args, **kwargs):   # the whole file is never read at once
        for batch in batches(self, *args, **kwargs):
            read.append(batch.num_rows)
            assert sum(read) - sum(sizes) <= 8    # read ahead by one batch at most
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", reader)
    result = run_parquet(tiny_bio, TableJob(in_tmp / "n.parquet", in_tmp / "o.parquet", batch_rows=8,
                                            show_progress=False), Settings())
    assert sizes == [8] * 11 + [7] and read == sizes and result.batches == 12
    out = pq.ParquetFile(in_tmp / "o.parquet")
    assert out.metadata.num_row_groups == 12 and out.metadata.num_rows == result.written
    assert (result.counts.rows, result.counts.tagged, result.counts.errors) == (95, 95, 0)


def test_bad_rows_become_error_rows_never_a_crash(runner, in_tmp, tiny_bio):
    ok = "Mme Lefèvre quitte le CHU de Lyon"
    import pyarrow.compute as pc

    texts = invalid_utf8([ok.encode(), b"", b"a \xed\xa0\x80 b", ok.encode(), b"\xff"])   # 3: a UTF-8 surrogate
    texts = pc.if_else(pa.array([False, True, False, False, False]), pa.scalar(None, pa.string()), texts)
    pq.write_table(pa.table({"note_id": [1, 2, 3, 4, 5], "note_text": texts}), in_tmp / "bad.parquet")
    res = infer(runner, "-m", str(tiny_bio), "-i", "bad.parquet", "-o", "bad.out.parquet")
    assert res.exit_code == 0, res.stderr
    assert "5 rows read, 2 tagged, 3 in error" in res.stderr
    out = pq.read_table(in_tmp / "bad.out.parquet").to_pylist()
    errors = {r["note_id"]: r["error"] for r in out if r["error"] is not None}
    assert errors == {2: "text is null", 3: "text is not valid UTF-8 (invalid continuation byte at byte 2)",
                      5: "text is not valid UTF-8 (invalid start byte at byte 0)"}
    assert all(r["start_char"] is None and r["label"] is None for r in out if r["error"] is not None)
    assert rows_by_note(pq.read_table(in_tmp / "bad.out.parquet"))[1] == jsonl_entities(runner, in_tmp, tiny_bio,
                                                                                         [ok])[0]
    # a text column of another type: every row is an error row, named by type
    pq.write_table(notes_table([1, None], text_type=pa.int64()), in_tmp / "ints.parquet")
    res = infer(runner, "-m", str(tiny_bio), "-i", "ints.parquet", "-o", "ints.out.parquet")
    assert res.exit_code == 0 and "2 rows read, 0 tagged, 2 in error" in res.stderr
    assert [r["error"] for r in pq.read_table(in_tmp / "ints.out.parquet").to_pylist()] == [
        "text is not a string (int64)", "text is null"]


def test_text_value_judges_every_kind_of_value():
    from nerkd.data.parquet import text_value

    assert text_value("Lyon") == ("Lyon", None) and text_value("") == ("", None)
    assert text_value(None) == ("", "text is null") and text_value(float("nan"))[1] == "text is null"
    assert text_value(b"Lyon", utf8=True) == ("Lyon", None)
    assert text_value(b"Lyon")[1] == "text is not a string (bytes)"
    assert text_value(12, kind="int64")[1] == "text is not a string (int64)"
    assert text_value("a\ud800b")[1] == "text is not valid Unicode (a lone surrogate at character 1)"


def test_engine_failure_costs_only_the_failing_note(tiny_bio, monkeypatch):
    from nerkd.data.parquet import NoteRow
    from nerkd.settings import Settings
    from nerkd.tables import NoteTagger

    tagger = NoteTagger.load(tiny_bio, Settings(), version="m")
    run = tagger.engine.run

    def fragile(docs, *args, **kwargs):
        docs = list(docs)
        if any("BOOM" in d.text for d in docs):
            raise RuntimeError("the text was: BOOM")
        return run(docs, *args, **kwargs)

    monkeypatch.setattr(tagger.engine, "run", fragile)
    rows = [NoteRow(1, "a", "Mme Lefèvre à Lyon"), NoteRow(2, "b", "BOOM à Paris"), NoteRow(3, "c", "", "text is null")]
    cols = tagger.tag(rows)
    errors = {i: e for i, e in zip(cols["note_id"], cols["error"], strict=True) if e is not None}
    assert errors == {"b": "engine failed (RuntimeError)", "c": "text is null"}   # never the note's text
    assert cols["note_id"].count("a") == len(tagger.engine.predict(["Mme Lefèvre à Lyon"])[0]) > 0
    assert (tagger.counts.rows, tagger.counts.tagged, tagger.counts.errors) == (3, 1, 2)


def test_a_failed_run_leaves_no_output(in_tmp, tiny_bio, monkeypatch):
    from nerkd.settings import Settings
    from nerkd.stages.parquet import TableJob, run_parquet
    from nerkd.tables import NoteTagger

    pq.write_table(notes_table(sample_texts()[:20]), in_tmp / "n.parquet")
    tag = NoteTagger.tag
    calls = []

    def dies(self, rows):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return tag(self, rows)

    monkeypatch.setattr(NoteTagger, "tag", dies)
    with pytest.raises(KeyboardInterrupt):
        run_parquet(tiny_bio, TableJob(in_tmp / "n.parquet", in_tmp / "o.parquet", batch_rows=8, show_progress=False),
                    Settings())
    assert sorted(p.name for p in in_tmp.iterdir()) == ["n.parquet"]


def test_redact_on_parquet_equals_jsonl_redact(runner, in_tmp, tiny_bio):
    pytest.importorskip("phonenumbers")
    texts = [*sample_texts()[:12], "Appeler Mme Lefèvre au 06 12 34 56 78 le 3 mars 2024.", ""]
    pq.write_table(notes_table(texts, list(range(100, 100 + len(texts)))), in_tmp / "n.parquet")
    common = ["-m", str(tiny_bio), "--set", "redact.dates=keep"]
    res = runner.invoke(app, ["redact", *common, "-i", "n.parquet", "-o", "r.parquet"])
    assert res.exit_code == 0, res.stderr
    assert f"{len(texts)} rows read, {len(texts)} tagged, 0 in error" in res.stderr
    table = pq.read_table(in_tmp / "r.parquet")
    assert table.schema.names == ["note_id", "note_text", "replacements", "error"]
    assert str(table.schema.field("replacements").type) == ("list<element: struct<start: int32, end: int32, "
                                                              "label: string, source: string>>")
    (in_tmp / "n.jsonl").write_bytes(b"".join(orjson.dumps({"text": t}) + b"\n" for t in texts))
    res = runner.invoke(app, ["redact", *common, "-i", "n.jsonl", "-o", "r.jsonl"])
    assert res.exit_code == 0, res.stderr
    ref = [orjson.loads(x) for x in (in_tmp / "r.jsonl").read_bytes().splitlines()]
    rows = table.to_pylist()
    assert [r["note_id"] for r in rows] == list(range(100, 100 + len(texts)))
    assert [(r["note_text"], r["replacements"]) for r in rows] == [(x["text"], x["replacements"]) for x in ref]
    assert any(r["source"] == "rule" for r in rows[-2]["replacements"])


def test_missing_pyarrow_is_one_line(in_tmp, monkeypatch):
    import sys

    from nerkd.data.parquet import ParquetNotes
    from nerkd.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingExtraError, match=r"needs the parquet extra \(pyarrow missing\): pip install "
                                                r"'nerkd\[parquet\]'"):
        ParquetNotes(in_tmp / "n.parquet")


def test_missing_spark_extra_is_one_line(monkeypatch):
    import sys

    from nerkd.errors import MissingExtraError
    from nerkd.spark import spark_session

    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(MissingExtraError, match=r"Spark needs the spark extra \(pyspark missing\): pip install "
                                                r"'nerkd\[spark\]'"):
        spark_session("local[1]")
