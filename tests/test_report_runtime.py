"""``nerkd report --int8 / --bf16 / --backend onnx``: each model scored in the runtime it will be deployed in,
next to its fp32 row, through the engine of ``nerkd infer`` (issue #11, item 4)."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

from nerkd.cli.app import app
from tests.helpers import DATA

TEST = DATA / "test.jsonl"
LIMIT = 40


def _build(models: list[str], output: Path, infer: dict | None = None, **kwargs):
    """build_report on CPU (the references below are CPU runs, also on a machine with a GPU)."""
    from nerkd.project import Project
    from nerkd.settings import Settings
    from nerkd.stages.report import build_report, named_models

    settings = Settings(data={"limit": LIMIT}, infer={"device": "cpu", **(infer or {})})
    return build_report(settings, Project.discover(output.parent),
                        data=str(TEST), models=named_models(models), bench_files=kwargs.pop("bench", []),
                        output=output, **kwargs)


def _engine_scores(folder: Path, **engine_kwargs) -> tuple[list[list[str]], dict]:
    """What ``nerkd infer`` (its Engine, loaded here) predicts on the gold words, aligned and scored."""
    from nerkd.infer import Engine
    from nerkd.metrics import evaluate
    from nerkd.report.evaluate import align_tags, load_gold
    from nerkd.settings import Settings

    s = Settings(data={"limit": LIMIT})
    gold = load_gold(TEST, s.data, s.labels)
    engine = Engine.load(folder, device="cpu", max_length=s.data.max_length, stride=s.data.stride, **engine_kwargs)
    tags = [t for t, _ in engine.tag_words([x.tokens for x in gold.split.sentences])]
    aligned = [align_tags(t, gold.types, gold.scheme)[0] for t in tags]
    return aligned, evaluate(gold.gold_tags, aligned)


@pytest.fixture(scope="module")
def onnx_bio(tmp_path_factory, tiny_bio) -> Path:
    pytest.importorskip("onnxruntime")
    from nerkd.export import export_onnx

    return export_onnx(tiny_bio, tmp_path_factory.mktemp("exports") / "bio_onnx", exporter="torchscript").output


# -- planning (pure) ---------------------------------------------------------------------------------------

def test_plan_rows_and_references():
    from nerkd.report.records import ModelSpec
    from nerkd.report.runtimes import plan_runs, references

    export = {"format": "nerkd-onnx", "onnx": {"int8": True}, "source": {"weights_sha256": {"model.safetensors": "h"}}}
    specs = [ModelSpec("a", "A"), ModelSpec("b", "B"), ModelSpec("b_onnx", "O", export=export)]
    runs, notes = plan_runs(specs, ["int8", "bf16"], device="cuda", precision="fp32", bf16=False, int8_of=["a"])
    assert [(r.name, r.runtime.device) for r in runs] == [
        ("a", "cuda"), ("a (int8)", "cpu"), ("b", "cuda"), ("b (int8)", "cpu"), ("b_onnx (onnx int8)", "cpu")]
    assert notes[0] == "bf16 rows skipped: this GPU has no bf16 support"
    assert "b_onnx runs as exported" in notes[1]
    weights = {"A": {"model.safetensors": "x"}, "B": {"model.safetensors": "h"}}
    assert references(runs, weights.__getitem__) == [None, 0, None, 2, 2]   # the export: B's weights
    weights["B"] = {"model.safetensors": "retrained since"}
    assert references(runs, weights.__getitem__)[-1] is None
    # an int8 bench entry alone adds the int8 row; no variant, no note
    runs, notes = plan_runs(specs[:2], [], device="cpu", precision="bf16", int8_of=["b"])
    assert [r.name for r in runs] == ["a", "b", "b (int8)"] and not notes
    assert runs[0].runtime.label == "bf16" and references(runs, weights.__getitem__) == [None, None, None]


# -- engine -----------------------------------------------------------------------------------------------

def test_int8_row_is_what_infer_int8_gives(tiny_bio, tmp_path, monkeypatch):
    import nerkd.infer.engine as engine_mod

    calls = []
    real = engine_mod.quantize_int8
    monkeypatch.setattr(engine_mod, "quantize_int8", lambda m: calls.append(1) or real(m))
    rep = _build([f"student={tiny_bio}"], tmp_path / "r", variants=["int8"])
    fp32, int8 = rep.rows
    assert [r.name for r in rep.rows] == ["student", "student (int8)"] and len(calls) == 1
    assert (fp32.score.runtime.label, int8.score.runtime.label, int8.score.runtime.device) == ("fp32", "int8", "cpu")
    preds, scores = _engine_scores(tiny_bio, int8=True)
    assert int8.score.predictions == preds and int8.score.scores == scores
    ref_preds, _ = _engine_scores(tiny_bio)
    assert fp32.score.predictions == ref_preds
    assert int8.score.predictions != fp32.score.predictions   # computed, not copied: int8 changes some tags
    assert int8.reference == "student" and fp32.reference is None
    assert int8.f1_delta == pytest.approx(int8.score.scores["f1"] - fp32.score.scores["f1"], abs=0)
    assert any(n.startswith("int8 rows: the model quantised at load time") for n in rep.notes)


def test_bf16_row_and_fp32_reference(tiny_bio, tmp_path):
    """infer.precision bf16: without comparison the row is bf16, as before; with --bf16 the model's own
    row is the fp32 reference (said in a note) and the bf16 row is infer's bf16 (CPU autocast)."""
    plain = _build([str(tiny_bio)], tmp_path / "plain", {"precision": "bf16"})
    assert [r.score.runtime.label for r in plain.rows] == ["bf16"] and not plain.compares
    rep = _build([str(tiny_bio)], tmp_path / "r", {"precision": "bf16"}, variants=["bf16"])
    assert [(r.name, r.score.runtime.label) for r in rep.rows] == [("tiny_bio", "fp32"), ("tiny_bio (bf16)", "bf16")]
    assert any("own rows scored in fp32 (infer.precision gives bf16 on cpu)" in n for n in rep.notes)
    assert rep.rows[1].score.predictions == _engine_scores(tiny_bio, precision="bf16")[0]
    assert plain.rows[0].score.scores == rep.rows[1].score.scores


