"""Head pruning: importance, selection rules, physical removal, save/reload, CLI defaults, table."""

from __future__ import annotations

import shutil
import warnings

import orjson
import pytest
import torch
from rich.console import Console

from nerkd.cli.render import head_table
from nerkd.data.dataset import read_split
from nerkd.errors import SettingsError
from nerkd.models.decode import predict_tags
from nerkd.models.heads import EmptySelfAttention, encoder_layers
from nerkd.models.ner import NerModel, load_tokenizer
from nerkd.prune import (
    HeadGates,
    compute_importance,
    count_parameters,
    heads_for_rate,
    masked_logits,
    normalize,
    original_heads,
    remove_heads,
    select_global,
    select_per_layer,
)
from nerkd.prune.importance import row_losses
from nerkd.settings import load_settings
from nerkd.stages.prune import IMPORTANCE_FILE, make_batches, run_prune
from tests.helpers import DATA


def _settings(*extra: str):
    return load_settings(None, [f"data.dev={DATA / 'dev.jsonl'}", f"data.label2id={DATA / 'label2id.json'}",
                                "prune.max_sentences=24", "train.batch_size=8", *extra])


def _batches(folder, model, n=24):
    settings = _settings()
    split = read_split("dev", settings.data.dev, settings.data)
    split.sentences = split.sentences[:n]
    return make_batches(split, load_tokenizer(folder), model, settings)


def _total_loss(model, batches, removed=()):
    gates, total = HeadGates(model), 0.0
    with gates, torch.no_grad():
        for b in batches:
            gates.mask(removed)
            total += float(row_losses(model, model(b["input_ids"], b["attention_mask"]).logits, b["labels"]).sum())
    return total


def _inputs():
    torch.manual_seed(0)
    ids = torch.randint(5, 700, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    return ids, mask


# -- importance ----------------------------------------------------------------------------------

def test_gate_gradient_is_grad_times_activation(tiny_bio):
    model = NerModel.load(tiny_bio)
    batch = _batches(tiny_bio, model, n=8)[0]
    la = encoder_layers(model)[1]
    seen = {}
    hook = la.out_proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0]) or a[0].retain_grad())
    gates = HeadGates(model)
    with gates:
        values = gates.ones(batch["input_ids"].shape[0], "cpu")
        logits = model(batch["input_ids"], batch["attention_mask"]).logits
        loss = row_losses(model, logits, batch["labels"]).sum()
        loss.backward()
    hook.remove()
    x = seen["x"]   # the gated input of the projection (gate = 1: equal to the activation)
    n, d = la.num_heads, la.head_size
    manual = (x.grad * x).reshape(*x.shape[:2], n, d).sum(dim=(1, 3))          # [B, H]
    assert torch.allclose(values[1].grad, manual, atol=1e-6)


def test_known_important_head_ranks_first(tiny_bio):
    model = NerModel.load(tiny_bio)
    batches = _batches(tiny_bio, model)
    layer, head = 1, 2
    la = encoder_layers(model)[layer]
    d = la.head_size
    with torch.no_grad():   # a loud head: its output is scaled 36x into the residual stream
        la.self_attn.value.weight[head * d:(head + 1) * d] *= 6
        la.out_proj.weight[:, head * d:(head + 1) * d] *= 6
    before = [p.detach().clone() for p in model.parameters()]
    imp = compute_importance(model, batches)
    flat = [(v, (i, h)) for i, row in enumerate(imp.raw) for h, v in enumerate(row)]
    assert max(flat)[1] == (layer, head)
    assert imp.windows == 24 and imp.tokens > 24
    base = _total_loss(model, batches)
    deltas = {(i, h): abs(_total_loss(model, batches, [(i, h)]) - base) for _, (i, h) in flat}
    assert max(deltas, key=deltas.get) == (layer, head)
    # the pass leaves the model untouched and trainable flags restored
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.requires_grad for p in model.parameters())


def test_importance_with_crf(tiny_crf):
    model = NerModel.load(tiny_crf)
    imp = compute_importance(model, _batches(tiny_crf, model, n=8))
    assert len(imp.raw) == 2 and all(len(r) == 4 and all(v > 0 for v in r) for r in imp.raw)


def test_normalize_per_layer():
    out = normalize([[3.0, 4.0], [0.0, 0.0], [1.0]])
    assert out[0] == pytest.approx([0.6, 0.8]) and out[1] == [0.0, 0.0] and out[2] == pytest.approx([1.0])


# -- selection -----------------------------------------------------------------------------------

SCORES = [[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.05, 0.7]]


def test_select_global_rate():
    sel = select_global(SCORES, 0.25)
    assert sel.remove == ((0, 1), (1, 2))
    assert select_global(SCORES, 0.0).remove == ()
    assert len(select_global(SCORES, 0.5).remove) == 4
    assert heads_for_rate(0.25, 10) == 3 and heads_for_rate(0.25, 144) == 36 and heads_for_rate(0.1, 4) == 0


