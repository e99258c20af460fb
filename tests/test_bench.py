"""``nerkd bench``: the JSON contract, the table, defaults (no timing assertions)."""

from __future__ import annotations

import itertools
import os
import shutil
import statistics

import orjson
import pytest
import torch

from nerkd.cli.app import app
from nerkd.infer.bench import add_speedups, bench_ticks, disk_bytes
from nerkd.infer.bench import quantile as _quantile
from nerkd.models.ner import NerModel
from nerkd.settings import load_settings
from nerkd.stages.bench import bench_models, bench_texts, name_models
from tests.helpers import DATA

MACHINE_KEYS = {"cpu", "threads", "torch", "device"}
TOP_KEYS = {"machine", "date", "precision", "sentences", "words", "blocks", "load", "warnings", "models"}
MODEL_KEYS = {"name", "path", "parameters", "disk_bytes", "latency_ms_p50", "latency_ms_p95", "words_per_s",
              "peak_mem_mb", "speedup_latency", "speedup_throughput", "latency_ms_p50_min", "latency_ms_p50_max",
              "words_per_s_min", "words_per_s_max", "latency_ms_p50_blocks", "words_per_s_blocks",
              "speedup_latency_min", "speedup_latency_max"}


pytestmark = pytest.mark.usefixtures("one_thread")


def check_contract(doc: dict, names: list[str], sentences: int) -> None:
    assert set(doc) == TOP_KEYS and set(doc["machine"]) == MACHINE_KEYS
    assert doc["sentences"] == sentences and doc["words"] > sentences
    assert [m["name"] for m in doc["models"]] == names
    for m in doc["models"]:
        assert set(m) == MODEL_KEYS
        assert isinstance(m["parameters"], int) and m["parameters"] > 0
        assert m["disk_bytes"] > 0 and m["words_per_s"] > 0 and m["peak_mem_mb"] >= 0
        assert 0 < m["latency_ms_p50"] <= m["latency_ms_p95"]
        check_spread(m, doc["blocks"])
    first = doc["models"][0]
    assert first["speedup_latency"] == 1.0 and first["speedup_throughput"] == 1.0


def check_spread(m: dict, blocks: int) -> None:
    """The spread over blocks: one value per block, min <= median <= max."""
    for key in ("latency_ms_p50", "words_per_s"):
        assert len(m[f"{key}_blocks"]) == blocks
        assert m[f"{key}_min"] == min(m[f"{key}_blocks"]) and m[f"{key}_max"] == max(m[f"{key}_blocks"])
        assert m[f"{key}_min"] <= m[key] <= m[f"{key}_max"]


def settings_for(**extra):
    sets = [f"data.test={DATA / 'test.jsonl'}", "bench.sentences=6", "bench.warmup=1", "bench.batch_size=4"]
    return load_settings(None, sets + [f"{k}={v}" for k, v in extra.items()])


def test_run_bench_contract(tiny_bio, tiny_crf):
    settings = settings_for()
    texts = bench_texts(settings, None, 6)
    assert len(texts) == 6 and "l'AAH" in texts[0]  # elisions glued back when detokenising
    ticks = []
    doc = bench_models(name_models([str(tiny_bio), str(tiny_crf)]), texts, settings, device="cpu", precision="fp32",
                    tick=ticks.append)
    check_contract(doc, ["tiny_bio", "tiny_crf"], 6)
    assert sum(ticks) == bench_ticks(6, 5, 3) * 2 and doc["blocks"] == 15   # bench.rounds: 3 by default
    assert doc["models"][0]["parameters"] == NerModel.load(tiny_bio).num_parameters()
    assert doc["models"][1]["disk_bytes"] == sum(p.stat().st_size for p in tiny_crf.glob("*.safetensors"))
    assert doc["precision"] == "fp32" and doc["machine"]["device"] == "cpu"


def test_int8_keeps_parameter_count(tiny_bio):
    settings = settings_for()
    texts = bench_texts(settings, None, 3)
    doc = bench_models([("q", str(tiny_bio))], texts, settings, device="cpu", precision="int8")
    assert doc["models"][0]["parameters"] == NerModel.load(tiny_bio).num_parameters()


