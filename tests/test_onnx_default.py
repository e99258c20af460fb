"""The ONNX default (issue #21 item 2): a model folder with a verified fp32 ONNX export of its weights runs on
ONNX Runtime on a CPU (``infer.backend: auto``), with the same answers as torch; otherwise torch, with one line
saying why; ``export.after_train: onnx`` writes that export at the end of ``finetune`` and ``prune``."""

from __future__ import annotations

import logging
import shutil
import sys

import orjson
import pytest
import torch

from nerkd.cli.app import app
from nerkd.infer import BackendChoice, choose_backend
from nerkd.infer.backend import weight_hashes
from nerkd.settings import InferSettings, load_settings
from tests.helpers import DATA, sample_texts

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

CHECK = sample_texts()[:8]
SMALL = ["--set", "data.max_length=48", "--set", "data.stride=8", "--threads", "1"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx_default")


@pytest.fixture(scope="module")
def model(root, tiny_bio):
    """A copy of the tiny model (never an export beside the session fixture, which other tests load)."""
    return shutil.copytree(tiny_bio, root / "tiny")


@pytest.fixture(scope="module")
def export(model):
    """``<model>_onnx``: what ``nerkd export --format onnx`` writes by default for a model under the artifacts."""
    from nerkd.export import export_onnx

    return export_onnx(model, model.with_name("tiny_onnx"), exporter="torchscript", texts=CHECK).output


def _infer(runner, folder, *extra):
    texts = (DATA / "texts.txt").read_text(encoding="utf-8")
    res = runner.invoke(app, ["infer", "--model", str(folder), "--no-progress", *SMALL, *extra], input=texts)
    assert res.exit_code == 0, res.output
    return res, [orjson.loads(x) for x in res.stdout.splitlines()]


def _same_entities(a: list[dict], b: list[dict]) -> None:
    """Every entity equal (span, label, text); scores within float noise."""
    assert [[(e["start"], e["end"], e["label"], e["text"]) for e in x["entities"]] for x in a] == \
        [[(e["start"], e["end"], e["label"], e["text"]) for e in x["entities"]] for x in b]
    assert all(abs(e["score"] - f["score"]) <= 2e-4 for x, y in zip(a, b, strict=True)
               for e, f in zip(x["entities"], y["entities"], strict=True))


# -- the decision ---------------------------------------------------------------------------------

def test_a_verified_export_beside_the_model_is_the_default(model, export):
    choice = choose_backend(model, InferSettings())
    digest = weight_hashes(model)["model.safetensors"]
    assert choice.backend == "onnx" and choice.ref == export and choice.export == export
    assert choice.line == (f"backend onnx: verified export {export} of these weights (sha256 {digest[:12]}…); "
                           "--backend torch to use torch")
    assert choose_backend(model, InferSettings(backend="torch")) == BackendChoice("torch", model)   # as asked
    assert choose_backend(export, InferSettings()) == BackendChoice("onnx", export)   # an export given itself


def test_no_export_means_torch_with_a_line(tiny_bio):
    choice = choose_backend(tiny_bio, InferSettings())
    assert choice.backend == "torch" and choice.ref == tiny_bio and choice.export is None
    assert choice.line.startswith(f"backend torch: no ONNX export in {tiny_bio / 'onnx'} or ")
    assert "nerkd export --format onnx" in choice.line


def test_weights_changed_after_the_export_mean_torch(model, export, root):
    from nerkd.models.ner import NerModel, load_tokenizer

    changed = shutil.copytree(model, root / "changed")
    shutil.copytree(export, root / "changed_onnx")
    assert choose_backend(changed, InferSettings()).backend == "onnx"      # the copies still match
    retrained = NerModel.load(changed)
    with torch.no_grad():
        next(retrained.parameters()).add_(0.01)
    retrained.save(changed, tokenizer=load_tokenizer(changed))            # recorded hashes updated: it loads
    choice = choose_backend(changed, InferSettings())
    assert choice.backend == "torch" and choice.ref == changed
    assert choice.line.startswith(f"backend torch: the ONNX export {root / 'changed_onnx'} is of other weights")


def test_an_int8_export_is_not_the_default(model, root):
    from nerkd.export import export_onnx

    quant = shutil.copytree(model, root / "quant")
    export_onnx(quant, root / "quant_onnx_int8", int8=True, exporter="torchscript", texts=CHECK[:2])
    choice = choose_backend(quant, InferSettings())
    assert choice.backend == "torch"
    assert choice.line.startswith(f"backend torch: the ONNX export {root / 'quant_onnx_int8'} is int8")


def test_without_onnxruntime_torch_runs(model, export, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)      # import onnxruntime fails
    choice = choose_backend(model, InferSettings())
    assert choice.backend == "torch" and choice.line.startswith("backend torch: onnxruntime is not installed")


@pytest.mark.parametrize(("setting", "why"), [({"int8": True}, "int8 asks for torch's dynamic int8"),
                                              ({"compile": True}, "compile"), ({"precision": "bf16"}, "bf16")])
def test_runs_onnx_cannot_do_as_torch_keep_torch(model, export, setting, why):
    choice = choose_backend(model, InferSettings(**setting))
    assert choice.backend == "torch" and choice.line.startswith("backend torch:") and why in choice.line


def test_a_gpu_keeps_torch(model, export, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    choice = choose_backend(model, InferSettings())
    assert choice.backend == "torch" and "runs on cuda" in choice.line


# -- the commands ---------------------------------------------------------------------------------

def test_infer_runs_the_export_with_torch_answers(model, export, runner, in_tmp):
    """The sample notes: every entity as torch gives it; the first log line says which runtime and why."""
    via_onnx, got = _infer(runner, model)
    via_torch, want = _infer(runner, model, "--backend", "torch")
    first = via_onnx.stderr.splitlines()[0]
    assert first.startswith(f"infer: {model} on cpu (1 thread (--threads))")
    assert first.endswith(f", onnxruntime; backend onnx: verified export {export} of these weights (sha256 "
                          f"{weight_hashes(model)['model.safetensors'][:12]}…); --backend torch to use torch")
    assert "backend onnx" not in via_torch.stderr and "onnxruntime" not in via_torch.stderr
    assert sum(len(x["entities"]) for x in want) > 0 and len(got) == len(want)
    _same_entities(got, want)


def test_bench_names_the_onnx_row_and_keeps_torch_beside_a_benched_export(model, export, runner, in_tmp):
    from nerkd.stages.bench import bench_backends, bench_section

    res = runner.invoke(app, ["bench", "--model", str(model), "-n", "2", "--json", "b.json", "--threads", "1",
                              "--set", f"data.test={DATA / 'test.jsonl'}", "--set", "bench.warmup=0",
                              "--set", "bench.blocks=1"])
    assert res.exit_code == 0, res.output
    doc = orjson.loads((in_tmp / "b.json").read_bytes())
    assert [(m["name"], m["path"]) for m in doc["models"]] == [("tiny (onnx)", str(export))]   # never torch's row
    lines = res.stderr.splitlines()
    assert lines[0].startswith("bench: 1 models (1 on ONNX Runtime: tiny (onnx)), 2 sentences, cpu (1 thread")
    assert lines[1].startswith(f"bench: tiny (onnx): backend onnx: verified export {export} of these weights")
    settings = load_settings(None, [])
    both = [("tiny", str(model)), ("tiny_onnx (onnx)", str(export))]
    models, choices = bench_backends(both, bench_section(settings, "cpu", "fp32", "auto"))
    assert models == both and choices[str(model)].backend == "torch"       # side by side: the model on torch
    assert "is benched too" in choices[str(model)].line
    for precision, backend in (("int8", "auto"), ("fp32", "torch")):       # dynamic int8 is torch's; as asked
        models, choices = bench_backends([("tiny", str(model))], bench_section(settings, "cpu", precision, backend))
        assert models == [("tiny", str(model))] and choices[str(model)].backend == "torch"


def test_serve_says_it_in_its_first_line(model, export, monkeypatch, caplog, in_tmp):
    pytest.importorskip("uvicorn")
    from nerkd.project import Project
    from nerkd.serve.server import DrainingServer
    from nerkd.stages.serve import run_serve

    monkeypatch.setattr(DrainingServer, "run", lambda self, *a, **k: None)
    with caplog.at_level(logging.INFO, logger="nerkd.serve"):
        run_serve(load_settings(None, []), Project.discover(), str(model), port=0, threads=1, logs=False)
    first = [r.getMessage() for r in caplog.records if r.name == "nerkd.serve"][0]
    assert f"(backend onnx: verified export {export} of these weights" in first and "1 thread" in first


# -- export.after_train ---------------------------------------------------------------------------

def test_finetune_writes_the_export_and_infer_uses_it(model, runner, in_tmp):
    sets = [f"data.train={DATA / 'train.jsonl'}", f"data.dev={DATA / 'dev.jsonl'}", "data.limit=8",
            f"data.label2id={DATA / 'label2id.json'}", "data.max_length=48", "data.stride=8", "train.batch_size=8",
            "train.device=cpu", "export.after_train=onnx", "export.check_sentences=4"]
    res = runner.invoke(app, ["finetune", "--model", str(model), "--output", "final", "--epochs", "1",
                              *(x for s in sets for x in ("--set", s))])
    assert res.exit_code == 0, res.output
    out = in_tmp / "final"
    manifest = orjson.loads((out / "onnx" / "manifest.json").read_bytes())
    assert manifest["format"] == "nerkd-onnx" and not manifest["onnx"]["int8"]
    assert manifest["source"]["weights_sha256"] == weight_hashes(out)
    assert "export.after_train: wrote final/onnx (fp32" in res.stderr
    via_onnx, got = _infer(runner, out)
    assert f"; backend onnx: verified export {out / 'onnx'} of these weights" in via_onnx.stderr.splitlines()[0]
    _same_entities(got, _infer(runner, out, "--backend", "torch")[1])


def test_prune_writes_the_export(model, tmp_path):
    from nerkd.stages.prune import run_prune

    settings = load_settings(None, [f"data.dev={DATA / 'dev.jsonl'}", f"data.label2id={DATA / 'label2id.json'}",
                                    "prune.max_sentences=8", "prune.rate=0.25", "train.batch_size=8",
                                    "export.after_train=onnx", "export.check_sentences=4"])
    run_prune(settings, model, tmp_path / "pruned", log=lambda _: None)
    choice = choose_backend(tmp_path / "pruned", InferSettings())
    assert choice.backend == "onnx" and choice.export == tmp_path / "pruned" / "onnx"
    run_prune(load_settings(None, [f"data.dev={DATA / 'dev.jsonl'}", f"data.label2id={DATA / 'label2id.json'}",
                                   "prune.max_sentences=8", "prune.rate=0.25"]), model, tmp_path / "plain",
              log=lambda _: None)
    assert not (tmp_path / "plain" / "onnx").exists()                      # export.after_train: none (default)
