"""Which runtime runs a model: the one decision behind ``infer.backend`` (``--backend``).

``torch`` and ``onnx`` are taken as said. ``auto`` (the default) runs a folder written by ``nerkd export
--format onnx`` on ONNX Runtime, and a model folder on ONNX Runtime too when it has a *verified* fp32 export
(same answers as torch, 1.6-1.9x faster at batch 1 on a CPU: BENCHMARKS.md): inside it (``<model>/onnx``, what
``export.after_train: onnx`` writes) or beside it (``<model>_onnx``, ``nerkd export``'s default name for a model
under the artifacts folder). Verified means:

* the export's manifest records the sha256 of its source weight files (``source.weights_sha256``) and they
  equal the sha256 of the model folder's weight files now (so the export is of these weights);
* the export is fp32 (an int8 export changes answers: it runs only when asked for, ``--backend onnx --model
  <export>``);
* onnxruntime is importable, and the run is one ONNX Runtime can do as torch would: on the CPU, in fp32, without
  ``int8`` (torch's dynamic int8) or ``compile``.

Otherwise torch runs the model. Either way :func:`choose_backend` gives one line saying which runtime and why;
:func:`nerkd.infer.load_engine` says it before it loads (``nerkd serve`` says it in its first line).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nerkd.errors import ModelLoadError
from nerkd.infer.onnx_backend import FORMAT_ONNX, ONNX_FILE, read_manifest, resolve_backend
from nerkd.io import combined_sha256, file_sha256

if TYPE_CHECKING:
    from nerkd.settings import InferSettings

INSIDE = "onnx"                     # <model>/onnx: where export.after_train writes
BESIDE = ("_onnx", "_onnx_int8")    # <model>_onnx (nerkd export's default), <model>_onnx_int8 (its --int8 default)
WEIGHT_SUFFIXES = (".safetensors",)  # the files an export's manifest hashes (nerkd.export.manifest.source_hashes)
TORCH_HINT = "--backend torch to use torch"


@dataclass(frozen=True)
class BackendChoice:
    """What runs: ``backend`` (torch or onnx) on ``ref`` (the model, or the export that runs it)."""

    backend: str
    ref: str | Path
    line: str | None = None     # which runtime and why (None: as asked, nothing to say)
    export: Path | None = None  # the verified export that runs a model folder


def export_candidates(model: Path) -> list[Path]:
    """Where a model folder's ONNX export may be: inside it, then beside it."""
    return [model / INSIDE, *(model.with_name(model.name + suffix) for suffix in BESIDE)]


def weight_hashes(folder: Path) -> dict[str, str]:
    """``{file: sha256}`` of a model folder's weight files (what an export's manifest records of its source)."""
    return {p.name: file_sha256(p) for p in sorted(folder.iterdir())
            if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)}


def _short(digest: object) -> str:
    return f"{str(digest)[:12]}…" if digest else "?"


def check_export(export: Path, hashes: dict[str, str]) -> str | None:
    """None when ``export`` is a verified fp32 export of the weights ``hashes``; else why not (a phrase), or
    ``""`` when ``export`` is no ONNX export at all."""
    try:
        manifest = read_manifest(export) if export.is_dir() else None
    except ModelLoadError:
        manifest = None
    if manifest is None or manifest.get("format") != FORMAT_ONNX or not (export / ONNX_FILE).is_file():
        return ""
    if (manifest.get("onnx") or {}).get("int8"):
        return (f"the ONNX export {export} is int8 (its answers differ from torch's): --backend onnx --model "
                f"{export} runs it")
    source = manifest.get("source") or {}
    recorded = source.get("weights_sha256")
    if not isinstance(recorded, dict) or not recorded:
        return f"the ONNX export {export} records no sha256 of its source weights: export the model again to use it"
    if recorded != hashes:
        now = combined_sha256(hashes)
        return (f"the ONNX export {export} is of other weights (sha256 {_short(source.get('sha256'))}, the model's "
                f"now {_short(now)}): export the model again to use it")
    return None


def onnxruntime_available() -> bool:
    try:
        return importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):
        return False


def _runtime_blocker(settings: InferSettings) -> str | None:
    """Why these settings need torch (None: ONNX Runtime can run them as torch would)."""
    from nerkd.device import resolve_device, resolve_precision

    device = resolve_device(settings.device)
    if device.type != "cpu":
        return f"the model runs on {device.type} (ONNX Runtime runs here on the CPU only)"
    precision = resolve_precision(settings.precision, device)
    if precision != "fp32":
        return f"precision {precision} (an fp32 ONNX export runs fp32)"
    if settings.int8:
        return "int8 asks for torch's dynamic int8 (for ONNX int8: nerkd export --int8, then --backend onnx)"
    if settings.compile:
        return "compile asks for torch.compile"
    return None


def choose_backend(model: str | Path, settings: InferSettings) -> BackendChoice:
    """The runtime of ``model`` under ``settings`` (the ``infer`` section with a command's overrides): see the
    module doc. A wrong ``backend`` is a :class:`~nerkd.errors.SettingsError` (e.g. torch on an export)."""
    asked = resolve_backend(model, settings.backend)
    if settings.backend != "auto" or asked == "onnx":
        return BackendChoice(asked, model)
    folder = Path(model)
    if not folder.is_dir():
        return BackendChoice("torch", model, f"backend torch: {model} is not a local folder (no ONNX export to run)")
    blocker = _runtime_blocker(settings)
    if blocker:
        return BackendChoice("torch", model, f"backend torch: {blocker}")
    return _verified_or_torch(model, folder)


def _verified_or_torch(model: str | Path, folder: Path) -> BackendChoice:
    """ONNX Runtime on the first verified fp32 export of ``folder``, else torch with the first reason."""
    candidates = [c for c in export_candidates(folder) if c.is_dir()]
    reasons = []
    hashes = weight_hashes(folder) if candidates else {}
    for export in candidates:
        why = check_export(export, hashes)
        if why is None:
            if not onnxruntime_available():
                return BackendChoice("torch", model, f"backend torch: onnxruntime is not installed, so the ONNX "
                                                     f"export {export} is not used (pip install 'nerkd[onnx]')")
            return BackendChoice("onnx", export, f"backend onnx: verified export {export} of these weights "
                                                 f"(sha256 {_short(combined_sha256(hashes))}); {TORCH_HINT}", export)
        if why:
            reasons.append(why)
    if reasons:
        return BackendChoice("torch", model, f"backend torch: {reasons[0]}")
    inside, beside = export_candidates(folder)[:2]
    return BackendChoice("torch", model, f"backend torch: no ONNX export in {inside} or {beside} (nerkd export "
                                         f"--format onnx --model {model} --output {beside}: faster on a CPU, same "
                                         f"answers)")


__all__ = ["BackendChoice", "check_export", "choose_backend", "export_candidates", "weight_hashes"]
