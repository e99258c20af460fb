"""The token classifier as an ONNX graph: torch's exporters and ONNX Runtime's int8 quantiser, quietly.

The graph maps ``input_ids``/``attention_mask`` (int64, ``[batch, sequence]``, both axes dynamic)
to ``logits`` (float32, ``[batch, sequence, labels]``). :func:`export_graph` writes it with torch's
``dynamo`` exporter (``torch.export``, needs onnxscript) or the legacy ``torchscript`` tracer;
:func:`quantize_int8` quantises the weights of its MatMul/Gemm layers (dynamic int8, per channel).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from nerkd.export.manifest import ExportError

EXPORTERS = ("dynamo", "torchscript")
INPUTS = ("input_ids", "attention_mask")
AXES = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
        "logits": {0: "batch", 1: "sequence"}}


class Logits(nn.Module):
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
def quiet() -> Iterator[None]:
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


def other_exporter(exporter: str) -> str:
    """The exporter to suggest when ``exporter`` fails or does not reproduce the model."""
    return "torchscript" if exporter == "dynamo" else "dynamo"


def export_graph(module: nn.Module, example: tuple[torch.Tensor, torch.Tensor], path: Path, *, opset: int,
                 exporter: str) -> None:
    """``module(input_ids, attention_mask) -> logits`` to ``path`` (one file), batch and sequence dynamic."""
    if exporter not in EXPORTERS:
        raise ExportError(f"export.exporter {exporter!r}: expected one of {', '.join(EXPORTERS)}")
    names = {"input_names": list(INPUTS), "output_names": ["logits"]}
    try:
        with quiet(), torch.no_grad():
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
        raise ExportError(f"torch.onnx.export ({exporter}) failed: {first}; "
                          f"try --set export.exporter={other_exporter(exporter)}") from e


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of ``src`` into ``dst`` (onnxruntime.quantization, QInt8 weights, one scale
    per output channel). Per channel rather than per tensor: on the trained 3-layer WikiNEuRal student, over the
    1,260 test sentences it never saw, the entities equal to fp32's rose from 93.10% to 94.75% (|A∩B|/|A∪B|) at
    about the same speed (``benchmarks/int8_variants.py``; BENCHMARKS.md, "CPU runtimes on a trained student")."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
