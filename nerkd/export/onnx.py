"""``nerkd export --format onnx``: the token classifier as an ONNX graph, for ONNX Runtime.

The graph maps ``input_ids``/``attention_mask`` (int64, ``[batch, sequence]``, both axes dynamic)
to ``logits`` (float32, ``[batch, sequence, labels]``): the encoder and its classifier. A CRF is
not in the graph: its transitions go in the manifest and decoding stays in nerkd (the ONNX
backend, :mod:`nerkd.infer.onnx_backend`, rebuilds it). Pruned models export as they are
(unequal heads per layer: the attention reshapes with ``-1`` heads, so the traced graph keeps
each layer's own head count).

Exporters (``export.exporter``): torch's legacy ``torchscript`` tracer (deprecated by torch, but its
graph runs fastest in ONNX Runtime) or the ``dynamo`` exporter (``torch.export``, needs onnxscript);
``auto`` (the default) takes the tracer, and dynamo when the tracer fails (or is gone from a later
torch) or its graph does not reproduce the model, with a note. Either way the encoder is traced
with transformers' *eager* attention (:func:`nerkd.export.onnx_opt.eager_attention`: the same
arithmetic as the SDPA nerkd runs in torch, in fewer, larger ONNX ops). On the 3-layer MiniLM
student, 1 CPU thread, infer's own batches (``benchmarks/onnx_forward.py``, 2026-11-29), ONNX
Runtime's forward against torch's: dynamo + SDPA 1.16x, dynamo + eager 1.20x, torchscript + eager
1.31x. The export is checked before it is written: ONNX Runtime and torch (its own attention) must
give the same logits (within :data:`TOLERANCE`) on a padded batch of another shape than the one
traced, and on the check sentences when there are some. ``int8`` quantises the graph with
``onnxruntime.quantization.quantize_dynamic`` (int8 weights of the MatMul/Gemm layers, per output
channel) and reports the share of words whose argmax tag stays that of the fp32 graph.

:func:`export_onnx` runs named steps: prepare (load the model, check the output folder), export the
fp32 graph (:mod:`nerkd.export.onnx_graph`), verify its logits, quantise to int8, and write the
folder (:mod:`nerkd.export.onnx_folder`).
"""


from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from nerkd.export.manifest import ExportError, base_manifest, install
from nerkd.export.onnx_folder import SNIPPET, onnx_section, write_folder
from nerkd.export.onnx_graph import Logits, export_graph, other_exporter, padded_batch, quantize_int8
from nerkd.export.onnx_opt import eager_attention
from nerkd.infer.onnx_backend import FORMAT_ONNX, ONNX_FILE, OnnxModel, make_session, require_onnx

TOLERANCE = 1e-3       # max |logit difference| ONNX fp32 vs torch; above it the export is refused
AGREEMENT_VS = "the fp32 graph, argmax of each word's first sub-token"
AUTO_ORDER = ("torchscript", "dynamo")   # export.exporter auto: the first that gives a usable graph

__all__ = ["SNIPPET", "TOLERANCE", "ExportResult", "export_onnx", "padded_batch"]


@dataclass
class ExportResult:
    format: str                      # "onnx" or "hf"
    output: Path
    files: list[str]
    manifest: dict
    seconds: float = 0.0
    max_abs_diff: float | None = None    # |logits| of the export vs the torch model (fp32)
    exporter: str | None = None          # the exporter that wrote the graph (``auto`` picks one)
    int8: bool = False
    agreement: float | None = None       # int8: share of words whose argmax tag is the fp32 one
    agreement_words: int = 0
    notes: list[str] = field(default_factory=list)   # what the user must know (CRF, no speed gain...)


@dataclass
class _Job:
    """What the steps of one ONNX export share: the source model and the export's settings."""

    ref: str | Path
    output: Path
    model: nn.Module
    tokenizer: object
    manifest: dict
    word_lists: list[list[str]]
    int8: bool
    opset: int
    exporter: str
    max_length: int
    stride: int
    threads: int | None
    module: nn.Module = field(init=False)   # the graph's torch module (model.encoder_model -> logits)

    def __post_init__(self):
        self.module = Logits(self.model.encoder_model).eval()

    def batch(self, rows: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return padded_batch(int(self.model.config.vocab_size), pad_id, rows, width, seed=seed)

    def word_scores(self, model) -> list[torch.Tensor]:
        return _word_scores(model, self.tokenizer, self.word_lists, self.max_length, self.stride)


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
                exporter: str = "auto", overwrite: bool = False, texts: Sequence[str] | None = None,
                max_length: int = 128, stride: int = 32, threads: int | None = None) -> ExportResult:
    """Export the model ``ref`` to ``output`` (see module doc); ``texts`` are the check sentences
    (logits vs torch and, with ``int8``, the tag agreement)."""
    start = time.perf_counter()
    job = _prepare(ref, Path(output), int8=int8, opset=opset, exporter=exporter, overwrite=overwrite, texts=texts,
                   max_length=max_length, stride=stride, threads=threads)
    result = ExportResult("onnx", job.output, [], job.manifest, int8=int8)
    result.files = install(job.output, ref, functools.partial(_fill, job, result), overwrite=overwrite)
    if job.model.crf is not None:
        result.notes.append("the CRF is not in the graph: its transitions are in manifest.json (crf), and "
                            "nerkd decodes with them (nerkd infer --backend onnx)")
    result.seconds = time.perf_counter() - start
    return result


