"""``nerkd bench``: the JSON contract, the table, defaults (no timing assertions)."""

from __future__ import annotations

import shutil

import orjson
import pytest

from nerkd.bench import _quantile, add_speedups, bench_texts, disk_bytes, name_models, run_bench
from nerkd.cli.app import app
from nerkd.models.ner import NerModel
from nerkd.settings import load_settings
from tests.conftest import DATA

MACHINE_KEYS = {"cpu", "threads", "torch", "device"}
TOP_KEYS = {"machine", "date", "precision", "sentences", "words", "models"}
MODEL_KEYS = {"name", "path", "parameters", "disk_bytes", "latency_ms_p50", "latency_ms_p95", "words_per_s",
              "peak_mem_mb", "speedup_latency", "speedup_throughput"}


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
    first = doc["models"][0]
    assert first["speedup_latency"] == 1.0 and first["speedup_throughput"] == 1.0


def settings_for(**extra):
    sets = [f"data.test={DATA / 'test.jsonl'}", "bench.sentences=6", "bench.warmup=1", "bench.batch_size=4"]
    return load_settings(None, sets + [f"{k}={v}" for k, v in extra.items()])


def test_run_bench_contract(tiny_bio, tiny_crf):
    settings = settings_for()
    texts = bench_texts(settings, None, 6)
    assert len(texts) == 6 and "l'AAH" in texts[0]  # elisions glued back when detokenising
    ticks = []
    doc = run_bench(name_models([str(tiny_bio), str(tiny_crf)]), texts, settings, device="cpu", precision="fp32",
                    tick=ticks.append)
    check_contract(doc, ["tiny_bio", "tiny_crf"], 6)
    assert sum(ticks) == 2 * 6 * 2
    assert doc["models"][0]["parameters"] == NerModel.load(tiny_bio).num_parameters()
    assert doc["models"][1]["disk_bytes"] == sum(p.stat().st_size for p in tiny_crf.glob("*.safetensors"))
    assert doc["precision"] == "fp32" and doc["machine"]["device"] == "cpu"


def test_int8_keeps_parameter_count(tiny_bio):
    settings = settings_for()
    texts = bench_texts(settings, None, 3)
    doc = run_bench([("q", str(tiny_bio))], texts, settings, device="cpu", precision="int8")
    assert doc["models"][0]["parameters"] == NerModel.load(tiny_bio).num_parameters()


def test_speedups_and_quantiles():
    models = [{"latency_ms_p50": 10.0, "words_per_s": 100.0}, {"latency_ms_p50": 2.5, "words_per_s": 450.0}]
    add_speedups(models)
    assert models[1]["speedup_latency"] == 4.0 and models[1]["speedup_throughput"] == 4.5
    assert _quantile(list(range(1, 101)), 0.5) == pytest.approx(50.5, abs=0.6)
    assert _quantile(list(range(1, 101)), 0.95) == pytest.approx(95, abs=1.1)
    assert _quantile([3.0], 0.95) == 3.0


def test_names_and_disk_bytes(tiny_bio, tmp_path):
    assert name_models(["a/m", "b/m", "c"]) == [("m", "a/m"), ("m#2", "b/m"), ("c", "c")]
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
    check_contract(doc, ["distill", "finetune"], 3)
    res = runner.invoke(app, ["bench", "-m", str(tiny_bio)])
    assert res.exit_code == 1 and "data.test" in res.stderr
    assert "Example: nerkd bench" in runner.invoke(app, ["bench", "--help"]).stdout