def test_bf16_bench_figures_go_to_the_bf16_row_only(tiny_bio, tmp_path):
    """A bf16 bench file's figures belong to the bf16 row: never to the fp32 row; without a bf16 row a note
    says where they went."""
    fig = {"parameters": 1, "disk_bytes": 1, "latency_ms_p95": 1.0, "peak_mem_mb": 1.0, "speedup_latency": 1.0,
           "speedup_throughput": 1.0}
    fp32, bf16 = tmp_path / "bench.json", tmp_path / "bench_bf16.json"
    fp32.write_bytes(orjson.dumps({"precision": "fp32", "models": [
        {"name": "tiny_bio", "path": str(tiny_bio), "latency_ms_p50": 3.0, "words_per_s": 30.0, **fig}]}))
    bf16.write_bytes(orjson.dumps({"precision": "bf16", "models": [
        {"name": "tiny_bio", "path": str(tiny_bio), "latency_ms_p50": 7.0, "words_per_s": 70.0, **fig}]}))
    only_bf16 = _build([str(tiny_bio)], tmp_path / "a", bench=[bf16])
    assert only_bf16.rows[0].bench is None
    assert any("bf16 bench figures of tiny_bio not shown" in n for n in only_bf16.notes), only_bf16.notes
    both = _build([str(tiny_bio)], tmp_path / "b", bench=[bf16, fp32], variants=["bf16"])
    assert [(r.score.runtime.label, r.bench["latency_ms_p50"]) for r in both.rows] == [("fp32", 3.0), ("bf16", 7.0)]
    assert not any("not shown" in n for n in both.notes)
    plain = _build([str(tiny_bio)], tmp_path / "c", {"precision": "bf16"}, bench=[fp32, bf16])
    assert [(r.score.runtime.label, r.bench["latency_ms_p50"]) for r in plain.rows] == [("bf16", 7.0)]