def test_select_never_empties_a_layer_unless_allowed():
    scores = [[0.1, 0.2], [0.9, 0.8]]
    assert select_global(scores, 0.5).remove == ((0, 0), (1, 1))      # (0, 1) would empty layer 0: skipped
    assert select_global(scores, 0.5, allow_empty=True).remove == ((0, 0), (0, 1))
    with pytest.raises(SettingsError, match="emptying a layer"):
        select_global(scores, 0.75)


def test_select_per_layer():
    assert select_per_layer(SCORES, {1: 2}).remove == ((1, 0), (1, 2))
    assert select_per_layer(SCORES, {0: 1, 1: 1}).remove == ((0, 1), (1, 2))
    with pytest.raises(SettingsError, match="empties it"):
        select_per_layer(SCORES, {0: 4})
    assert len(select_per_layer(SCORES, {0: 4}, allow_empty=True).remove) == 4
    with pytest.raises(SettingsError, match="does not exist"):
        select_per_layer(SCORES, {5: 1})
    with pytest.raises(SettingsError, match="cannot remove"):
        select_per_layer(SCORES, {0: 5}, allow_empty=True)


def test_select_ties_are_deterministic():
    flat = [[0.5] * 3 for _ in range(3)]
    assert select_global(flat, 0.34).remove == ((0, 0), (0, 1), (1, 0))
    assert select_per_layer(flat, {2: 2}).remove == ((2, 0), (2, 1))


def test_select_rejects_nan_scores():
    with pytest.raises(SettingsError, match="cannot rank"):
        select_global([[float("nan"), 1.0]], 0.5)


# -- physical removal ----------------------------------------------------------------------------

def test_pruning_zero_heads_is_bit_identical(tiny_bio):
    model = NerModel.load(tiny_bio)
    ids, mask = _inputs()
    with torch.no_grad():
        before = model(ids, mask).logits
    params = count_parameters(model)
    kept = remove_heads(model, select_global(SCORES, 0.0).remove)
    with torch.no_grad():
        after = model(ids, mask).logits
    assert torch.equal(before, after)
    assert count_parameters(model) == params and kept == [[0, 1, 2, 3], [0, 1, 2, 3]]


@pytest.mark.parametrize("removed", [[(0, 1), (1, 2)], [(0, 0), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]])
def test_removed_equals_masked(tiny_bio, removed):
    model = NerModel.load(tiny_bio)
    ids, mask = _inputs()
    masked = masked_logits(model, ids, mask, removed)
    params = count_parameters(model)
    remove_heads(model, removed)
    with torch.no_grad():
        pruned = model(ids, mask).logits
    assert torch.allclose(masked, pruned, atol=1e-5)
    hidden, d = 64, 16
    assert count_parameters(model) == params - len(removed) * (4 * hidden * d + 3 * d)
    if len(removed) == 6:
        assert isinstance(encoder_layers(model)[1].self_attn, EmptySelfAttention) and model.heads == [2, 0]
        with warnings.catch_warnings():   # int8 dynamic quantisation (infer/bench) copes with an empty layer
            warnings.simplefilter("ignore")
            quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        with torch.no_grad():
            assert quantized(ids, mask).logits.shape == pruned.shape


# -- save / reload / second prune ----------------------------------------------------------------

def test_save_reload_and_second_prune(tiny_bio, tmp_path):
    from transformers import AutoModelForTokenClassification

    model = NerModel.load(tiny_bio)
    ids, mask = _inputs()
    remove_heads(model, [(0, 1), (1, 0), (1, 3)])
    with torch.no_grad():
        before = model(ids, mask).logits
    model.save(tmp_path / "p1", tokenizer=load_tokenizer(tiny_bio))
    again = NerModel.load(tmp_path / "p1")
    assert again.heads == [3, 2] and again.is_pruned
    with torch.no_grad():
        assert torch.equal(again(ids, mask).logits, before)
    with pytest.raises((ValueError, KeyError, OSError)):
        AutoModelForTokenClassification.from_pretrained(tmp_path / "p1")
    # second prune: current indices -> original ones through config.nerkd_head_index
    assert original_heads(again) == ([[0, 2, 3], [1, 2]], True)
    assert remove_heads(again, [(0, 1), (1, 0)]) == [[0, 3], [2]]
    again.save(tmp_path / "p2")
    third = NerModel.load(tmp_path / "p2")
    assert third.heads == [2, 1] and original_heads(third) == ([[0, 3], [2]], True)


def test_an_emptied_layer_round_trips_and_has_no_zero_size_parameter(tiny_bio, tmp_path):
    model = NerModel.load(tiny_bio)
    ids, mask = _inputs()
    remove_heads(model, [(1, h) for h in range(4)])
    assert model.heads == [4, 0]
    assert all(p.numel() for p in model.parameters())   # DDP would wait forever for a zero-size parameter's grad
    out = encoder_layers(model)[1].out_proj
    assert out.weight.shape == (64, 0) and out.bias.requires_grad
    with torch.no_grad():
        before = model(ids, mask).logits
    model.save(tmp_path / "p", tokenizer=load_tokenizer(tiny_bio))
    again = NerModel.load(tmp_path / "p")
    assert again.heads == [4, 0] and again.state_dict().keys() == model.state_dict().keys()
    assert isinstance(encoder_layers(again)[1].self_attn, EmptySelfAttention)
    with torch.no_grad():
        assert torch.equal(again(ids, mask).logits, before)