def _prepare(ref: str | Path, output: Path, *, int8: bool, opset: int, exporter: str, overwrite: bool,
             texts: Sequence[str] | None, max_length: int, stride: int, threads: int | None) -> _Job:
    """The extras are there, the output folder may be written, the model and tokenizer are loaded."""
    from nerkd.data.words import split_words
    from nerkd.export.manifest import check_output
    from nerkd.models.ner import NerModel, load_tokenizer

    require_onnx("nerkd export --format onnx",
                 ("onnx", "onnxruntime", *(["onnxscript"] if exporter == "dynamo" else [])))
    if exporter not in ("auto", *AUTO_ORDER):
        raise ExportError(f"export.exporter {exporter!r}: expected one of auto, {', '.join(AUTO_ORDER)}")
    check_output(output, ref, overwrite)
    model = NerModel.load(ref, what="model")
    tokenizer = load_tokenizer(ref, what="model")
    manifest = base_manifest(FORMAT_ONNX, ref, model, max_length=max_length, stride=stride)
    word_lists = [ws for ws in ([w for w, _, _ in split_words(t)] for t in (texts or [])) if ws]
    return _Job(ref, output, model, tokenizer, manifest, word_lists, int8=int8, opset=opset, exporter=exporter,
                max_length=max_length, stride=stride, threads=threads)


def _fill(job: _Job, result: ExportResult, tmp: Path) -> None:
    """The export folder's content, written into ``tmp`` (installed as ``job.output`` once complete)."""
    fp32 = tmp / (".fp32.onnx" if job.int8 else ONNX_FILE)
    result.max_abs_diff, ours = _export_checked(job, result, fp32)
    if job.int8:
        result.agreement, result.agreement_words = _quantise(job, fp32, ours)
    agreement = ({"tag_agreement": result.agreement, "words": result.agreement_words, "vs": AGREEMENT_VS}
                 if job.int8 else None)
    check = {"max_abs_diff_vs_torch": result.max_abs_diff, "tolerance": TOLERANCE,
             "sentences": len(job.word_lists)}
    job.manifest["onnx"] = onnx_section(tmp / ONNX_FILE, opset=job.opset, exporter=result.exporter,
                                        n_labels=len(job.model.labels), int8=job.int8, check=check,
                                        agreement=agreement)
    write_folder(tmp, job.model, job.tokenizer, job.manifest, job.output)


def _export_checked(job: _Job, result: ExportResult, fp32: Path) -> tuple[float, list[torch.Tensor] | None]:
    """The fp32 graph written to ``fp32`` and verified (:func:`_verify`). ``auto``: the TorchScript tracer,
    else (it failed, is gone from this torch, or does not reproduce the model) dynamo, said in a note."""
    exporters = AUTO_ORDER if job.exporter == "auto" else (job.exporter,)
    for exporter, fallback in zip(exporters[:-1], exporters[1:], strict=True):
        try:
            return _export_one(job, result, fp32, exporter)
        except ExportError as e:
            result.notes.append(f"the {exporter} exporter did not give a usable graph ({e}); exported with "
                                f"{fallback} instead")
    return _export_one(job, result, fp32, exporters[-1])


def _export_one(job: _Job, result: ExportResult, fp32: Path, exporter: str) -> tuple[float, list[torch.Tensor] | None]:
    with eager_attention(job.model.encoder_model):
        export_graph(job.module, job.batch(2, 16, seed=0), fp32, opset=job.opset, exporter=exporter)
    checked = _verify(job, fp32, exporter)
    result.exporter = exporter
    return checked


def _verify(job: _Job, fp32: Path, exporter: str) -> tuple[float, list[torch.Tensor] | None]:
    """The largest logit difference of the fp32 graph vs torch, on a padded batch of another shape than the
    traced one and on the check sentences (whose ONNX word scores are returned); over :data:`TOLERANCE`
    the export is refused."""
    session = make_session(fp32, job.threads)
    diffs = [_max_diff(session, job.module, job.batch(3, 23, seed=1))]
    ours = None
    if job.word_lists:
        ours = job.word_scores(OnnxModel(session, job.manifest, fp32.parent))
        theirs = job.word_scores(job.model)
        diffs += [float((a - b).abs().max()) for a, b in zip(ours, theirs, strict=True) if a.numel()]
    worst = max(diffs)
    if worst > TOLERANCE:
        raise ExportError(f"the ONNX graph does not reproduce {job.ref}: logits differ by up to "
                          f"{worst:.2g} (> {TOLERANCE:g}); try --set export.exporter={other_exporter(exporter)}")
    return worst, ours


def _quantise(job: _Job, fp32: Path, ours: list[torch.Tensor] | None) -> tuple[float | None, int]:
    """``fp32`` quantised into the folder's graph (and removed); the share of the check sentences' words whose
    argmax tag stays the fp32 graph's, and their count (``None, 0`` without check sentences)."""
    graph = fp32.parent / ONNX_FILE
    quantize_int8(fp32, graph)
    fp32.unlink()
    if ours is None:
        return None, 0
    quant = job.word_scores(OnnxModel(make_session(graph, job.threads), job.manifest, fp32.parent))
    same = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(quant, ours, strict=True))
    words = sum(a.shape[0] for a in quant)
    return (same / words if words else None), words
