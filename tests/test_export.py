"""``nerkd export`` (onnx, onnx int8, hf) and the ONNX Runtime backend of the inference engine."""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys

import orjson
import pytest
import torch

from nerkd.cli.app import app
from nerkd.errors import ModelLoadError, SettingsError
from nerkd.export import ExportError, export_hf, export_onnx
from nerkd.export.onnx import SNIPPET, padded_batch
from nerkd.infer import Engine
from nerkd.infer.onnx_backend import MissingExtraError, OnnxModel, make_session
from nerkd.models.heads import encoder_layers
from nerkd.models.ner import NerModel, load_tokenizer
from nerkd.prune.apply import original_heads, remove_heads
from tests.helpers import DATA, sample_texts

TEXTS = sample_texts()[:40]
REMOVED = [(0, 1), (0, 2), (1, 0)]   # layer 0 keeps original heads 0 and 3, layer 1 keeps 1, 2, 3


@pytest.fixture(scope="module")
def tiny_pruned(tmp_path_factory, tiny_bio):
    """``tiny_bio`` with unequal heads per layer: [2, 3] of 4."""
    model = NerModel.load(tiny_bio)
    remove_heads(model, REMOVED)
    folder = model.save(tmp_path_factory.mktemp("models") / "tiny_pruned", tokenizer=load_tokenizer(tiny_bio))
    assert NerModel.load(folder).heads == [2, 3]
    return folder


@pytest.fixture(scope="module")
def onnx_bio(tmp_path_factory, tiny_bio):
    return export_onnx(tiny_bio, tmp_path_factory.mktemp("exports") / "bio_onnx", exporter="torchscript",
                       texts=TEXTS[:10]).output


def _logits(model, ids, mask):
    with torch.inference_mode():
        return model(ids, mask).logits


def _max_diff(a, b, mask):
    return float((a - b).abs()[mask.bool()].max())


def _same_entities(a: list[list[dict]], b: list[list[dict]]) -> None:
    """Identical spans and labels; scores (rounded to 4 decimals) within rounding of float noise."""
    assert [[(e["start"], e["end"], e["label"], e["text"]) for e in x] for x in a] == \
        [[(e["start"], e["end"], e["label"], e["text"]) for e in x] for x in b]
    assert all(abs(e["score"] - f["score"]) <= 2e-4 for x, y in zip(a, b, strict=True)
               for e, f in zip(x, y, strict=True))


def _cli(runner, *args, **kw):
    return runner.invoke(app, list(args), **kw)


# -- ONNX: the graph -------------------------------------------------------------------------------
@pytest.mark.parametrize(("which", "exporter"), [("unpruned", "torchscript"), ("pruned", "dynamo"),
                                                 ("pruned", "torchscript")])
def test_onnx_logits_equal_nerkd(which, exporter, tiny_bio, tiny_pruned, tmp_path, one_thread):
    src = tiny_bio if which == "unpruned" else tiny_pruned
    result = export_onnx(src, tmp_path / "out", exporter=exporter, texts=TEXTS[:8])
    model = NerModel.load(src)
    session = make_session(tmp_path / "out" / "model.onnx", threads=1)
    pad = load_tokenizer(src).pad_token_id
    for rows, width, seed in [(1, 5, 3), (4, 37, 4), (7, 12, 5)]:   # other shapes than the traced (2, 16)
        ids, mask = padded_batch(model.config.vocab_size, pad, rows, width, seed)
        (got,) = session.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        assert _max_diff(torch.from_numpy(got), _logits(model, ids, mask), mask) < 1e-4
    manifest = result.manifest
    assert manifest["model"]["heads"] == ([4, 4] if which == "unpruned" else [2, 3])
    assert manifest["onnx"]["exporter"] == exporter and manifest["onnx"]["opset"] == 18
    assert result.max_abs_diff < 1e-4 and manifest["onnx"]["check"]["sentences"] == 8
    import numpy as np
    import onnx

    weights = sum(int(np.prod(t.dims)) for t in onnx.load(str(tmp_path / "out" / "model.onnx")).graph.initializer)
    assert weights <= model.num_parameters() == manifest["model"]["parameters"]
    if which == "pruned":   # the graph holds the pruned weights, fewer than the unpruned model's
        assert weights < NerModel.load(tiny_bio).num_parameters() - 10_000


