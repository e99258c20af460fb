from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from nerkd.cli.common import ConfigOpt, SetOpt, resolve
from nerkd.cli.errors import known_errors, os_reason
from nerkd.errors import NerkdError


class InputFormat(str, Enum):
    auto = "auto"
    text = "text"
    jsonl = "jsonl"


class OutputFormat(str, Enum):
    jsonl = "jsonl"
    labelstudio = "labelstudio"
    doccano = "doccano"
    text = "text"    # text and auto: --format named the input format before; read as --input-format
    auto = "auto"


class DeviceOpt(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class PrecisionOpt(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class TokenizeOpt(str, Enum):
    words = "words"
    text = "text"


class ScoreOpt(str, Enum):
    mean = "mean"
    min = "min"


class BackendOpt(str, Enum):
    auto = "auto"
    torch = "torch"
    onnx = "onnx"


@known_errors
def infer(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Model folder (default: the newest finetune/prune/distill output).")] = None,
    input_: Annotated[Path | None, typer.Option(
        "--input", "-i", help="Input file (default: stdin).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Output JSONL file (default: stdout).")] = None,
    fmt: Annotated[OutputFormat, typer.Option(
        "--format",
        help="Output format: jsonl (nerkd's entities), labelstudio (Label Studio tasks with predictions, one JSON "
             "array) or doccano (Doccano JSONL, label [[start, end, type]]). text and auto are read as "
             "--input-format, as in earlier versions.")] = OutputFormat.jsonl,
    input_format: Annotated[InputFormat, typer.Option(
        "--input-format", help="Input format: one text per line, or JSONL with id/text (auto: from the first line).")
    ] = InputFormat.auto,
    device: Annotated[DeviceOpt | None, typer.Option("--device", help="Default: infer.device.")] = None,
    precision: Annotated[PrecisionOpt | None, typer.Option(
        "--precision",
        help="Default: infer.precision (auto: bf16 weights on GPU, fp32 on CPU; bf16 on CPU is autocast).")] = None,
    int8: Annotated[bool | None, typer.Option(
        "--int8/--no-int8", help="Dynamic int8 quantisation of the linear layers (CPU). Default: infer.int8.")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", min=1, help="Windows per forward pass. Default: infer.batch_size.")] = None,
    chunk_size: Annotated[int | None, typer.Option(
        "--chunk-size", min=1,
        help="Documents read, sorted by length and written per chunk (default 512 on CPU, 2048 on GPU).")] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="CPU threads for torch (default: the physical cores).")] = None,
    compile_: Annotated[bool | None, typer.Option(
        "--compile/--no-compile",
        help="torch.compile the encoder: faster once compiled (the first batches wait ~45 s for CamemBERT-base "
             "on 2 CPU cores), so for big inputs. Default: infer.compile.")] = None,
    tokenize: Annotated[TokenizeOpt | None, typer.Option(
        "--tokenize",
        help="Sub-words per French word, as nerkd trains models (words), or of the raw text, as the "
             "transformers pipeline does (text: fewer sub-words and faster with SentencePiece, but only for models "
             "fine-tuned on raw text; it costs accuracy on word-trained ones). Default: infer.tokenize.")] = None,
    score: Annotated[ScoreOpt, typer.Option(
        "--score", help="Entity score: mean or min of its words' tag probabilities.")] = ScoreOpt.mean,
    backend: Annotated[BackendOpt | None, typer.Option(
        "--backend", help="torch, or onnx: ONNX Runtime on CPU, for a folder written by nerkd export --format "
                          "onnx (pip install 'nerkd[onnx]'). Default: infer.backend (auto: onnx for such a folder).")
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar on stderr.")] = False,
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
    from nerkd.infer import Engine, read_docs
    from nerkd.infer.formats import ToolWriter, model_version
    from nerkd.threads import describe_threads, set_threads
    from nerkd.ui import err

    settings, project = resolve(config, set_)
    out_fmt, in_fmt = _formats(fmt, input_format)
    _check_paths(input_, output)  # before the model loads: a wrong path fails at once
    ref = model or project.default_input("infer", settings.paths.artifacts)
    if ref is None:
        raise NerkdError(f"no model to run: give --model FOLDER (no distill, prune or finetune output found "
                         f"under {project.artifacts(settings.paths.artifacts)})")
    n_threads, why = set_threads(threads)
    st = settings.infer
    engine = Engine.load(
        ref, device=(device.value if device else st.device), precision=(precision.value if precision else
                                                                        st.precision),
        int8=st.int8 if int8 is None else int8, batch_size=batch_size or st.batch_size,
        max_length=settings.data.max_length, stride=settings.data.stride,
        max_tokens=settings.infer.max_tokens, score=score.value,
        tokenize=tokenize.value if tokenize else st.tokenize, compile=st.compile if compile_ is None else compile_,
        backend=backend.value if backend else st.backend)
    err.print(f"infer: {ref} on {engine.device.type} ({describe_threads(n_threads, why)}), "
              f"{engine.precision}{' + int8' if engine.int8 else ''}, "
              f"labels {' '.join(engine.space.types)}, max length {engine.max_length}, sub-words of the "
              f"{'raw text' if engine.tokenize == 'text' else 'words'}{', compiled' if engine.compiled else ''}"
              f"{', onnxruntime' if engine.backend == 'onnx' else ''}")

    if input_ is not None:
        in_stream, in_name, total = _open(input_, "rb", "--input"), str(input_), input_.stat().st_size
    else:
        in_stream, in_name, total = sys.stdin.buffer, "<stdin>", None
    if output is not None:
        try:
            out_stream = _open(output, "wb", "--output")
        except NerkdError:
            if input_ is not None:
                in_stream.close()
            raise
    else:
        out_stream = sys.stdout.buffer

    def write(data: bytes) -> None:
        out_stream.write(data)
        out_stream.flush()

    writer = ToolWriter(out_fmt, model_version(ref) if out_fmt == "labelstudio" else "")
    write(writer.head())
    bar = _progress(no_progress)
    task = bar.add_task("infer", total=total, info="")
    try:
        with bar:
            stats = engine.run(read_docs(in_stream, in_name, in_fmt), write, chunk_size=chunk_size, line=writer.line,
                               on_chunk=lambda chunk, s: bar.update(
                                   task, advance=sum(d.size for d in chunk),
                                   info=f"{s.docs} docs, {s.docs / max(s.seconds, 1e-9):,.1f} docs/s"))
    finally:
        write(writer.tail())   # a JSON array stays valid, up to the last document written
        if input_ is not None:
            in_stream.close()
        if output is not None:
            out_stream.close()
    enc = engine.encoded
    err.print(f"infer: {stats.summary()}", soft_wrap=True)
    if out_fmt != "jsonl":
        err.print(f"infer: {writer.tasks} {'Label Studio tasks' if out_fmt == 'labelstudio' else 'Doccano lines'}"
                  f"{f' (model_version {writer.model_version})' if writer.model_version else ''}; "
                  f"{writer.skipped_empty} empty texts skipped (nothing to annotate)", soft_wrap=True)
    if output is not None:
        written = stats.docs if out_fmt == "jsonl" else writer.tasks   # empty texts make no task
        err.print(f"infer: wrote {written} {'tasks' if out_fmt == 'labelstudio' else 'lines'} to {output}",
                  soft_wrap=True)
    if enc.split_sentences:
        err.print(f"infer: {enc.split_sentences} long texts split into overlapping windows (nothing truncated)")
    if enc.clipped_words:
        err.print(f"[yellow]warning:[/] {enc.clipped_words} words longer than a whole window: "
                  f"tagged from their first {engine.max_length - 2} sub-tokens")
    if enc.long_chunks:
        err.print(f"infer: {enc.long_chunks} chunks of text without spaces longer than a whole window "
                  f"were tokenised word by word")


def _check_paths(input_: Path | None, output: Path | None) -> None:
    """One-line errors for --input / --output paths that cannot work, before anything is loaded.

    The output's folder is created when missing (as for every nerkd --output)."""
    if input_ is not None:
        if input_.is_dir():
            raise NerkdError(f"--input {input_}: is a folder, not a file")
        if not input_.is_file():
            raise NerkdError(f"--input {input_}: no such file")
    if output is None:
        return
    if output.is_dir():
        raise NerkdError(f"--output {output}: is a folder, not a file (give a file name, e.g. {output / 'out.jsonl'})")
    if input_ is not None and output.exists() and output.samefile(input_):
        raise NerkdError(f"--output {output}: is the --input file; writing would erase it before it is read")
    parent = output.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise NerkdError(f"--output {output}: {existing} is a file, not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NerkdError(f"--output {output}: cannot create the folder {parent} ({os_reason(e)})") from e
    if not os.access(parent, os.W_OK):  # (root passes, except on a read-only file system)
        read_only = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
        raise NerkdError(f"--output {output}: cannot write in {parent} "
                         f"({'read-only file system' if read_only else 'permission denied'})")


def _open(path: Path, mode: str, option: str):
    try:
        return path.open(mode)
    except OSError as e:
        raise NerkdError(f"{option} {path}: cannot open ({os_reason(e)})") from e


def _formats(fmt: OutputFormat, input_format: InputFormat) -> tuple[str, str]:
    """(output format, input format); ``--format text|auto`` still names the input format."""
    from nerkd.ui import err

    if fmt.value not in ("text", "auto"):
        return fmt.value, input_format.value
    if fmt.value == "text" and input_format is InputFormat.jsonl:
        raise NerkdError("--format text (the input format, as before) contradicts --input-format jsonl: "
                         "give only --input-format")
    in_fmt = input_format.value if fmt.value == "auto" else "text"
    err.print(f"infer: --format {fmt.value} read as --input-format {in_fmt} (--format now names the output "
              f"format: jsonl, labelstudio or doccano)")
    return "jsonl", in_fmt


def _progress(disabled: bool):
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from nerkd.ui import err

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[info]}"), console=err, transient=False,
                    disable=disabled or os.environ.get("NERKD_NO_PROGRESS") == "1")