def test_speedups_and_quantiles():
    models = [{"latency_ms_p50": 10.0, "words_per_s": 100.0}, {"latency_ms_p50": 2.5, "words_per_s": 450.0}]
    add_speedups(models)
    assert models[1]["speedup_latency"] == 4.0 and models[1]["speedup_throughput"] == 4.5
    assert models[1]["speedup_latency_min"] == models[1]["speedup_latency_max"] == 4.0


def test_latency_speedup_is_paired_block_by_block():
    """A slow block (the machine busy) slows both models in it: the per-block ratio stays 2, where the ratio of
    the two medians would be 1.5 (the medians fall in different blocks)."""
    models = [{"latency_ms_p50": 20.0, "latency_ms_p50_blocks": [10.0, 20.0, 60.0], "words_per_s": 1.0},
              {"latency_ms_p50": 30.0, "latency_ms_p50_blocks": [5.0, 30.0, 30.0], "words_per_s": 2.0}]  # noisy block 2
    add_speedups(models)
    assert models[1]["speedup_latency"] == 2.0   # ratios 2, 0.667, 2: median 2 (the medians' ratio: 0.667)
    assert (models[1]["speedup_latency_min"], models[1]["speedup_latency_max"]) == (0.667, 2.0)


def test_rounds_time_every_block_again_in_alternating_order(tiny_bio):
    """bench.rounds: each round times every block once more, the models' order reversed every other round."""
    from nerkd.infer.bench import measure

    calls: list[str] = []

    class Fake:
        num_parameters = 1

        def __init__(self, name):
            self.name = name

        def predict(self, texts):
            calls.append(self.name)
            return [[] for _ in texts]

    run = measure([("a", "a"), ("b", "b")], ["un deux", "trois"], device=torch.device("cpu"), warmup=0, blocks=2,
                  rounds=3, load=lambda ref: Fake(ref))
    assert run.blocks == 6 and all(len(m["latency_ms_p50_blocks"]) == 6 for m in run.models)
    timed = calls[2:]   # after each model's untimed batched pass: 3 calls per model and block (see time_block)
    assert timed[0::3] == ["a", "b"] * 2 + ["b", "a"] * 2 + ["a", "b"] * 2
    assert _quantile(list(range(1, 101)), 0.5) == pytest.approx(50.5, abs=0.6)
    assert _quantile(list(range(1, 101)), 0.95) == pytest.approx(95, abs=1.1)
    assert _quantile([3.0], 0.95) == 3.0


def test_names_and_disk_bytes(tiny_bio, tmp_path):
    assert name_models(["a/m", "b/m", "c", "b/m"]) == [("m", "a/m"), ("b/m", "b/m"), ("c", "c"), ("m#2", "b/m")]
    assert disk_bytes(str(tiny_bio)) == (tiny_bio / "model.safetensors").stat().st_size
    assert disk_bytes("no/such-model") == 0


