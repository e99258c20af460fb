from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nerkd.cli.common import (
    ConfigOpt,
    ModelOpt,
    SetOpt,
    input_option,
    int8_option,
    output_option,
    overwrite_option,
    resolve,
)
from nerkd.cli.errors import known_errors
from nerkd.errors import NerkdError

if TYPE_CHECKING:
    from nerkd.export import ExportResult
    from nerkd.settings import ExportSettings


class ExportFormat(str, Enum):
    onnx = "onnx"
    hf = "hf"


@known_errors
def export(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    fmt: Annotated[ExportFormat | None, typer.Option(
        "--format", "-f", help="onnx (a graph for ONNX Runtime) or hf (a plain transformers folder). "
                               "Default: export.format.")] = None,
    int8: Annotated[bool | None, int8_option(
        "onnx: dynamic int8 quantisation (onnxruntime); reports the tag agreement with fp32. Default: export.int8.")
    ] = None,
    output: Annotated[Path | None, output_option(
        "Output folder (default: <artifacts>/<model>_onnx, _onnx_int8 or _hf).", file_okay=False)] = None,
    overwrite: Annotated[bool, overwrite_option(
        "Also write into a non-empty folder that is not nerkd's (its files are kept).")] = False,
    input_: Annotated[Path | None, input_option(
        "Check sentences (one per line or JSONL with text; default: data.dev, else data.test): the export must give "
        "the model's logits on them, and int8 is compared with fp32 on them.", dir_okay=False)] = None,
) -> None:
    """Export a model for deployment: an ONNX graph for ONNX Runtime, or a plain Hugging Face folder.

    onnx: model.onnx (dynamic batch and sequence; pruned models keep their smaller heads), the
    tokenizer, label2id.json and manifest.json (nerkd version, opset, source weights sha256, labels,
    CRF transitions, how to decode). Run it with `nerkd infer --backend onnx` (needs `pip install
    'nerkd\\[onnx]'`). hf: loads with AutoModelForTokenClassification.from_pretrained, no nerkd and no
    trust_remote_code; pruned heads come back as zero weights (same outputs, no speed gain) and a
    CRF is not used by transformers. Each export is checked against the model before it is written.

    \b
    Example (ONNX, then a plain Hugging Face folder):
      nerkd export -m artifacts/final --format onnx -o artifacts/final_onnx
      nerkd export -m artifacts/final --format hf -o artifacts/final_hf
    """
    from nerkd.export import check_texts, export_hf, export_onnx
    from nerkd.ui import err

    settings, project = resolve(config, set_)
    st = settings.export
    kind = (fmt.value if fmt else st.format)
    quant = st.int8 if int8 is None else int8
    if quant and kind != "onnx":
        raise NerkdError("--int8 is for --format onnx (the hf folder is fp32)")
    ref = model or project.default_input("infer", settings.paths.artifacts)
    if ref is None:
        raise NerkdError(f"no model to export: give --model FOLDER (no distill, prune or finetune output found "
                         f"under {project.artifacts(settings.paths.artifacts)})")
    suffix = "hf" if kind == "hf" else ("onnx_int8" if quant else "onnx")
    target = output or project.artifacts(settings.paths.artifacts) / f"{Path(str(ref)).name}_{suffix}"
    texts, source = check_texts(settings, input_, st.check_sentences)
    err.print(f"export: {ref} -> {target} ({_plan(kind, quant, st)}; "
              f"{_checked(texts, source)})", soft_wrap=True)
    if kind == "onnx":
        result = export_onnx(ref, target, int8=quant, opset=st.opset, exporter=st.exporter, overwrite=overwrite,
                             texts=texts, max_length=settings.data.max_length, stride=settings.data.stride)
    else:
        result = export_hf(ref, target, overwrite=overwrite, texts=texts, max_length=settings.data.max_length,
                           stride=settings.data.stride)
    _show(result, kind, target, len(texts))
    err.print(f"export: done in {result.seconds:.1f} s")


def _plan(kind: str, quant: bool, st: ExportSettings) -> str:
    exporter = "torchscript exporter (dynamo if it fails)" if st.exporter == "auto" else f"{st.exporter} exporter"
    return f"onnx{' int8' if quant else ''}, {exporter}, opset {st.opset}" if kind == "onnx" else "hf"


def _checked(texts: list[str], source: str | None) -> str:
    return (f"checked on {len(texts)} sentences of {source}" if texts else
            "checked on a padded batch only (no check sentences: give --input or set data.dev)")


def _show(result: ExportResult, kind: str, target: Path, n_texts: int) -> None:
    """What was written, how closely it reproduces the model, what to know, and how to run it (stdout)."""
    from nerkd.ui import out, warn

    size = sum((target / name).stat().st_size for name in result.files if (target / name).is_file())
    out.print(f"exported: {target} ({', '.join(result.files)}; {size / 1e6:.1f} MB)", soft_wrap=True)
    out.print(f"check: logits within {result.max_abs_diff:.1e} of the model's"
              f"{f' on {n_texts} sentences and a padded batch' if n_texts else ' on a padded batch'}")
    if result.int8:
        if result.agreement is None:
            out.print("int8: no check sentences (give --input or set data.dev): agreement with fp32 not measured")
        else:
            out.print(f"int8: tag agreement with fp32 {100 * result.agreement:.2f}% over {result.agreement_words:,} "
                      f"words (argmax of each word's first sub-token)")
    for note in result.notes:   # hf: transformers will not do what nerkd does (CRF, speed): a warning
        warn(note) if kind == "hf" else out.print(f"note: {note}", soft_wrap=True)
    if kind == "onnx":
        out.print(f"run it: nerkd infer --backend onnx --model {target} < texts.txt", soft_wrap=True)
    else:
        out.print(f"load it: transformers.pipeline(\"token-classification\", model=\"{target}\")", soft_wrap=True)
