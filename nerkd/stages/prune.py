"""``nerkd prune`` engine: score heads on gold data, pick the least important, slice them out, save.

Output folder: the pruned model (``NerModel.save`` + tokenizer), ``head_importance.json`` and
``settings.yaml``; with ``export.after_train: onnx``, the model's fp32 ONNX export in ``onnx/``
(:func:`nerkd.stages.export.export_after_train`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nerkd.data.dataset import Split, encode_split, read_split
from nerkd.data.encode import bucket_batches, collate
from nerkd.device import describe, work_device
from nerkd.errors import SettingsError
from nerkd.io import write_json
from nerkd.log import progress, say, warn
from nerkd.prune.apply import attention_macs, count_parameters, original_heads, remove_heads
from nerkd.prune.importance import Importance, compute_importance, loss_name, normalize
from nerkd.prune.select import Selection, select_heads
from nerkd.settings import DataSettings, LabelSettings, PruneSettings, Settings

IMPORTANCE_FILE = "head_importance.json"


@dataclass
class PruneResult:
    output: Path | None
    report: dict                                  # the head_importance.json content
    grid: list[list[float | None]]                # [layer][original head]: score shown, None = gone before
    pruned: list[tuple[int, int]]                 # (layer, original head) removed now
    selection: Selection
    notes: list[str] = field(default_factory=list)


def importance_split(data: DataSettings, labels: LabelSettings, prune: PruneSettings,
                     log: Callable[[str], None]) -> Split:
    """data.dev, else data.train (said), cut to prune.max_sentences (said)."""
    name = "dev" if data.dev else "train" if data.train else None
    if name is None:
        raise SettingsError("prune needs gold data for head importance: set data.dev (or data.train)")
    split = read_split(name, getattr(data, name), data, labels)
    if name == "train":
        warn("data.dev is not set: head importance uses data.train")
    cap = prune.max_sentences
    total = len(split.sentences)
    if cap is not None and total > cap:
        split.sentences = split.sentences[:cap]
        log(f"head importance on the first {cap} of {total} {name} sentences (prune.max_sentences)")
    else:
        log(f"head importance on all {total} {name} sentences ({split.path})")
    if not split.sentences:
        raise SettingsError(f"data.{name} ({split.path}) has no sentence to score heads on")
    return split


def make_batches(split: Split, tokenizer, model, settings: Settings) -> list[dict[str, torch.Tensor]]:
    """Encode ``split`` and cut it into length-bucketed batches (data and train sections)."""
    encode_split(split, tokenizer, model.labels, settings.data)
    windows = split.windows
    order = bucket_batches([len(w) for w in windows], settings.train.batch_size,
                           settings.data.max_tokens_per_batch)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return [collate([windows[i] for i in idx], pad) for idx in order]


def score_heads(model, batches: list[dict[str, torch.Tensor]], device) -> Importance:
    """:func:`compute_importance` with a progress bar over batches."""
    rows = sum(int(b["input_ids"].shape[0]) for b in batches)
    with progress() as bar:
        task = bar.add_task("head importance", total=len(batches), info=f"{rows} windows")
        return compute_importance(model, batches, device=device, on_batch=lambda _: bar.advance(task))


def prune_model(model, scores: list[list[float]], prune_settings: PruneSettings
                ) -> tuple[Selection, list[list[int]], list[tuple[int, int]]]:
    """Select by the settings and remove in place: (selection, kept original heads, removed original)."""
    index, _ = original_heads(model)
    selection = select_heads(scores, rate=prune_settings.rate, per_layer=prune_settings.per_layer,
                             allow_empty=prune_settings.allow_empty_layers)
    removed = [(layer, index[layer][head]) for layer, head in selection.remove]
    kept = remove_heads(model, selection.remove)
    return selection, kept, removed


def _grid(values: list[list[float]], index: list[list[int]], heads: int) -> list[list[float | None]]:
    """Current-head values placed at their original head numbers (None where a head is already gone)."""
    grid: list[list[float | None]] = [[None] * heads for _ in values]
    for layer, (row, idx) in enumerate(zip(values, index, strict=True)):
        for v, h in zip(row, idx, strict=True):
            grid[layer][h] = v
    return grid


def run_prune(settings: Settings, model_ref: str | Path, output: str | Path | None, *,
              log: Callable[[str], None] | None = None, overwrite: bool = False) -> PruneResult:
    """Load, score, select, remove, save (``output`` None: nothing written, for dry runs/tests);
    returns what was done, and prints nothing (lines go to ``log``, default :func:`nerkd.log.say`).

    ``output`` is guarded by :class:`nerkd.rundir.RunFolder`: checked and locked before the model
    is loaded; a non-empty folder that is not nerkd's needs ``overwrite``; a previous model and
    run files there are replaced, nothing else is deleted. The whole settings: they are saved
    with the model (``settings.yaml``, written once, here)."""
    from nerkd.rundir import RunFolder, check_finished, check_not_input
    from nerkd.stages.export import check_after_train, export_after_train
    log = log or say
    model_ref = str(model_ref)
    check_finished(model_ref, "--model")   # an interrupted run's folder holds a half-trained model
    if output is None:
        return _prune(settings, model_ref, None, log, None)
    check_not_input(output, {"the input model's folder (--model)": model_ref, "the data.dev file": settings.data.dev,
                             "the data.train file": settings.data.train})
    check_after_train(settings)
    with RunFolder(output, overwrite=overwrite, training=False, log=log) as run:
        result = _prune(settings, model_ref, Path(output), log, run)
        export_after_train(settings, output)   # export.after_train: onnx -> <output>/onnx
        return result


def _prune(settings: Settings, model_ref: str, output: Path | None, log: Callable[[str], None], run) -> PruneResult:
    from nerkd.models.ner import NerModel, load_tokenizer

    model = NerModel.load(model_ref, what="model", option="--model")
    tokenizer = load_tokenizer(model_ref, what="model tokenizer", option="--model")
    index, known = original_heads(model)
    notes = []
    if not known:
        notes.append("the input was pruned outside nerkd: head numbers are its current ones, not the original")
        warn(notes[-1])
    p = settings.prune
    select_heads([[0.0] * n for n in model.heads], rate=p.rate, per_layer=p.per_layer,  # fail before the long pass
                 allow_empty=p.allow_empty_layers)
    split = importance_split(settings.data, settings.labels, p, log)
    imp = _importance(model, tokenizer, split, settings, log)
    scores = normalize(imp.raw) if p.normalize else imp.raw
    before = _size(model)
    selection, kept, removed = prune_model(model, scores, p)
    after = _size(model)
    log(f"removed {len(removed)} of {before['heads']} heads ({selection.mode}): "
        + (", ".join(f"L{layer}H{head}" for layer, head in removed) or "none"))
    heads = int(model.config.num_attention_heads)
    report = {
        "layers": model.num_layers, "heads": heads,
        "scores": _grid(scores, index, heads), "raw_scores": _grid(imp.raw, index, heads),
        "pruned": [list(pair) for pair in removed], "kept": kept,
        "normalize": p.normalize, "sentences": len(split.sentences),
        "params_before": before["params"], "params_after": after["params"],
        "heads_before": before["heads"], "heads_after": sum(len(k) for k in kept),
        "attention_macs_128_before": before["macs"], "attention_macs_128_after": after["macs"],
        "windows": imp.windows, "tokens": imp.tokens, "loss": loss_name(model),
        "data": {"split": split.name, "path": split.path}, "rule": selection.mode,
        "model": model_ref, "head_index": "original" if known else "current",
    }
    if output is not None:
        _save(settings, model, tokenizer, report, output, run, log)
    return PruneResult(output, report, report["scores"], removed, selection, notes)


def _importance(model, tokenizer, split: Split, settings: Settings, log: Callable[[str], None]) -> Importance:
    """Encode ``split`` and score the model's heads on ``train.device`` (the model ends on the CPU)."""
    batches = make_batches(split, tokenizer, model, settings)
    log(f"encoded: {split.encoded.summary()}")
    device = work_device(settings.train.device)   # on the CPU: the free physical cores (said below)
    log(f"scoring {sum(model.heads)} heads in {model.num_layers} layers on {describe(device)}, "
        f"loss {loss_name(model)}")
    model.to(device)
    imp = score_heads(model, batches, device)
    model.to("cpu")
    return imp


def _size(model) -> dict[str, int]:
    return {"params": count_parameters(model), "macs": attention_macs(model), "heads": sum(model.heads)}


def _save(settings: Settings, model, tokenizer, report: dict, output: Path, run, log: Callable[[str], None]) -> None:
    """The pruned model, ``head_importance.json`` and ``settings.yaml`` (once per run folder)."""
    run.fresh_start()
    model.save(output, tokenizer=tokenizer)
    write_json(output / IMPORTANCE_FILE, report)
    settings.save(output)
    log(f"saved the pruned model to {output}")