def test_cli_table_and_json(runner, in_tmp, tiny_bio, tiny_crf):
    args = ["bench", "--model", str(tiny_bio), "--model", str(tiny_crf), "--set", f"data.test={DATA / 'test.jsonl'}",
            "--set", "bench.sentences=5", "--set", "bench.warmup=1"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.stderr
    for word in ("tiny_bio", "tiny_crf", "p50 ms", "words/s", "thr. x"):
        assert word in res.stdout
    doc = orjson.loads((in_tmp / "artifacts" / "bench.json").read_bytes())
    check_contract(doc, ["tiny_bio", "tiny_crf"], 5)
    res = runner.invoke(app, [*args, "--json", "out/b.json", "--precision", "int8", "-n", "3"])
    assert res.exit_code == 0, res.stderr
    doc = orjson.loads((in_tmp / "out" / "b.json").read_bytes())
    check_contract(doc, ["tiny_bio", "tiny_crf"], 3)
    assert doc["precision"] == "int8"


def test_cli_input_file(runner, in_tmp, tiny_bio):
    src = in_tmp / "s.txt"
    src.write_text("Mme Lefèvre habite à Lyon .\n\nLe SSIAD de Nantes passe demain .\n", encoding="utf-8")
    res = runner.invoke(app, ["bench", "-m", str(tiny_bio), "--input", str(src), "--json", "b.json"])
    assert res.exit_code == 0, res.stderr
    doc = orjson.loads((in_tmp / "b.json").read_bytes())
    assert doc["sentences"] == 2 and doc["words"] == 13
    assert "only 2 sentences" in res.stderr


def test_cli_defaults(runner, in_tmp, tiny_bio, tiny_crf):
    res = runner.invoke(app, ["bench", "--set", f"data.test={DATA / 'test.jsonl'}"])
    assert res.exit_code == 1 and "no model could be loaded" in res.stderr
    shutil.copytree(tiny_bio, in_tmp / "artifacts" / "student")
    shutil.copytree(tiny_crf, in_tmp / "artifacts" / "final")
    res = runner.invoke(app, ["bench", "--set", f"data.test={DATA / 'test.jsonl'}", "--set", "bench.sentences=3",
                              "--set", "bench.warmup=0"])
    assert res.exit_code == 0, res.stderr
    assert "skipped teacher" in res.stderr  # the hub teacher is not reachable offline
    doc = orjson.loads((in_tmp / "artifacts" / "bench.json").read_bytes())
    check_contract(doc, ["student", "final"], 3)   # the names nerkd report gives them
    res = runner.invoke(app, ["bench", "-m", str(tiny_bio)])
    assert res.exit_code == 1 and "data.test" in res.stderr
    assert "Example:" in (page := runner.invoke(app, ["bench", "--help"]).stdout) and "nerkd bench --" in page


# -- interleaving, spread and load (a fake engine and clock: no timing) ------------------------

class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeEngine:
    """Costs fake seconds: ``base * characters`` for one text, half that per text in a batched pass,
    slower with each batched pass (so the blocks differ)."""

    def __init__(self, name: str, base: float, clock: FakeClock, log: list):
        self.name, self.base, self.clock, self.log = name, base, clock, log
        self.num_parameters = 1000
        self.passes = 0

    def predict(self, texts):
        self.log.append((self.name, list(texts)))
        if len(texts) == 1:
            self.clock.now += self.base * len(texts[0])
        else:
            self.passes += 1
            self.clock.now += self.base * sum(map(len, texts)) / 2 * self.passes
        return [[] for _ in texts]


def fake_run(texts, blocks, bases=None, **kwargs):
    bases = bases or {"A": 1e-3, "B": 4e-3, "C": 2e-3}
    clock, log = FakeClock(), []
    settings = load_settings(None, ["bench.warmup=2", "bench.rounds=1"])
    doc = bench_models([(n, n) for n in bases], texts, settings, device="cpu", precision="fp32", blocks=blocks,
                    load=lambda ref, **kw: FakeEngine(ref, bases[ref], clock, log), clock=clock, **kwargs)
    return doc, log


TEXTS = [f"phrase numéro {i} " + "x" * (3 * i % 11) for i in range(10)]


def test_models_take_turns_block_by_block():
    doc, log = fake_run(TEXTS, blocks=3)
    assert doc["blocks"] == 3
    # loading: each model warms up (2 calls) and runs one batched pass before any timing
    assert [n for n, _ in log[:9]] == ["A"] * 3 + ["B"] * 3 + ["C"] * 3
    timed = log[9:]
    turns = [name for name, _ in itertools.groupby(n for n, _ in timed)]
    assert turns == ["A", "B", "C"] * 3  # round-robin: block k of every model before block k+1
    # each turn: one untimed warm call, batch-1 calls on the block (every 3rd sentence), one pass over all
    per_turn = [list(g) for _, g in itertools.groupby(timed, key=lambda x: x[0])]
    for k, turn in enumerate(per_turn):
        block = TEXTS[k // 3 :: 3]
        assert [t for _, t in turn] == [[block[0]], *[[s] for s in block], TEXTS]


def test_medians_and_spread_over_blocks():
    doc, _ = fake_run(TEXTS, blocks=3)
    words = sum(len(t.split()) for t in TEXTS)
    by_name = {m["name"]: m for m in doc["models"]}
    for name, base in (("A", 1e-3), ("B", 4e-3), ("C", 2e-3)):
        m = by_name[name]
        block_p50 = [1000 * base * statistics.median(len(t) for t in TEXTS[k::3]) for k in range(3)]
        assert m["latency_ms_p50_blocks"] == pytest.approx(block_p50)
        assert m["latency_ms_p50"] == pytest.approx(statistics.median(block_p50))
        assert m["latency_ms_p50_min"] == pytest.approx(min(block_p50))
        assert m["latency_ms_p50_max"] == pytest.approx(max(block_p50))
        # batched passes 2, 3, 4 are timed (pass 1 is the untimed one while loading)
        wps = [words / (base * sum(map(len, TEXTS)) / 2 * p) for p in (2, 3, 4)]
        assert m["words_per_s_blocks"] == pytest.approx(wps, abs=0.06)  # rounded to 0.1
        assert m["words_per_s"] == pytest.approx(wps[1], abs=0.06)
        check_spread(m, 3)
        assert m["latency_ms_p50_min"] < m["latency_ms_p50_max"] and m["words_per_s_min"] < m["words_per_s_max"]
    assert by_name["B"]["speedup_latency"] == pytest.approx(0.25, abs=1e-3)  # A is 4x faster than B
    assert by_name["C"]["speedup_throughput"] == pytest.approx(0.5, abs=1e-3)


def test_blocks_capped_by_sentences_and_skipped_models_keep_ticks():
    from nerkd.errors import ModelLoadError

    clock, log, ticks, skipped = FakeClock(), [], [], []

    def load(ref, **kw):
        if ref == "gone":
            raise ModelLoadError("model gone: no such folder")
        return FakeEngine(ref, 1e-3, clock, log)

    settings = load_settings(None, ["bench.warmup=0", "bench.blocks=7", "bench.rounds=1"])
    doc = bench_models([("gone", "gone"), ("A", "A")], TEXTS[:4], settings, device="cpu", precision="fp32",
                    load=load, clock=clock, tick=ticks.append, on_skip=lambda n, why: skipped.append(n))
    assert doc["blocks"] == 4 and skipped == ["gone"] and [m["name"] for m in doc["models"]] == ["A"]
    assert sum(ticks) == 2 * bench_ticks(4, 7)
    check_spread(doc["models"][0], 4)


@pytest.mark.parametrize("load_avg, warned", [(9.0, True), (0.3, False)])
def test_load_warning(monkeypatch, load_avg, warned):
    import nerkd.infer.bench

    monkeypatch.setattr(nerkd.infer.bench, "cpu_cores", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (load_avg, 0.0, 0.0))
    doc, _ = fake_run(TEXTS, blocks=2)
    assert doc["load"]["cores"] == 2 and doc["load"]["load_avg_1min"] == [load_avg] * 4  # before, then per round
    assert bool(doc["warnings"]) is warned
    if warned:
        assert "load average" in doc["warnings"][0] and "2 cores" in doc["warnings"][0]


def test_load_watch_discounts_the_bench_itself(monkeypatch):
    from nerkd.infer.bench import LoadWatch

    monkeypatch.setattr(os, "getloadavg", lambda: (3.5, 0.0, 0.0))
    busy = LoadWatch(own_threads=2, cores=2)
    busy.sample(busy=True)  # 3.5 runnable, 2 of them this bench: 1.5 others on 2 cores
    assert busy.warning() is None and busy.as_dict()["others_max"] == 1.5
    idle = LoadWatch(own_threads=2, cores=2)
    idle.sample(busy=False)  # before timing: all 3.5 are others
    assert "3.5" in idle.warning()
    monkeypatch.delattr(os, "getloadavg")
    none = LoadWatch(own_threads=1, cores=2)
    none.sample(busy=False)
    assert none.warning() is None and none.as_dict()["load_avg_1min"] == []


def test_cli_prints_and_records_the_load_warning(runner, in_tmp, tiny_bio, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (1000.0, 0.0, 0.0))
    res = runner.invoke(app, ["bench", "-m", str(tiny_bio), "--set", f"data.test={DATA / 'test.jsonl'}",
                              "--set", "bench.sentences=3", "--set", "bench.warmup=0", "--set", "bench.blocks=2",
                              "--set", "bench.rounds=1"])
    assert res.exit_code == 0, res.stderr
    assert "warning:" in res.stderr and "under load" in res.stderr and "under load" not in res.stdout
    assert "p50 min–max" in res.stdout and "2 interleaved blocks" in res.stdout
    doc = orjson.loads((in_tmp / "artifacts" / "bench.json").read_bytes())
    assert len(doc["warnings"]) == 1 and "under load" in doc["warnings"][0]


# -- the bench.json contract and the default models (one place each) -------------------------

def test_written_file_is_the_contract_the_report_reads(tmp_path):
    from nerkd.infer.benchfile import MACHINE_FIELDS, MODEL_FIELDS, TOP_FIELDS, read_bench, write_bench

    assert (set(TOP_FIELDS), set(MACHINE_FIELDS), set(MODEL_FIELDS)) == (TOP_KEYS, MACHINE_KEYS, MODEL_KEYS)
    doc, _ = fake_run(TEXTS, blocks=2)
    assert list(doc) == list(TOP_FIELDS) and all(list(m) == list(MODEL_FIELDS) for m in doc["models"])
    back = read_bench(write_bench(tmp_path / "bench.json", doc))
    assert back.entries == doc["models"] and back.blocks == 2 and back.machine == doc["machine"]
    assert (back.sentences, back.words, back.precision, back.warnings) == (10, doc["words"], "fp32", doc["warnings"])
    del doc["models"][1]["words_per_s_min"], doc["load"]
    with pytest.raises(ValueError, match=r"load, models\[1\]\.words_per_s_min"):
        write_bench(tmp_path / "bad.json", doc)
    assert not (tmp_path / "bad.json").exists()


def test_default_models_follow_the_stage_map(in_tmp, tiny_bio, tiny_crf):
    """The settings' teacher (a hub id kept as given), then each student stage's output holding a model:
    the remembered folder, else the default one; a folder without a model is not offered. Named by the
    stage's folder (teacher, student, pruned, final), by bench and report alike."""
    from nerkd.project import STAGE_DIRS, STUDENT_STAGES, Project, default_models

    def named(settings):
        return [(m.name, m.path) for m in default_models(settings, Project.discover())]

    settings = load_settings(None, [])
    assert named(settings) == [("teacher", settings.teacher.model)]
    art = in_tmp / "artifacts"
    shutil.copytree(tiny_bio, art / STAGE_DIRS["distill"])
    (art / STAGE_DIRS["prune"]).mkdir()                              # a killed run: no model
    shutil.copytree(tiny_crf, in_tmp / "elsewhere")
    Project.discover().remember_output("finetune", in_tmp / "elsewhere")
    shutil.copytree(tiny_crf, art / STAGE_DIRS["finetune"])          # older default folder: not taken
    assert STUDENT_STAGES == ("distill", "prune", "finetune")
    assert named(settings) == [
        ("teacher", settings.teacher.model), ("student", str(art / "student")), ("final", str(in_tmp / "elsewhere"))]
    local = load_settings(None, ["teacher.model=artifacts/student"])    # a local teacher: listed once
    assert named(local) == [("teacher", "artifacts/student"), ("final", str(in_tmp / "elsewhere"))]


def test_bench_and_report_name_models_alike(in_tmp, tiny_bio, tiny_crf, caplog):
    """One naming for both commands (issue #22 item 17): the same --model list gets the same names (a repeated
    folder name: its parent folder), the defaults are the same models under the same names, so a bench.json
    entry and its report row share a name; a default model that cannot load (a hub teacher offline) is
    skipped with a warning by the report as by the bench."""
    from nerkd.project import Project, default_models
    from nerkd.stages.report import _loadable, named_models

    refs = ["a/final", "b/final", "best=c/x", "c/x"]
    assert [s.name for s in named_models(refs)] == [m.name for m in name_models(refs)] == [
        "final", "b/final", "best", "x"]
    art = in_tmp / "artifacts"
    shutil.copytree(tiny_bio, art / "teacher")
    shutil.copytree(tiny_crf, art / "pruned")
    local = load_settings(None, ["teacher.model=artifacts/teacher"])
    project = Project.discover()
    assert [(s.name, s.stage) for s in _loadable(local, project)] == [("teacher", "teacher"), ("pruned", "prune")]
    assert [m.name for m in default_models(local, project)] == ["teacher", "pruned"]
    hub = load_settings(None, ["teacher.model=nerkd-tests/no-such-model"])     # offline in tests: cannot load
    assert [m.name for m in default_models(hub, project)] == ["teacher", "pruned"]
    with caplog.at_level("WARNING", logger="nerkd"):
        assert [s.name for s in _loadable(hub, project)] == ["pruned"]
    assert "skipped teacher: model nerkd-tests/no-such-model (teacher.model)" in caplog.text