def test_onnx_folder_and_manifest(onnx_bio, tiny_bio):
    names = {p.name for p in onnx_bio.iterdir()}
    assert {"model.onnx", "manifest.json", "label2id.json", "config.json", "tokenizer.json", "README.md"} <= names
    manifest = orjson.loads((onnx_bio / "manifest.json").read_bytes())
    from nerkd import __version__

    weights = hashlib.sha256((tiny_bio / "model.safetensors").read_bytes()).hexdigest()
    assert manifest["format"] == "nerkd-onnx" and manifest["nerkd_version"] == __version__
    assert manifest["source"]["sha256"] == weights == manifest["source"]["weights_sha256"]["model.safetensors"]
    model = NerModel.load(tiny_bio)
    assert manifest["labels"] == list(model.labels.labels) and manifest["scheme"] == "BIO"
    assert manifest["id2label"] == {str(i): lab for i, lab in enumerate(model.labels.labels)}
    assert orjson.loads((onnx_bio / "label2id.json").read_bytes()) == model.labels.label2id
    assert manifest["crf"] is None and manifest["decode"]["method"] == "constrained-viterbi"
    assert "constrained BIO Viterbi" in manifest["decode"]["text"]
    assert manifest["position_limit"] == 130 and manifest["max_length"] == 128
    assert not any(p.name.startswith(".save.tmp") for p in onnx_bio.iterdir())


def test_engine_onnx_backend_matches_torch(onnx_bio, tiny_bio, one_thread):
    torch_engine = Engine.load(tiny_bio)
    onnx_engine = Engine.load(onnx_bio, backend="onnx")
    assert onnx_engine.backend == "onnx" and Engine.load(onnx_bio, backend="auto").backend == "onnx"
    assert onnx_engine.num_parameters == torch_engine.num_parameters
    assert onnx_engine.model.session.get_session_options().intra_op_num_threads == 1   # torch's thread count
    long = " ".join(TEXTS[:6])   # longer than a window: windows and stitching go through ONNX too
    _same_entities(onnx_engine.predict([*TEXTS, long]), torch_engine.predict([*TEXTS, long]))
    for a, b in zip(onnx_engine.word_scores([t.split() for t in TEXTS]),
                    torch_engine.word_scores([t.split() for t in TEXTS]), strict=True):
        assert float((a - b).abs().max()) < 1e-4


def test_onnx_backend_errors(onnx_bio, tiny_bio):
    with pytest.raises(ModelLoadError, match="run nerkd export --format onnx first"):
        Engine.load(tiny_bio, backend="onnx")
    with pytest.raises(SettingsError, match="is an ONNX export"):
        Engine.load(onnx_bio, backend="torch")
    with pytest.raises(SettingsError, match="fp32 ONNX export"):
        Engine.load(onnx_bio, backend="onnx", int8=True)
    with pytest.raises(SettingsError, match="precision bf16"):
        Engine.load(onnx_bio, backend="onnx", precision="bf16")
    with pytest.raises(SettingsError, match="--compile"):
        Engine.load(onnx_bio, backend="onnx", compile=True)


def test_crf_export_cli_and_infer_backend_onnx(runner, in_tmp, tiny_crf):
    """Default exporter through the CLI; the CRF's transitions in the manifest decode as in torch."""
    res = _cli(runner, "export", "--model", str(tiny_crf), "--format", "onnx", "--output", "crf_onnx")
    assert res.exit_code == 0, res.output
    assert "exported: crf_onnx" in res.stdout and "transitions are in manifest.json" in res.stdout
    manifest = orjson.loads((in_tmp / "crf_onnx" / "manifest.json").read_bytes())
    crf = NerModel.load(tiny_crf).crf
    for name in ("transitions", "start_transitions", "end_transitions"):
        assert torch.equal(torch.tensor(manifest["crf"][name]), getattr(crf, name).detach())
    assert manifest["decode"]["method"] == "crf-viterbi" and manifest["onnx"]["exporter"] == "torchscript"
    assert manifest["onnx"]["attention"] == "eager"
    assert manifest["source"]["weights_sha256"].keys() == {"crf.safetensors", "model.safetensors"}
    texts = (DATA / "texts.txt").read_text(encoding="utf-8")
    via_torch = _cli(runner, "infer", "--model", str(tiny_crf), "--no-progress", input=texts)
    via_onnx = _cli(runner, "infer", "--model", "crf_onnx", "--backend", "onnx", "--no-progress", input=texts)
    assert via_torch.exit_code == 0 and via_onnx.exit_code == 0, via_onnx.output
    assert "onnxruntime" in via_onnx.stderr
    lines = [[orjson.loads(x) for x in r.stdout.splitlines()] for r in (via_onnx, via_torch)]
    assert [x["text"] for x in lines[0]] == [x["text"] for x in lines[1]] and via_torch.stdout.count('"label"') > 0
    _same_entities([x["entities"] for x in lines[0]], [x["entities"] for x in lines[1]])
    engine = Engine.load(in_tmp / "crf_onnx", backend="auto")
    assert engine.decoder.crf is not None and not engine.free


