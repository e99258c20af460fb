"""What an ONNX export folder holds besides the graph: the manifest's ``onnx`` section, ``config.json``,
the tokenizer, ``label2id.json``, a README with a ten-line onnxruntime snippet, and ``manifest.json``."""

from __future__ import annotations

from pathlib import Path

import orjson

from nerkd.export.onnx_graph import INPUTS
from nerkd.infer.onnx_backend import MANIFEST, ONNX_FILE

SNIPPET = '''\
import json, onnxruntime as ort
from transformers import AutoTokenizer
folder = "{folder}"
labels = json.load(open(f"{{folder}}/manifest.json"))["labels"]
tok = AutoTokenizer.from_pretrained(folder)
session = ort.InferenceSession(f"{{folder}}/model.onnx", providers=["CPUExecutionProvider"])
words = "Emmanuel Macron a visité l' hôpital de Lyon .".split()
enc = tok(words, is_split_into_words=True, return_tensors="np")
logits = session.run(["logits"], {{"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}})[0][0]
print([(w, labels[logits[enc.word_ids().index(i)].argmax()]) for i, w in enumerate(words)])
'''

QUANTIZATION = ("onnxruntime.quantization.quantize_dynamic: int8 weights (QInt8, one scale per output channel) of "
                "MatMul/Gemm, "
                "activations quantised at run time")


def onnx_section(graph: Path, *, opset: int, exporter: str, n_labels: int, int8: bool, check: dict,
                 agreement: dict | None) -> dict:
    """The manifest's ``onnx`` entry: file, opset actually used, versions, inputs and outputs, int8, checks."""
    import onnx
    import onnxruntime
    import torch

    model = onnx.load(str(graph), load_external_data=False)
    opset_used = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    return {
        "file": ONNX_FILE, "opset": int(opset_used), "exporter": exporter,
        "attention": "eager",   # nerkd export traces transformers' eager attention (onnx_opt.eager_attention)
        "torch": torch.__version__,
        "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
        "inputs": {name: {"dtype": "int64", "shape": ["batch", "sequence"]} for name in INPUTS},
        "outputs": {"logits": {"dtype": "float32", "shape": ["batch", "sequence", n_labels]}},
        "int8": int8,
        "quantization": QUANTIZATION if int8 else None,
        "check": check,
        "int8_agreement": agreement,
    }


def write_folder(folder: Path, model, tokenizer, manifest: dict, output: Path) -> None:
    """Everything but the graph into ``folder`` (the temporary folder that becomes ``output``)."""
    write_companions(folder, model, tokenizer, manifest)
    (folder / "README.md").write_text(onnx_readme(manifest, output), encoding="utf-8")
    (folder / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))


def write_companions(folder: Path, model, tokenizer, manifest: dict) -> None:
    """``config.json`` (the source's, real ``model_type``), the tokenizer and ``label2id.json``."""
    from nerkd.prune.apply import INDEX_KEY

    data = model.config.to_dict()
    data.pop(INDEX_KEY, None)
    data["nerkd"] = {**(data.get("nerkd") or {}), "crf": model.crf is not None, "heads": model.heads,
                     "export": manifest["format"]}
    options = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    (folder / "config.json").write_bytes(orjson.dumps(data, option=options))
    tokenizer.save_pretrained(folder)
    (folder / "label2id.json").write_bytes(orjson.dumps(manifest["label2id"], option=orjson.OPT_INDENT_2))


def onnx_readme(manifest: dict, output: Path) -> str:
    onnx_info = manifest["onnx"]
    crf = ("\nThe model has a CRF: it is not in the graph. Its transitions are in `manifest.json` (`crf`); "
           "nerkd decodes with them.\n" if manifest.get("crf") else "")
    quant = f"\nInt8: {onnx_info['quantization']}.\n" if onnx_info["int8"] else ""
    return (f"# ONNX export of {manifest['source']['model']}\n\n"
            f"Written by nerkd {manifest['nerkd_version']} (`nerkd export --format onnx`), opset {onnx_info['opset']}; "
            f"source weights sha256 `{manifest['source']['sha256']}`.\n\n"
            f"Inputs `input_ids`, `attention_mask` (int64, [batch, sequence]); output `logits` "
            f"(float32, [batch, sequence, {len(manifest['labels'])}]). Labels: {', '.join(manifest['labels'])}.\n"
            f"{crf}{quant}\n"
            f"Run it with nerkd (same words, windows and decoding as the torch model):\n\n"
            f"    nerkd infer --backend onnx --model {output} < texts.txt > entities.jsonl\n\n"
            f"Or with onnxruntime alone (plain argmax per word; nerkd decodes with the manifest's rule: "
            f"{manifest['decode']['method']}):\n\n```python\n{SNIPPET.format(folder=output)}```\n\n"
            f"How nerkd decodes: {manifest['decode']['text']}\n")
