from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nerkd.cli.common import (
    Backend,
    BatchSizeOpt,
    ConfigOpt,
    Device,
    EngineOpt,
    IdColumnOpt,
    InputFormat,
    InputFormatOpt,
    Int8Opt,
    MasterOpt,
    ModelOpt,
    NoProgressOpt,
    NoVerifyOpt,
    Precision,
    RunEngine,
    SetOpt,
    TextColumnOpt,
    ThreadsOpt,
    backend_option,
    device_option,
    format_option,
    input_option,
    output_option,
    precision_option,
    resolve,
)
from nerkd.cli.errors import known_errors
from nerkd.cli.tables import TableArgs, run_table

if TYPE_CHECKING:
    from nerkd.stages.infer import InferResult


class OutputFormat(str, Enum):
    jsonl = "jsonl"
    labelstudio = "labelstudio"
    doccano = "doccano"


class TokenizeMode(str, Enum):
    words = "words"
    text = "text"


class ScoreMode(str, Enum):
    mean = "mean"
    min = "min"


FormatOpt = Annotated[OutputFormat, format_option(
    "Output format: jsonl (nerkd's entities), labelstudio (Label Studio tasks with predictions, one JSON array) or "
    "doccano (Doccano JSONL, label [[start, end, type]]). The input format is --input-format.")]
PrecisionOpt = Annotated[Precision | None, precision_option(
    "Default: infer.precision (auto: bf16 weights on GPU, fp32 on CPU; bf16 on CPU is autocast).")]
ChunkSizeOpt = Annotated[int | None, typer.Option(
    "--chunk-size", min=1,
    help="Documents read, sorted by length and written per chunk (default 512 on CPU, 2048 on GPU).")]
CompileOpt = Annotated[bool | None, typer.Option(
    "--compile/--no-compile",
    help="torch.compile the encoder: faster once compiled (the first batches wait ~45 s for CamemBERT-base on 2 CPU "
         "cores), so for big inputs. Default: infer.compile.")]
TokenizeOpt = Annotated[TokenizeMode | None, typer.Option(
    "--tokenize",
    help="Sub-words per French word, as nerkd trains models (words), or of the raw text, as the transformers "
         "pipeline does (text: fewer sub-words and faster with SentencePiece, but only for models fine-tuned on raw "
         "text; it costs accuracy on word-trained ones). Default: infer.tokenize.")]
ScoreOpt = Annotated[ScoreMode, typer.Option(
    "--score", help="Entity score: mean or min of its words' tag probabilities.")]
BackendOpt = Annotated[Backend | None, backend_option(
    "torch, or onnx: ONNX Runtime on CPU, for a folder written by nerkd export --format onnx (pip install "
    "'nerkd\\[onnx]'). Default: infer.backend (auto: onnx for such a folder, and on a CPU for a model folder with a "
    "verified fp32 export of its weights in MODEL/onnx or MODEL_onnx; the first log line says which).")]


@known_errors
def infer(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    no_verify: NoVerifyOpt = False,
    model: ModelOpt = None,
    input_: Annotated[str | None, input_option("Input file (default: stdin), or a table: NOTES.parquet.")] = None,
    output: Annotated[str | None, output_option("Output JSONL file (default: stdout), or OUT.parquet.")] = None,
    fmt: FormatOpt = OutputFormat.jsonl,
    input_format: InputFormatOpt = InputFormat.auto,
    device: Annotated[Device | None, device_option("Default: infer.device.")] = None,
    precision: PrecisionOpt = None,
    int8: Int8Opt = None,
    batch_size: BatchSizeOpt = None,
    chunk_size: ChunkSizeOpt = None,
    threads: ThreadsOpt = None,
    compile_: CompileOpt = None,
    tokenize: TokenizeOpt = None,
    score: ScoreOpt = ScoreMode.mean,
    backend: BackendOpt = None,
    no_progress: NoProgressOpt = False,
    engine: EngineOpt = RunEngine.local,
    master: MasterOpt = None,
    id_column: IdColumnOpt = None,
    text_column: TextColumnOpt = None,
) -> None:
    """Tag French texts with a model: one JSONL line of entities (exact character offsets) per input line.

    Input is plain text (one document per line) or JSONL with "text" and an optional "id". Output
    lines are {"id"?, "text", "entities": [{"start", "end", "label", "text", "score"}]}, in input
    order, one per input line (empty lines give "entities": []). Long texts are windowed, never
    truncated. Logs, progress and the summary go to stderr; stdout carries only JSONL.

    \b
    Example:
      nerkd infer --model artifacts/final < data/texts.txt > entities.jsonl
    """
    from nerkd.stages.infer import InferJob, resolve_model, run_infer

    settings, project = resolve(config, set_, no_verify=no_verify)
    out_fmt, in_fmt = fmt.value, input_format.value
    ref = resolve_model(model, project, settings.paths.artifacts)
    overrides = {"device": device, "precision": precision, "int8": int8, "batch_size": batch_size,
                 "compile": compile_, "tokenize": tokenize, "backend": backend}
    section = settings.infer.model_copy(update={k: v.value if isinstance(v, Enum) else v
                                                for k, v in overrides.items() if v is not None})
    table = TableArgs(input_, output, id_column, text_column, chunk_size, score.value, threads, master, not no_progress)
    if run_table(engine, table, ref, settings.model_copy(update={"infer": section}), out_fmt=out_fmt):
        return
    job = InferJob(Path(input_) if input_ is not None else sys.stdin.buffer,
                   Path(output) if output is not None else sys.stdout.buffer, out_format=out_fmt, in_format=in_fmt,
                   score=score.value, chunk_size=chunk_size, threads=threads, show_progress=not no_progress)
    _summary(run_infer(ref, job, section, max_length=settings.data.max_length, stride=settings.data.stride), output)


def _summary(result: InferResult, output: str | None) -> None:
    """The run's last lines on stderr: counts, what was written where, notes on long texts."""
    from nerkd.ui import log, warn

    fmt = result.out_format
    log(f"infer: {result.stats.summary()}")
    if fmt != "jsonl":
        log(f"infer: {result.tasks} {'Label Studio tasks' if fmt == 'labelstudio' else 'Doccano lines'}"
            f"{f' (model_version {result.model_version})' if result.model_version else ''}; "
            f"{result.skipped_empty} empty texts skipped (nothing to annotate)")
    if output is not None:
        log(f"infer: wrote {result.written} {'tasks' if fmt == 'labelstudio' else 'lines'} to {output}")
    for level, message in result.notes:
        (warn if level == "warning" else log)(message)