def test_int8_pruned_export_is_per_channel(tiny_pruned, tmp_path, one_thread):
    """int8 quantises each weight with one scale per output channel (BENCHMARKS: closer to fp32 than one scale
    per tensor, same speed), pruned models included; the graph runs and its agreement is reported."""
    import onnx
    from onnx import numpy_helper

    result = export_onnx(tiny_pruned, tmp_path / "int8", int8=True, texts=TEXTS[:8])
    graph = onnx.load(str(tmp_path / "int8" / "model.onnx")).graph
    scales = {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.name.endswith("_scale")}
    weights = [n for n in scales if "MatMul" in n]
    assert weights and all(scales[n].ndim == 1 and scales[n].size > 1 for n in weights), \
        {n: scales[n].shape for n in weights}
    assert "one scale per output channel" in result.manifest["onnx"]["quantization"]
    assert result.agreement is not None and result.agreement_words > 0
    assert Engine.load(tmp_path / "int8", backend="onnx").predict(TEXTS[:3])


def test_int8_export_reports_agreement(runner, in_tmp, tiny_bio, onnx_bio):
    res = _cli(runner, "export", "--model", str(tiny_bio), "--int8", "--output", "int8", "--input",
               str(DATA / "texts.txt"), "--set", "export.exporter=torchscript")
    assert res.exit_code == 0, res.output
    assert "int8: tag agreement with fp32" in res.stdout
    info = orjson.loads((in_tmp / "int8" / "manifest.json").read_bytes())["onnx"]
    agreement = info["int8_agreement"]["tag_agreement"]
    assert isinstance(agreement, float) and 0.0 <= agreement <= 1.0 and info["int8_agreement"]["words"] > 0
    assert info["int8"] is True and "quantize_dynamic" in info["quantization"]
    assert f"{100 * agreement:.2f}%" in res.stdout
    assert not (in_tmp / "int8" / ".fp32.onnx").exists()
    engine = Engine.load(in_tmp / "int8", backend="onnx")
    assert engine.int8 and engine.predict(TEXTS[:3])
    # the int8 graph is smaller and really differs from the fp32 one
    assert (in_tmp / "int8" / "model.onnx").stat().st_size < (onnx_bio / "model.onnx").stat().st_size


def test_export_is_checked_and_leaves_nothing_when_refused(tiny_bio, tmp_path, monkeypatch):
    monkeypatch.setattr("nerkd.export.onnx.TOLERANCE", -1.0)   # any difference is too much
    with pytest.raises(ExportError, match="does not reproduce"):
        export_onnx(tiny_bio, tmp_path / "out", exporter="torchscript")
    assert not (tmp_path / "out").exists()


def test_output_folder_guard(runner, in_tmp, tiny_bio, onnx_bio):
    mine = in_tmp / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    args = ["export", "--model", str(tiny_bio), "--set", "export.exporter=torchscript", "--output"]
    res = _cli(runner, *args, "mine")
    assert res.exit_code == 1 and "not a nerkd" in res.stderr and "--overwrite" in res.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    res = _cli(runner, *args, str(tiny_bio))
    assert res.exit_code == 1 and "is the model being exported" in res.stderr
    res = _cli(runner, *args, "mine", "--overwrite")
    assert res.exit_code == 0, res.output
    assert (mine / "notes.txt").read_text() == "keep me" and (mine / "model.onnx").is_file()
    # an earlier export is replaced as a unit (hf over onnx: model.onnx goes, the user's file stays)
    res = _cli(runner, "export", "--model", str(tiny_bio), "--format", "hf", "--output", "mine")
    assert res.exit_code == 0, res.output
    assert not (mine / "model.onnx").exists() and (mine / "model.safetensors").is_file()
    assert (mine / "notes.txt").read_text() == "keep me"
    other = in_tmp / "model_copy"
    NerModel.load(tiny_bio).save(other, tokenizer=load_tokenizer(tiny_bio))
    res = _cli(runner, *args, str(other))
    assert res.exit_code == 1 and "holds a nerkd model" in res.stderr


