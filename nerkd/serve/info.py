"""What ``GET /v1/model`` says about the served model: labels, size, versions and the weights' hashes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from nerkd.io import combined_sha256, file_sha256

WEIGHT_SUFFIXES = (".safetensors", ".onnx")


def weights_sha256(folder: str | Path) -> dict[str, str]:
    """``{file name: sha256}`` of the weight files (``*.safetensors``, ``*.onnx``) of a local model folder,
    sorted by name; ``{}`` for a hub id or a folder without weights. Check one with ``sha256sum FILE``."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    return {p.name: file_sha256(p) for p in files}


def _source_sha256(ref: str | Path) -> str | None:
    """The source model's hash recorded in an export folder's ``manifest.json`` (``nerkd export``), if any."""
    path = Path(ref) / "manifest.json"
    if not path.is_file():
        return None
    try:
        source = orjson.loads(path.read_bytes()).get("source") or {}
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return None
    return source.get("sha256") if isinstance(source, dict) else None


def model_info(ref: str | Path, engine: Any, *, threads: int | None = None) -> dict:
    """The JSON of ``GET /v1/model`` (hashes computed here: call it once, after loading).

    ``sha256``/``weights_sha256``: the served weight files; ``source_sha256``: the model they come
    from (for an export folder, the hash its manifest records; otherwise the same as ``sha256``)."""
    from nerkd import __version__

    files = weights_sha256(ref)
    combined = combined_sha256(files)
    space = engine.space
    model = getattr(engine, "model", None)
    device = getattr(engine, "device", None)
    return {
        "name": Path(str(ref)).name or str(ref),
        "labels": list(space.labels),
        "types": list(space.types),
        "parameters": int(getattr(engine, "num_parameters", 0) or 0),
        "crf": getattr(model, "crf", None) is not None,
        "pruned": bool(getattr(model, "is_pruned", False)),
        "nerkd_version": __version__,
        "sha256": combined,
        "weights_sha256": files,
        "source_sha256": _source_sha256(ref) or combined,
        "backend": getattr(engine, "backend", "torch"),
        "device": getattr(device, "type", str(device)) if device is not None else "cpu",
        "precision": getattr(engine, "precision", None),
        "int8": bool(getattr(engine, "int8", False)),
        "max_length": getattr(engine, "max_length", None),
        "stride": getattr(engine, "stride", None),
        "tokenize": getattr(engine, "tokenize", None),
        "threads": threads,
    }
