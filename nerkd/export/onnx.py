"""``nerkd export --format onnx``: the token classifier as an ONNX graph, for ONNX Runtime.

The graph maps ``input_ids``/``attention_mask`` (int64, ``[batch, sequence]``, both axes dynamic)
to ``logits`` (float32, ``[batch, sequence, labels]``): the encoder and its classifier. A CRF is
not in the graph: its transitions go in the manifest and decoding stays in nerkd (the ONNX
backend, :mod:`nerkd.infer.onnx_backend`, rebuilds it). Pruned models export as they are
(unequal heads per layer: the attention reshapes with ``-1`` heads, so the traced graph keeps
each layer's own head count).

Exporters: torch's ``dynamo`` exporter (``torch.export``, needs onnxscript; the default) or the
legacy ``torchscript`` tracer (deprecated by torch, faster to run; ``export.exporter``). Either
way the export is checked before it is written: ONNX Runtime and torch must give the same
logits (within :data:`TOLERANCE`) on a padded batch of another shape than the one traced, and on
the check sentences when there are some. ``int8`` quantises the graph with
``onnxruntime.quantization.quantize_dynamic`` (int8 weights of the MatMul/Gemm layers) and
reports the share of words whose argmax tag stays that of the fp32 graph.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import torch
from torch import nn

from nerkd.export.manifest import ExportError, base_manifest, install
from nerkd.infer.onnx_backend import FORMAT_ONNX, MANIFEST, ONNX_FILE, OnnxModel, make_session, require_onnx

TOLERANCE = 1e-3       # max |logit difference| ONNX fp32 vs torch; above it the export is refused
EXPORTERS = ("dynamo", "torchscript")
INPUTS = ("input_ids", "attention_mask")
AXES = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
        "logits": {0: "batch", 1: "sequence"}}

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


@dataclass
class ExportResult:
    format: str                      # "onnx" or "hf"
    output: Path
    files: list[str]
    manifest: dict
    seconds: float = 0.0
    max_abs_diff: float | None = None    # |logits| of the export vs the torch model (fp32)
    int8: bool = False
    agreement: float | None = None       # int8: share of words whose argmax tag is the fp32 one
    agreement_words: int = 0
    notes: list[str] = field(default_factory=list)   # what the user must know (CRF, no speed gain...)


class _Logits(nn.Module):
    """``(input_ids, attention_mask) -> logits``: the graph that is exported."""

    def __init__(self, encoder_model: nn.Module):
        super().__init__()
        self.encoder_model = encoder_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder_model(input_ids=input_ids, attention_mask=attention_mask).logits


def padded_batch(vocab_size: int, pad_id: int, rows: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids with right padding of different lengths per row (the mask must stay in the graph:
    a batch without padding could let the model skip its mask while tracing)."""
    gen = torch.Generator().manual_seed(seed)
    low = min(5, vocab_size - 1)
    ids = torch.randint(low, vocab_size, (rows, width), generator=gen)
    mask = torch.ones(rows, width, dtype=torch.long)
    for r in range(1, rows):
        mask[r, max(2, width - r * width // (rows + 1)):] = 0
    ids[mask == 0] = pad_id
    return ids, mask


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No warnings or exporter/quantiser logs on the console while exporting (engine code never prints)."""
    root = logging.getLogger()
    sink = logging.NullHandler()   # root.warning() must not install a stderr handler (logging.basicConfig)
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    root.addHandler(sink)
    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for lg in loggers:
                lg.setLevel(logging.ERROR)
            yield
    finally:
        logging.disable(disabled)
        root.removeHandler(sink)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_graph(module: nn.Module, example: tuple[torch.Tensor, torch.Tensor], path: Path, *, opset: int,
                 exporter: str) -> None:
    """``module(input_ids, attention_mask) -> logits`` to ``path`` (one file), batch and sequence dynamic."""
    if exporter not in EXPORTERS:
        raise ExportError(f"export.exporter {exporter!r}: expected one of {', '.join(EXPORTERS)}")
    names = {"input_names": list(INPUTS), "output_names": ["logits"]}
    try:
        with _quiet(), torch.no_grad():
            if exporter == "dynamo":
                from torch.export import Dim

                batch, seq = Dim("batch"), Dim("sequence")
                program = torch.onnx.export(module, example, None, dynamo=True, verbose=False, opset_version=opset,
                                            dynamic_shapes={"input_ids": {0: batch, 1: seq},
                                                            "attention_mask": {0: batch, 1: seq}}, **names)
                program.save(str(path), external_data=False)
            else:
                torch.onnx.export(module, example, str(path), dynamo=False, opset_version=opset,
                                  dynamic_axes=AXES, do_constant_folding=True, **names)
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - the exporters raise many types; the message says what to try
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        other = "torchscript" if exporter == "dynamo" else "dynamo"
        raise ExportError(f"torch.onnx.export ({exporter}) failed: {first}; try --set export.exporter={other}") from e


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of ``src`` into ``dst`` (onnxruntime.quantization, QInt8 weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def _max_diff(session, module: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    ids, mask = batch
    with torch.inference_mode():
        ref = module(ids, mask)
    (got,) = session.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    keep = mask.bool()
    return float((torch.from_numpy(got) - ref).abs()[keep].max())


def _word_scores(model, tokenizer, word_lists: Sequence[Sequence[str]], max_length: int,
                 stride: int) -> list[torch.Tensor]:
    from nerkd.infer.engine import Engine

    engine = Engine(model, tokenizer, max_length=max_length, stride=stride)
    return engine.word_scores(word_lists)


def export_onnx(ref: str | Path, output: str | Path, *, int8: bool = False, opset: int = 18,
                exporter: str = "dynamo", overwrite: bool = False, texts: Sequence[str] | None = None,
                max_length: int = 128, stride: int = 32, threads: int | None = None) -> ExportResult:
    """Export the model ``ref`` to ``output`` (see module doc); ``texts`` are the check sentences
    (logits vs torch and, with ``int8``, the tag agreement)."""
    from nerkd.data.words import split_words
    from nerkd.export.manifest import check_output
    from nerkd.models.ner import NerModel, load_tokenizer

    start = time.perf_counter()
    require_onnx("nerkd export --format onnx",
                 ("onnx", "onnxruntime", *(["onnxscript"] if exporter == "dynamo" else [])))
    output = Path(output)
    check_output(output, ref, overwrite)
    model = NerModel.load(ref, what="model")
    tokenizer = load_tokenizer(ref, what="model")
    module = _Logits(model.encoder_model).eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    vocab = int(model.config.vocab_size)
    manifest = base_manifest(FORMAT_ONNX, ref, model, max_length=max_length, stride=stride)
    word_lists = [ws for ws in ([w for w, _, _ in split_words(t)] for t in (texts or [])) if ws]
    result = ExportResult("onnx", output, [], manifest, int8=int8)

    def fill(tmp: Path) -> None:
        import onnx
        import onnxruntime

        fp32 = tmp / (".fp32.onnx" if int8 else ONNX_FILE)
        export_graph(module, padded_batch(vocab, pad_id, 2, 16, seed=0), fp32, opset=opset, exporter=exporter)
        session = make_session(fp32, threads)
        diffs = [_max_diff(session, module, padded_batch(vocab, pad_id, 3, 23, seed=1))]
        onnx_fp32 = OnnxModel(session, manifest, tmp)
        if word_lists:
            ours = _word_scores(onnx_fp32, tokenizer, word_lists, max_length, stride)
            theirs = _word_scores(model, tokenizer, word_lists, max_length, stride)
            diffs += [float((a - b).abs().max()) for a, b in zip(ours, theirs, strict=True) if a.numel()]
        result.max_abs_diff = max(diffs)
        if result.max_abs_diff > TOLERANCE:
            raise ExportError(f"the ONNX graph does not reproduce {ref}: logits differ by up to "
                              f"{result.max_abs_diff:.2g} (> {TOLERANCE:g}); try --set export.exporter="
                              f"{'torchscript' if exporter == 'dynamo' else 'dynamo'}")
        if int8:
            quantize_int8(fp32, tmp / ONNX_FILE)
            fp32.unlink()
            if word_lists:
                onnx_int8 = OnnxModel(make_session(tmp / ONNX_FILE, threads), manifest, tmp)
                quant = _word_scores(onnx_int8, tokenizer, word_lists, max_length, stride)
                same = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(quant, ours, strict=True))
                result.agreement_words = sum(a.shape[0] for a in quant)
                result.agreement = same / result.agreement_words if result.agreement_words else None
        graph = onnx.load(str(tmp / ONNX_FILE), load_external_data=False)
        opset_used = next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), opset)
        manifest["onnx"] = {
            "file": ONNX_FILE, "opset": int(opset_used), "exporter": exporter, "torch": torch.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "inputs": {name: {"dtype": "int64", "shape": ["batch", "sequence"]} for name in INPUTS},
            "outputs": {"logits": {"dtype": "float32", "shape": ["batch", "sequence", len(model.labels)]}},
            "int8": int8,
            "quantization": ("onnxruntime.quantization.quantize_dynamic: int8 weights (QInt8) of MatMul/Gemm, "
                             "activations quantised at run time" if int8 else None),
            "check": {"max_abs_diff_vs_torch": result.max_abs_diff, "tolerance": TOLERANCE,
                      "sentences": len(word_lists)},
            "int8_agreement": ({"tag_agreement": result.agreement, "words": result.agreement_words,
                                "vs": "the fp32 graph, argmax of each word's first sub-token"} if int8 else None),
        }
        write_companions(tmp, model, tokenizer, manifest)
        (tmp / "README.md").write_text(onnx_readme(manifest, output), encoding="utf-8")
        (tmp / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))

    result.files = install(output, ref, fill, overwrite=overwrite)
    if model.crf is not None:
        result.notes.append("the CRF is not in the graph: its transitions are in manifest.json (crf), and "
                            "nerkd decodes with them (nerkd infer --backend onnx)")
    result.seconds = time.perf_counter() - start
    return result


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