def test_run_prune_engine_writes_json_and_reprunes(tiny_crf, tmp_path):
    settings = _settings("prune.rate=0.25")
    first = run_prune(settings, tiny_crf, tmp_path / "p1", log=lambda _: None)
    report = orjson.loads((tmp_path / "p1" / IMPORTANCE_FILE).read_bytes())
    for key in ("layers", "heads", "scores", "raw_scores", "pruned", "kept", "normalize", "sentences",
                "params_before", "params_after"):
        assert key in report
    assert report["sentences"] == 24 and len(report["pruned"]) == 2 and report["params_after"] < report["params_before"]
    assert sum(map(len, report["kept"])) == 6 and report["heads_after"] == 6
    assert (tmp_path / "p1" / "settings.yaml").is_file()
    reloaded = NerModel.load(tmp_path / "p1")
    assert reloaded.crf is not None and sum(reloaded.heads) == 6
    split = read_split("dev", settings.data.dev, settings.data)
    split.sentences = split.sentences[:5]
    tokenizer = load_tokenizer(tmp_path / "p1")
    make_batches(split, tokenizer, reloaded, settings)      # fills split.windows
    tags = predict_tags(reloaded, split.windows, [len(s.tokens) for s in split.sentences],
                        pad_id=tokenizer.pad_token_id)
    assert [len(t) for t in tags] == [len(s.tokens) for s in split.sentences]
    second = run_prune(_settings("prune.rate=0.34"), tmp_path / "p1", tmp_path / "p2", log=lambda _: None)
    again = orjson.loads((tmp_path / "p2" / IMPORTANCE_FILE).read_bytes())
    gone_before = {tuple(p) for p in first.report["pruned"]}
    assert len(again["pruned"]) == 2 and not gone_before & {tuple(p) for p in again["pruned"]}
    assert all(again["scores"][layer][head] is None for layer, head in gone_before)
    assert again["head_index"] == "original" and second.report["heads_after"] == 4


def test_run_prune_refuses_output_equal_to_input(tiny_bio):
    with pytest.raises(SettingsError, match="input model's folder"):
        run_prune(_settings(), tiny_bio, tiny_bio, log=lambda _: None)


# -- CLI and table -------------------------------------------------------------------------------

def test_cli_defaults_from_project_state(tiny_bio, in_tmp, runner):
    from nerkd.cli.app import app
    from nerkd.project import Project

    shutil.copytree(tiny_bio, in_tmp / "runs" / "student")
    Project.discover().remember_output("distill", in_tmp / "runs" / "student")
    (in_tmp / "nerkd.yaml").write_text(f"data:\n  dev: {DATA / 'dev.jsonl'}\n  label2id: {DATA / 'label2id.json'}\n"
                                       "prune:\n  max_sentences: 16\n", encoding="utf-8")
    result = runner.invoke(app, ["prune", "--rate", "0.25"])
    assert result.exit_code == 0, result.output
    out = in_tmp / "artifacts" / "pruned"
    assert (out / "config.json").is_file() and (out / IMPORTANCE_FILE).is_file() and (out / "settings.yaml").is_file()
    assert orjson.loads((in_tmp / ".nerkd" / "state.json").read_bytes())["outputs"]["prune"] == "artifacts/pruned"
    assert result.stdout.count("x 0.") == 2 and "removed: L" in result.stdout
    assert "head importance on" not in result.stdout and "first 16 of 80 dev sentences" in result.stderr
    assert NerModel.load(out).heads != [4, 4]


def test_cli_errors_are_one_line(in_tmp, runner, tiny_bio):
    from nerkd.cli.app import app

    result = runner.invoke(app, ["prune"])
    assert result.exit_code == 1 and "no model to prune" in result.stderr and "Traceback" not in result.output
    result = runner.invoke(app, ["prune", "--model", str(tiny_bio), "--rate", "1.5"])
    assert result.exit_code == 1 and "--rate 1.5" in result.stderr


def test_table_marks_pruned_heads():
    grid = [[0.9, None, 0.5, 0.3], [0.2, 0.8, 0.05, 0.7]]
    console = Console(record=True, width=120, color_system="truecolor")
    console.print(head_table(grid, [(0, 3), (1, 2)]))
    text = console.export_text()
    assert "x 0.30" in text and "x 0.05" in text and text.count("x 0.") == 2
    assert "2/4" in text and "3/4" in text and " - " in text
    marked = [seg for seg in console.render(head_table(grid, [(0, 3), (1, 2)])) if seg.text.startswith("x 0.")]
    assert len(marked) == 2 and all(seg.style.strike and seg.style.bold for seg in marked)
    assert all(seg.style.color.name == "red" for seg in marked)
