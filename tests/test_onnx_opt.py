"""ONNX Runtime's transformer fusions on exported graphs (nerkd.export.onnx_opt): fused for real, logits
equal to torch for unpruned and pruned models (unequal heads, a layer without heads), clean fallbacks."""

from __future__ import annotations

import onnx
import pytest
import torch
from onnx import helper

from nerkd.export.onnx_graph import Logits, export_graph, padded_batch
from nerkd.export.onnx_opt import eager_attention, fuse_graph, fused_ops
from nerkd.infer.onnx_backend import make_session
from nerkd.models.ner import NerModel
from nerkd.prune import remove_heads

pytest.importorskip("onnxruntime.transformers.optimizer")


def _export(model: NerModel, path, exporter: str = "torchscript", eager: bool = True):
    scope = eager_attention(model.encoder_model) if eager else torch.no_grad()
    with scope:
        export_graph(Logits(model.encoder_model).eval(), padded_batch(model.config.vocab_size, 1, 2, 16, seed=0),
                     path, opset=18, exporter=exporter)
    return path


def _fuse(model: NerModel, src, dst):
    cfg = model.config
    return fuse_graph(src, dst, model_type=cfg.model_type, hidden_size=cfg.hidden_size,
                      num_heads=cfg.num_attention_heads)


def _max_diff(model: NerModel, path) -> float:
    session = make_session(path, threads=1)
    worst = 0.0
    for rows, width, seed in [(1, 5, 3), (4, 37, 4), (7, 12, 5)]:   # other shapes than the traced (2, 16)
        ids, mask = padded_batch(model.config.vocab_size, 1, rows, width, seed)
        with torch.inference_mode():
            ref = model(ids, mask).logits
        (got,) = session.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        worst = max(worst, float((torch.from_numpy(got) - ref).abs()[mask.bool()].max()))
    return worst


def _node_heads(path) -> list[int]:
    return [helper.get_attribute_value(a) for n in onnx.load(str(path)).graph.node if n.op_type == "Attention"
            for a in n.attribute if a.name == "num_heads"]


@pytest.fixture(scope="module")
def bio_graphs(tiny_bio, tmp_path_factory) -> dict:
    """``tiny_bio`` exported three ways, once: TorchScript with eager attention (what ORT fuses), TorchScript
    with SDPA (transformers' default) and dynamo with SDPA."""
    model, folder = NerModel.load(tiny_bio), tmp_path_factory.mktemp("graphs")
    return {"eager": _export(model, folder / "eager.onnx"), "sdpa": _export(model, folder / "sdpa.onnx", eager=False),
            "dynamo": _export(model, folder / "dynamo.onnx", exporter="dynamo", eager=False)}


def test_unpruned_graph_is_fused_and_equal(tiny_bio, bio_graphs, tmp_path, one_thread):
    model = NerModel.load(tiny_bio)
    fusion = _fuse(model, bio_graphs["eager"], tmp_path / "fused.onnx")
    assert fusion.ok, fusion.reason
    # every layer's attention, both residual LayerNorms of each layer and the GELU are fused kernels now
    assert fusion.fused == fused_ops(tmp_path / "fused.onnx")
    assert fusion.fused["Attention"] == 2 and fusion.fused["SkipLayerNormalization"] == 4
    assert fusion.fused["BiasGelu"] == 2 and fusion.heads == [4, 4] == _node_heads(tmp_path / "fused.onnx")
    assert _max_diff(model, tmp_path / "fused.onnx") < 1e-5
    assert model.config._attn_implementation == "sdpa"   # eager only while exporting


def test_pruned_unequal_heads_and_empty_layer(tiny_io_teacher, tmp_path, one_thread, capfd):
    """The optimiser writes the config's head count (4) into every Attention node: each must get its own
    layer's (else ORT splits the heads wrongly, or refuses the graph); the head-less layer stays unfused.
    The optimiser's warnings (a head count unlike the config's) stay off the console."""
    model = NerModel.load(tiny_io_teacher)
    remove_heads(model, [(1, 0), (1, 1), (2, 3), (3, 0), (3, 1), (3, 2), (3, 3)])
    assert model.heads == [4, 2, 3, 0]
    raw = _export(model, tmp_path / "raw.onnx")
    capfd.readouterr()
    fusion = _fuse(model, raw, tmp_path / "fused.onnx")
    assert capfd.readouterr() == ("", "")
    assert fusion.ok and fusion.heads == [4, 2, 3] == _node_heads(tmp_path / "fused.onnx")
    assert _max_diff(model, tmp_path / "fused.onnx") < 1e-5


@pytest.mark.parametrize("case", ["dynamo", "sdpa", "not bert"])
def test_fallback_keeps_the_graph(case, tiny_bio, bio_graphs, tmp_path):
    """A graph whose attention ORT cannot match (dynamo exporter, or SDPA traced) or a model type its
    fusions are not for: the graph is copied unchanged, with the reason."""
    raw = bio_graphs["eager" if case == "not bert" else case]
    cfg = NerModel.load(tiny_bio).config
    fusion = fuse_graph(raw, tmp_path / "out.onnx", model_type="gpt2" if case == "not bert" else cfg.model_type,
                        hidden_size=cfg.hidden_size, num_heads=cfg.num_attention_heads)
    assert not fusion.ok and fusion.fused == {}
    assert ("no attention subgraph matched" if case != "not bert" else "model type 'gpt2'") in fusion.reason
    assert (tmp_path / "out.onnx").read_bytes() == raw.read_bytes()
    assert fusion.summary().startswith("not fused (")


def test_nerkd_export_traces_eager_attention(tiny_bio, tmp_path, one_thread):
    """``nerkd export``'s default graph is the eager-attention trace (the only one ORT's matcher fuses, as
    the tests above show), and the model's own attention is SDPA again afterwards."""
    from nerkd.export import export_onnx

    model = NerModel.load(tiny_bio)
    assert model.config._attn_implementation == "sdpa"
    result = export_onnx(tiny_bio, tmp_path / "out")
    assert result.manifest["onnx"]["exporter"] == "torchscript" and result.manifest["onnx"]["attention"] == "eager"
    fusion = _fuse(model, tmp_path / "out" / "model.onnx", tmp_path / "fused.onnx")
    assert fusion.ok and fusion.fused.get("Attention") == model.config.num_hidden_layers, fusion.summary()
    with eager_attention(model.encoder_model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"
