"""``nerkd export``: which model, which format and where, then the export itself (:mod:`nerkd.export`).

:func:`run_export` decides what the command's options leave open: the model (the newest distill,
prune or finetune output), the format and int8 (``export.format``, ``export.int8``; int8 is for ONNX
only), the output folder (``<artifacts>/<model>_onnx``, ``_onnx_int8`` or ``_hf``) and the check
sentences (:func:`nerkd.export.check_texts`). It says its plan through :mod:`nerkd.log` and returns
an :class:`ExportRun` for the caller to show. Nothing is printed here.

:func:`export_after_train` is the same export at the end of ``nerkd finetune`` and ``nerkd prune``
(``export.after_train: onnx``): the run's fp32 ONNX export in ``<output>/onnx``, where ``nerkd infer``,
``serve`` and ``bench`` find it and run it on ONNX Runtime (:func:`nerkd.infer.choose_backend`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nerkd.errors import NerkdError
from nerkd.log import say
from nerkd.stages.infer import resolve_model

if TYPE_CHECKING:
    from nerkd.export import ExportResult
    from nerkd.project import Project
    from nerkd.settings import ExportSettings, Settings


@dataclass
class ExportRun:
    result: ExportResult     # files, checks, int8 agreement, notes (:class:`nerkd.export.ExportResult`)
    kind: str                # "onnx" or "hf"
    target: Path             # the folder written
    checked: int             # check sentences the export was compared on (0: a padded batch only)


def export_target(ref: str | Path, kind: str, int8: bool, artifacts: Path) -> Path:
    """The default output folder: ``<artifacts>/<model folder name>_onnx``, ``_onnx_int8`` or ``_hf``."""
    suffix = "hf" if kind == "hf" else ("onnx_int8" if int8 else "onnx")
    return artifacts / f"{Path(str(ref)).name}_{suffix}"


def run_export(settings: Settings, project: Project, model: str | Path | None = None, *, fmt: str | None = None,
               int8: bool | None = None, output: Path | None = None, overwrite: bool = False,
               input_path: Path | None = None) -> ExportRun:
    """Export ``model`` (default: the newest stage output) as ``fmt`` (default ``export.format``) into
    ``output`` (default :func:`export_target`); ``int8`` (default ``export.int8``) is for onnx only;
    ``input_path``: check sentences (default ``data.dev``, else ``data.test``)."""
    st = settings.export
    kind = fmt or st.format
    quant = st.int8 if int8 is None else int8
    if quant and kind != "onnx":
        raise NerkdError("--int8 is for --format onnx (the hf folder is fp32)")
    ref = resolve_model(model, project, settings.paths.artifacts, purpose="export")
    target = output or export_target(ref, kind, quant, project.artifacts(settings.paths.artifacts))
    return export_model(settings, ref, target, kind=kind, int8=quant, overwrite=overwrite, input_path=input_path)


def export_model(settings: Settings, ref: str | Path, target: Path, *, kind: str, int8: bool, overwrite: bool,
                 input_path: Path | None = None) -> ExportRun:
    """Export ``ref`` as ``kind`` (onnx or hf; ``int8``: onnx only) into ``target``, checked on the sentences of
    ``input_path`` (default ``data.dev``, else ``data.test``); says the plan first."""
    from nerkd.export import check_texts, export_hf, export_onnx

    st = settings.export
    texts, source = check_texts(settings, input_path, st.check_sentences)
    say(f"export: {ref} -> {target} ({_plan(kind, int8, st)}; {_checked(texts, source)})")
    window = {"max_length": settings.data.max_length, "stride": settings.data.stride}
    if kind == "onnx":
        result = export_onnx(ref, target, int8=int8, opset=st.opset, exporter=st.exporter, overwrite=overwrite,
                             texts=texts, **window)
    else:
        result = export_hf(ref, target, overwrite=overwrite, texts=texts, **window)
    return ExportRun(result, kind, Path(target), len(texts))


def check_after_train(settings: Settings) -> None:
    """Before a run trains: ``export.after_train: onnx`` needs the onnx extra (one line naming it), not after."""
    if settings.export.after_train == "onnx":
        from nerkd.infer.onnx_backend import require_onnx

        require_onnx("export.after_train: onnx",
                     ("onnx", "onnxruntime", *(["onnxscript"] if settings.export.exporter == "dynamo" else [])))


def export_after_train(settings: Settings, folder: str | Path) -> ExportRun | None:
    """``export.after_train: onnx``: the fp32 ONNX export of the model a run just saved in ``folder``, into
    ``folder/onnx`` (a previous run's export there is replaced), as ``nerkd export --format onnx`` writes and
    checks it; None when the setting is ``none``. A failure says that the model itself is saved."""
    from nerkd.infer.backend import INSIDE

    if settings.export.after_train != "onnx":
        return None
    target = Path(folder) / INSIDE
    try:
        run = export_model(settings, folder, target, kind="onnx", int8=False, overwrite=False)
    except NerkdError as e:
        raise NerkdError(f"{e} (export.after_train: the model is saved in {folder}; nerkd export --format onnx "
                         f"--model {folder} --output {target} tries again)") from e
    say(f"export.after_train: wrote {target} (fp32, max |logit difference| vs torch "
        f"{_diff(run.result.max_abs_diff)}): nerkd infer, serve and bench run it on a CPU")
    return run


def _diff(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.1e}"


def _plan(kind: str, quant: bool, st: ExportSettings) -> str:
    exporter = "torchscript exporter (dynamo if it fails)" if st.exporter == "auto" else f"{st.exporter} exporter"
    return f"onnx{' int8' if quant else ''}, {exporter}, opset {st.opset}" if kind == "onnx" else "hf"


def _checked(texts: list[str], source: str | None) -> str:
    return (f"checked on {len(texts)} sentences of {source}" if texts else
            "checked on a padded batch only (no check sentences: give --input or set data.dev)")
