"""``nerkd export``: the model as an ONNX graph (for ONNX Runtime) or as a plain Hugging Face folder.

Both formats write ``manifest.json`` (:mod:`nerkd.export.manifest`): nerkd version, the source
model's weights hash, labels and scheme, CRF transitions, window sizes and how to decode. Each
export is checked against the model it comes from before it is written.
"""

from __future__ import annotations

from pathlib import Path

from nerkd.export.hf import export_hf
from nerkd.export.manifest import ExportError
from nerkd.export.onnx import ExportResult, export_onnx


def check_texts(settings, input_path: str | Path | None, limit: int) -> tuple[list[str], str | None]:
    """Up to ``limit`` non-empty check sentences and where they come from: ``input_path`` (text or
    JSONL lines), else ``data.dev``, else ``data.test`` (detokenised); none when neither is set."""
    if limit <= 0:
        return [], None
    from nerkd.infer.io import file_texts, gold_texts

    if input_path is not None:
        return file_texts(input_path, limit), str(input_path)
    source = settings.data.dev or settings.data.test
    if not source:
        return [], None
    return gold_texts(source, settings.data.format, limit), str(source)


__all__ = ["ExportError", "ExportResult", "check_texts", "export_hf", "export_onnx"]
