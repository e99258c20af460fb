"""``nerkd export --format hf``: a folder that plain ``AutoModelForTokenClassification`` loads.

No nerkd and no ``trust_remote_code`` needed. A pruned model is rebuilt with every layer's full
``num_attention_heads``: each kept head's query/key/value rows and output-projection columns go
back into the slot of its original index (:func:`nerkd.prune.apply.original_heads`), the removed
heads get zero weights. A zero head adds nothing (zero values, zero output columns), so the logits
are those of the pruned model, but it costs what a full model costs: **no speed gain** (nerkd or
the ONNX export keep the pruned speed). A CRF cannot be expressed in a transformers config: the
folder keeps it for nerkd (``crf.safetensors``, ``manifest.json``), and transformers, its pipeline
included, decodes the emissions without it (argmax per token).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
import torch

from nerkd.export.manifest import FORMAT_HF, ExportError, base_manifest, check_output, install
from nerkd.export.onnx import TOLERANCE, ExportResult, padded_batch
from nerkd.infer.onnx_backend import MANIFEST

NO_SPEED_GAIN = ("pruned heads come back as zero-weight heads: the outputs are the pruned model's, but it runs at "
                 "the full model's cost (no speed gain; nerkd itself or the ONNX export keep the pruned speed)")
CRF_NOTE = ("the model has a CRF, which transformers cannot express: AutoModelForTokenClassification and its "
            "pipeline decode WITHOUT the CRF (argmax per token), so their tags can differ from nerkd's; the CRF is "
            "kept in crf.safetensors and manifest.json (crf) for nerkd")


def restore_heads(model):
    """A :class:`~nerkd.models.ner.NerModel` with every layer's full head count, computing the same
    logits as ``model`` (removed heads as zero weights). Returns ``(full model, kept original heads
    per layer, whether the original positions were known)``."""
    from transformers import AutoModelForTokenClassification

    from nerkd.models.heads import EmptySelfAttention, encoder_layers
    from nerkd.models.ner import NerModel
    from nerkd.prune.apply import INDEX_KEY, original_heads

    index, known = original_heads(model)
    config = copy.deepcopy(model.config)
    if hasattr(config, INDEX_KEY):
        delattr(config, INDEX_KEY)
    config.nerkd = None
    full_encoder = AutoModelForTokenClassification.from_config(config)
    full = NerModel(full_encoder, crf=model.crf is not None).eval()
    src = model.encoder_model.state_dict()
    dst = full_encoder.state_dict()
    same = {k: v for k, v in src.items() if k in dst and v.shape == dst[k].shape}
    full_encoder.load_state_dict(same, strict=False)
    src_layers, dst_layers = encoder_layers(model), encoder_layers(full)
    attention = set()
    for la in dst_layers:
        prefix = _prefix(full_encoder, la.attention)
        attention |= {k for k in dst if k.startswith(prefix)}
    missing = [k for k in dst if k not in same and k not in attention]
    if missing:
        raise ExportError(f"cannot rebuild the full model: no weights for {missing[:3]}")
    with torch.no_grad():
        for s, d, heads in zip(src_layers, dst_layers, index, strict=True):
            size = d.head_size
            if size != s.head_size or any(not 0 <= h < d.num_heads for h in heads):
                raise ExportError(f"layer {s.index}: head index {heads} does not fit {d.num_heads} heads of {size}")
            for name in ("query", "key", "value"):
                lin = getattr(d.self_attn, name)
                lin.weight.zero_()
                lin.bias.zero_()
                if isinstance(s.self_attn, EmptySelfAttention):
                    continue
                src_lin = getattr(s.self_attn, name)
                for j, h in enumerate(heads):
                    lin.weight[h * size:(h + 1) * size] = src_lin.weight[j * size:(j + 1) * size]
                    lin.bias[h * size:(h + 1) * size] = src_lin.bias[j * size:(j + 1) * size]
            out = d.out_proj
            out.weight.zero_()
            for j, h in enumerate(heads):
                out.weight[:, h * size:(h + 1) * size] = s.out_proj.weight[:, j * size:(j + 1) * size]
            out.bias.copy_(s.out_proj.bias)
    if model.crf is not None:
        full.crf.load_state_dict(model.crf.state_dict())
    return full, index, known


def _prefix(root: torch.nn.Module, module: torch.nn.Module) -> str:
    for name, mod in root.named_modules():
        if mod is module:
            return name + "."
    raise ExportError("attention module not found in the model")


def export_hf(ref: str | Path, output: str | Path, *, overwrite: bool = False, texts: Sequence[str] | None = None,
              max_length: int = 128, stride: int = 32) -> ExportResult:
    """Export ``ref`` as a plain transformers folder at ``output`` (see module doc); ``texts`` are
    check sentences (their word logits must match the source model's)."""
    from nerkd.data.words import split_words
    from nerkd.export.onnx import _word_scores
    from nerkd.models.ner import NerModel, load_tokenizer
    from nerkd.prune.apply import INDEX_KEY

    start = time.perf_counter()
    output = Path(output)
    check_output(output, ref, overwrite)
    model = NerModel.load(ref, what="model")
    tokenizer = load_tokenizer(ref, what="model")
    full, index, known = restore_heads(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, mask = padded_batch(int(model.config.vocab_size), pad_id, 3, 23, seed=1)
    with torch.inference_mode():
        diff = (full(ids, mask).logits - model(ids, mask).logits).abs()[mask.bool()].max()
    diffs = [float(diff)]
    word_lists = [ws for ws in ([w for w, _, _ in split_words(t)] for t in (texts or [])) if ws]
    if word_lists:
        ours = _word_scores(full, tokenizer, word_lists, max_length, stride)
        theirs = _word_scores(model, tokenizer, word_lists, max_length, stride)
        diffs += [float((a - b).abs().max()) for a, b in zip(ours, theirs, strict=True) if a.numel()]
    if max(diffs) > TOLERANCE:
        raise ExportError(f"the rebuilt full model does not reproduce {ref}: logits differ by up to {max(diffs):.2g}")
    manifest = base_manifest(FORMAT_HF, ref, model, max_length=max_length, stride=stride)
    notes = []
    if model.is_pruned:
        notes.append(NO_SPEED_GAIN)
    if model.crf is not None:
        notes.append(CRF_NOTE)
    manifest["hf"] = {
        "loads_with": "transformers.AutoModelForTokenClassification.from_pretrained(folder) "
                      "(no trust_remote_code, no nerkd)",
        "pruned_heads": ({"kept_original_heads": index, "original_positions_known": known,
                          "removed_heads": "zero weights (query/key/value rows and output-projection columns)",
                          "speed": "no speed gain: same cost as the unpruned model"} if model.is_pruned else None),
        "crf": CRF_NOTE if model.crf is not None else None,
        "check": {"max_abs_diff_vs_source": max(diffs), "tolerance": TOLERANCE, "sentences": len(word_lists)},
        "notes": notes,
    }
    if model.is_pruned:
        manifest["model"]["restored_heads"] = [int(model.config.num_attention_heads)] * len(index)

    def fill(tmp: Path) -> None:
        full._save_into(tmp, tokenizer)   # config.json (real model_type, id2label/label2id), weights, tokenizer
        cfg = orjson.loads((tmp / "config.json").read_bytes())
        cfg.pop(INDEX_KEY, None)
        cfg["nerkd"] = {"crf": model.crf is not None, "heads": None, "version": 1, "export": FORMAT_HF}
        (tmp / "config.json").write_bytes(orjson.dumps(cfg, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        (tmp / "label2id.json").write_bytes(orjson.dumps(manifest["label2id"], option=orjson.OPT_INDENT_2))
        (tmp / "README.md").write_text(hf_readme(manifest, output, notes), encoding="utf-8")
        (tmp / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))

    files = install(output, ref, fill, overwrite=overwrite)
    return ExportResult("hf", output, files, manifest, seconds=time.perf_counter() - start, max_abs_diff=max(diffs),
                        notes=notes)


def hf_readme(manifest: dict, output: Path, notes: list[str]) -> str:
    warn = "".join(f"\n**Note:** {n}.\n" for n in notes)
    return (f"# Hugging Face export of {manifest['source']['model']}\n\n"
            f"Written by nerkd {manifest['nerkd_version']} (`nerkd export --format hf`); source weights sha256 "
            f"`{manifest['source']['sha256']}`. Labels: {', '.join(manifest['labels'])} ({manifest['scheme']}).\n"
            f"{warn}\n"
            f"Load it with plain transformers (no nerkd, no trust_remote_code):\n\n```python\n"
            f"from transformers import pipeline\n"
            f"ner = pipeline(\"token-classification\", model=\"{output}\", aggregation_strategy=\"first\")\n"
            f"print(ner(\"Emmanuel Macron a visité l'hôpital de Lyon.\"))\n```\n\n"
            f"`aggregation_strategy=\"first\"` is the call that matches nerkd, which trains each word's label on its "
            f"first sub-word (`\"simple\"` tags sub-words one by one and cuts words). The pipeline finds words by "
            f"the tokenizer's words (WordPiece) or by the spaces around sub-words (SentencePiece, with a warning "
            f"\"Tokenizer does not support real words\"): punctuation glued to a word is then part of its entity "
            f"(`Lyon.`), where nerkd's French words keep it apart.\n\n"
            f"The pipeline tags the raw text's sub-words; nerkd tags words ({manifest['decode']['method']}): "
            f"{manifest['decode']['text']}\n")
