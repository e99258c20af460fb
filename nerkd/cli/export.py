from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from nerkd.cli.common import (
    ConfigOpt,
    ModelOpt,
    NoVerifyOpt,
    SetOpt,
    format_option,
    input_option,
    int8_option,
    output_option,
    overwrite_option,
    resolve,
)
from nerkd.cli.errors import known_errors

if TYPE_CHECKING:
    from nerkd.stages.export import ExportRun


class ExportFormat(str, Enum):
    onnx = "onnx"
    hf = "hf"


@known_errors
def export(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    no_verify: NoVerifyOpt = False,
    model: ModelOpt = None,
    fmt: Annotated[ExportFormat | None, format_option(
        "onnx (a graph for ONNX Runtime) or hf (a plain transformers folder). Default: export.format.",
        short=True)] = None,
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
    from nerkd.stages.export import run_export
    from nerkd.ui import err

    settings, project = resolve(config, set_, no_verify=no_verify)
    run = run_export(settings, project, model, fmt=fmt.value if fmt else None, int8=int8, output=output,
                     overwrite=overwrite, input_path=input_)
    _show(run)
    err.print(f"export: done in {run.result.seconds:.1f} s")


def _show(run: ExportRun) -> None:
    """What was written, how closely it reproduces the model, what to know, and how to run it (stdout)."""
    from nerkd.ui import out, warn

    result, kind, target, n_texts = run.result, run.kind, run.target, run.checked

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