def test_readme_snippet_runs_without_nerkd(onnx_bio, tiny_bio):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(SNIPPET.format(folder=onnx_bio), {})   # noqa: S102 - the snippet the README shows
    pairs = eval(out.getvalue())   # noqa: S307 - a printed list of (word, label)
    labels = set(NerModel.load(tiny_bio).labels.labels)
    assert [w for w, _ in pairs][:2] == ["Emmanuel", "Macron"] and {lab for _, lab in pairs} <= labels
    assert SNIPPET.format(folder=onnx_bio) in (onnx_bio / "README.md").read_text(encoding="utf-8")
    assert len(SNIPPET.strip().splitlines()) == 10


# -- missing extra ---------------------------------------------------------------------------------
def test_missing_onnxruntime_is_one_line(runner, in_tmp, tiny_bio, onnx_bio, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # import onnxruntime -> ImportError
    res = _cli(runner, "export", "--model", str(tiny_bio), "--output", "x")
    assert res.exit_code == 1 and "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and "pip install 'nerkd[onnx]'" in lines[-1]
    assert not (in_tmp / "x").exists()
    res = _cli(runner, "infer", "--model", str(onnx_bio), "--no-progress", input="Marie à Lyon\n")
    assert res.exit_code == 1 and "pip install 'nerkd[onnx]'" in res.stderr.strip().splitlines()[-1]
    with pytest.raises(MissingExtraError):
        OnnxModel.load(onnx_bio)


# -- Hugging Face folder ---------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["unpruned", "pruned"])
def test_hf_folder_loads_with_plain_transformers(which, tiny_bio, tiny_pruned, tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    src = tiny_bio if which == "unpruned" else tiny_pruned
    result = export_hf(src, tmp_path / "hf", texts=TEXTS[:8])
    hf = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf")   # no trust_remote_code, no nerkd
    assert type(hf).__module__.startswith("transformers.") and hf.config.model_type == "camembert"
    model = NerModel.load(src)
    assert hf.config.id2label == dict(enumerate(model.labels.labels)) and hf.config.label2id == model.labels.label2id
    ids, mask = padded_batch(model.config.vocab_size, load_tokenizer(src).pad_token_id, 5, 29, seed=7)
    with torch.inference_mode():
        theirs = hf(input_ids=ids, attention_mask=mask).logits
    ours = _logits(model, ids, mask)
    assert _max_diff(theirs, ours, mask) < 1e-4
    assert torch.equal(theirs.argmax(-1)[mask.bool()], ours.argmax(-1)[mask.bool()])
    # the pipeline (raw text) gives, token by token, nerkd's argmax on the same sub-words
    text = TEXTS[0]
    ner = pipeline("token-classification", model=str(tmp_path / "hf"), ignore_labels=[])
    enc = AutoTokenizer.from_pretrained(tmp_path / "hf")(text, return_tensors="pt")
    argmax = _logits(model, enc["input_ids"], enc["attention_mask"]).argmax(-1)[0]
    tags = {t["index"]: t["entity"] for t in ner(text)}
    assert tags and tags == {i: model.labels.labels[int(argmax[i])] for i in tags}
    assert len(tags) == enc["input_ids"].shape[1] - 2   # every sub-word but the specials
    if which == "pruned":
        assert any("no speed gain" in n for n in result.notes)
        assert "no speed gain" in (tmp_path / "hf" / "README.md").read_text()
        assert all(la.num_heads == 4 for la in encoder_layers(hf))
        kept, known = original_heads(model)
        assert known and kept == [[0, 3], [1, 2, 3]]
        d = encoder_layers(hf)[0].head_size
        for layer, heads in enumerate(kept):   # removed heads: zero rows and columns; kept: non-zero
            la = encoder_layers(hf)[layer]
            for h in range(4):
                rows = la.self_attn.query.weight[h * d:(h + 1) * d]
                cols = la.out_proj.weight[:, h * d:(h + 1) * d]
                assert bool(rows.abs().sum() > 0) == (h in heads) and bool(cols.abs().sum() > 0) == (h in heads)
    else:
        assert result.notes == []


def test_hf_export_of_a_crf_model_warns(runner, in_tmp, tiny_crf):
    res = _cli(runner, "export", "--model", str(tiny_crf), "--format", "hf")
    assert res.exit_code == 0, res.output
    folder = in_tmp / "artifacts" / "tiny_crf_hf"
    assert "warning:" in res.stderr and "WITHOUT the CRF" in res.stderr
    assert "WITHOUT the CRF" in (folder / "README.md").read_text()
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    assert manifest["format"] == "nerkd-hf" and "WITHOUT the CRF" in manifest["hf"]["crf"]
    assert manifest["crf"]["transitions"] == NerModel.load(tiny_crf).crf.transitions.tolist()
    back = NerModel.load(folder)   # nerkd still loads it with its CRF
    assert back.crf is not None and torch.equal(back.crf.transitions, NerModel.load(tiny_crf).crf.transitions)
    res = _cli(runner, "export", "--model", str(tiny_crf), "--format", "hf", "--int8")
    assert res.exit_code == 1 and "--int8 is for --format onnx" in res.stderr


# -- bench -----------------------------------------------------------------------------------------
def test_bench_rows_side_by_side(tiny_bio, onnx_bio, one_thread):
    from nerkd.settings import load_settings
    from nerkd.stages.bench import bench_engine, bench_models, name_models

    models = name_models([str(tiny_bio), str(onnx_bio)])
    assert [name for name, _ in models] == ["tiny_bio", "bio_onnx (onnx)"]
    settings = load_settings(None, ["bench.warmup=1"])
    result = bench_models(models, TEXTS[:6], settings, device="cpu", precision="fp32", blocks=2)
    rows = {r["name"]: r for r in result["models"]}
    assert bench_engine(str(onnx_bio), settings, device="cpu", precision="fp32").backend == "onnx"
    assert bench_engine(str(tiny_bio), settings, device="cpu", precision="fp32").backend == "torch"
    with pytest.raises(SettingsError, match="fp32 ONNX export"):   # bench --precision int8 on an fp32 export
        bench_engine(str(onnx_bio), settings, device="cpu", precision="int8")
    assert rows["bio_onnx (onnx)"]["parameters"] == rows["tiny_bio"]["parameters"]
    assert rows["bio_onnx (onnx)"]["disk_bytes"] == (onnx_bio / "model.onnx").stat().st_size


def test_bench_cli_shows_the_onnx_row(runner, in_tmp, tiny_bio, onnx_bio, one_thread):
    texts = in_tmp / "texts.txt"
    texts.write_text("\n".join(TEXTS[:6]) + "\n", encoding="utf-8")
    res = _cli(runner, "bench", "--model", str(tiny_bio), "--model", str(onnx_bio), "--input", str(texts), "-n", "6",
               "--json", "bench.json", "--set", "bench.warmup=1", "--set", "bench.blocks=2")
    assert res.exit_code == 0, res.output
    assert "bio_onnx (onnx)" in res.stdout   # the row's name, as nerkd report names it
    names = [m["name"] for m in orjson.loads((in_tmp / "bench.json").read_bytes())["models"]]
    assert names == ["tiny_bio", "bio_onnx (onnx)"]


def test_auto_exporter_falls_back_to_dynamo_and_says_so(tiny_bio, tmp_path, monkeypatch, one_thread):
    """export.exporter auto (the default): the TorchScript tracer, deprecated by torch, and dynamo when it fails
    (or is gone from a later torch); an explicit exporter does not fall back."""
    import nerkd.export.onnx as onnx_export

    real = onnx_export.export_graph

    def no_tracer(module, example, path, *, opset, exporter):
        if exporter == "torchscript":
            raise ExportError("torch.onnx.export (torchscript) failed: gone from this torch")
        return real(module, example, path, opset=opset, exporter=exporter)

    monkeypatch.setattr(onnx_export, "export_graph", no_tracer)
    result = export_onnx(tiny_bio, tmp_path / "auto", texts=TEXTS[:4])
    assert result.exporter == "dynamo" and result.manifest["onnx"]["exporter"] == "dynamo"
    assert result.max_abs_diff < 1e-4
    assert any("torchscript exporter did not give a usable graph" in n and "exported with dynamo" in n
               for n in result.notes), result.notes
    with pytest.raises(ExportError, match="gone from this torch"):
        export_onnx(tiny_bio, tmp_path / "explicit", exporter="torchscript")
    assert not (tmp_path / "explicit").exists()
    with pytest.raises(ExportError, match="expected one of auto"):
        export_onnx(tiny_bio, tmp_path / "typo", exporter="torchscrpt")
