"""The infer stage as a library call: streams in and out, progress through nerkd.log, a result as data (#13)."""

from __future__ import annotations

import io

import orjson
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def test_run_infer_on_streams_returns_what_it_did(tiny_bio, monkeypatch):
    from nerkd import log
    from nerkd.settings import InferSettings
    from nerkd.stages.infer import InferJob, run_infer

    events = []

    class Spy(log.NullProgress):
        def add_task(self, description, total=None, **fields):
            events.append((description, total, fields))
            return 7

        def update(self, task, **kwargs):
            events.append((task, kwargs["advance"]))

    monkeypatch.setattr(log, "_factory", lambda transient=False: Spy())
    long = " ".join(["Madame Pham quitte l'EHPAD de Saint-Étienne ."] * 20)
    data = f"Mme Lefèvre à Lyon\n\n{long}\n".encode()
    out = io.BytesIO()
    job = InferJob(io.BytesIO(data), out, source_name="mem", out_format="doccano", chunk_size=2)
    result = run_infer(tiny_bio, job, InferSettings(device="cpu"), max_length=32, stride=8)

    assert (result.stats.docs, result.stats.empty, result.tasks, result.skipped_empty) == (3, 1, 2, 1)
    assert result.written == 2 and result.target == "<stdout>" and result.model == str(tiny_bio)
    assert [orjson.loads(x)["text"] for x in out.getvalue().splitlines()] == ["Mme Lefèvre à Lyon", long]
    assert result.encoded.split_sentences == 1
    assert [level for level, _ in result.notes] == ["info"] and "1 long texts split" in result.notes[0][1]
    assert result.warnings == []
    assert events[0] == ("infer", None, {"info": "", "percent": True})   # a stream: size unknown
    assert sum(advance for task, advance in events[1:]) == len(data) and {t for t, _ in events[1:]} == {7}


def test_run_infer_checks_paths_before_loading(in_tmp):
    from pathlib import Path

    from nerkd.errors import NerkdError
    from nerkd.settings import InferSettings
    from nerkd.stages.infer import InferJob, run_infer

    with pytest.raises(NerkdError, match="--input nope.txt: no such file"):
        run_infer("no/such/model", InferJob(Path("nope.txt"), io.BytesIO()), InferSettings(), max_length=32,
                  stride=8)


def test_progress_counts_or_shows_a_percentage():
    from nerkd.ui import progress

    bar = progress()
    steps = bar.add_task("steps", total=10, info="")
    size = bar.add_task("bytes", total=200, info="", percent=True)
    bar.update(steps, completed=3)
    bar.update(size, completed=50)
    column = bar.columns[2]
    assert str(column.render(bar.tasks[steps])).strip() == "3/10"
    assert str(column.render(bar.tasks[size])).strip() == "25%"