def test_onnx_export_scores_as_torch_fp32(tiny_bio, onnx_bio, tmp_path):
    bench = tmp_path / "bench.json"
    fig = {"parameters": 1, "disk_bytes": 1, "latency_ms_p50": 1.0, "latency_ms_p95": 1.0, "words_per_s": 5.0,
           "peak_mem_mb": 1.0, "speedup_latency": 1.0, "speedup_throughput": 1.0}
    bench.write_bytes(orjson.dumps({"precision": "fp32", "models": [
        {"name": "bio_onnx (onnx int8)", "path": str(onnx_bio), **fig}]}))   # int8 by name: still the export's
    rep = _build([f"student={tiny_bio}", str(onnx_bio)], tmp_path / "r", bench=[bench])
    torch_row, onnx_row = rep.rows
    assert [r.name for r in rep.rows] == ["student", "bio_onnx (onnx)"] and rep.compares
    assert onnx_row.score.runtime.backend == "onnx" and onnx_row.bench["words_per_s"] == 5.0
    assert onnx_row.score.predictions == torch_row.score.predictions
    assert onnx_row.score.scores["f1"] == torch_row.score.scores["f1"]
    assert onnx_row.reference == "student" and onnx_row.f1_delta == 0.0
    assert onnx_row.compression["disk_bytes"] == (onnx_bio / "model.onnx").stat().st_size   # its graph's size
    from nerkd.report.render import write_report

    files = write_report(rep)
    data = orjson.loads(files["json"].read_bytes())
    assert [m["runtime"]["label"] for m in data["models"]] == ["fp32", "onnx"]
    assert data["models"][1]["runtime"]["backend"] == "onnx" and data["models"][1]["f1_delta"] == 0.0
    md = files["md"].read_text(encoding="utf-8")
    row = next(line for line in md.splitlines() if line.startswith("| bio_onnx (onnx) | onnx |"))
    assert row.endswith(" | 0.00 |")
    # alone, the export has no reference: said, no difference shown
    alone = _build([str(onnx_bio)], tmp_path / "alone")
    assert alone.rows[0].f1_delta is None
    assert any(n.startswith("bio_onnx (onnx): exported from") and "not a model of this report" in n
               for n in alone.notes)


def test_onnx_reference_is_the_source_weights(tiny_bio, onnx_bio, tmp_path):
    """A copy of the source folder is the export's reference; once its weights change (retrained since the
    export), it is not, also in the same process (weights hashed per report, not cached across reports)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    copy = shutil.copytree(tiny_bio, tmp_path / "student")
    assert _build([str(copy), str(onnx_bio)], tmp_path / "r1").rows[1].reference == "student"
    weights = load_file(copy / "model.safetensors")
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] = weights[name] + torch.ones_like(weights[name])
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    (copy / ".nerkd-run.json").unlink(missing_ok=True)   # weights changed outside nerkd: no recorded hash to check
    rep = _build([str(copy), str(onnx_bio)], tmp_path / "r2")
    assert rep.rows[1].reference is None and rep.rows[1].f1_delta is None


# -- CLI --------------------------------------------------------------------------------------------------

def test_cli_int8_end_to_end(in_tmp, runner, tiny_bio):
    out = in_tmp / "r"
    result = runner.invoke(app, ["report", "--data", str(TEST), "-m", f"final={tiny_bio}", "--int8",
                                 "--set", "data.limit=10", "--set", "infer.device=cpu", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "Δ F1 vs fp32" in result.stdout and "final (int8)" in result.stdout and "runtime" in result.stdout
    data = orjson.loads((out / "report.json").read_bytes())
    rows = {m["name"]: m for m in data["models"]}
    assert rows["final"]["runtime"] == {"label": "fp32", "backend": "torch", "precision": "fp32", "int8": False,
                                        "device": "cpu"}
    assert rows["final (int8)"]["runtime"]["int8"] is True and rows["final (int8)"]["reference"] == "final"
    delta = rows["final (int8)"]["f1_delta"]
    assert delta == rows["final (int8)"]["scores"]["f1"] - rows["final"]["scores"]["f1"]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.count("| final (int8) | int8 |") == 1 and "Δ F1 vs fp32" in (out / "report.html").read_text("utf-8")


def test_help_names_the_onnx_extra(runner, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(app, ["report", "--help"])
    assert "(pip install 'nerkd[onnx]')" in result.output   # not eaten as rich markup
    assert "--int8" in result.output and "--bf16" in result.output


def test_cli_wrong_runtime_combinations_are_one_line(in_tmp, runner, tiny_bio, onnx_bio, monkeypatch):
    base = ["report", "--data", str(TEST), "--set", "data.limit=5", "--output", str(in_tmp / "r")]
    cases = [(["-m", str(tiny_bio), "--backend", "onnx"], "--backend onnx: model tiny_bio"),
             (["-m", str(onnx_bio), "--backend", "torch"], "is an ONNX export")]
    for args, message in cases:
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 1 and message in result.stderr, result.output
        assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) <= 3
    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # import onnxruntime -> ImportError
    result = runner.invoke(app, [*base, "-m", str(tiny_bio), "-m", str(onnx_bio)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: nerkd report on an ONNX export needs the onnx extra") and \
        "pip install 'nerkd[onnx]'" in last
