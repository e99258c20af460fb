"""Options and settings resolution shared by every command.

Each shared option is spelled once here: its flags, type and choices. Where every command says
the same thing, an ``Annotated`` alias carries the help too (``ModelOpt``, ``ThreadsOpt``,
``OverwriteOpt``...); where the default differs per command, a ``*_option(help)`` factory gives the
``typer.Option`` and the command states its default, e.g.
``device: Annotated[Device | None, device_option("Default: infer.device.")] = None``.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # imported when a command runs, not to print help (pydantic takes a while)
    from nerkd.project import Project
    from nerkd.settings import Settings

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (default: the project's, see README).",
                 dir_okay=False),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a setting: section.key=value (repeatable).",
                 metavar="KEY=VALUE"),
]



class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Backend(str, Enum):
    auto = "auto"
    torch = "torch"
    onnx = "onnx"


class BenchDevice(str, Enum):
    """``nerkd bench`` times on a named device (no auto)."""

    cpu = "cpu"
    cuda = "cuda"


class BenchPrecision(str, Enum):
    """``nerkd bench`` compares precisions, dynamic int8 among them (``bench.precision``)."""

    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"


def missing_model_fails_fast(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """Callback of ``--model``, ``--teacher`` and ``--base``: a folder that can only be local and is missing
    is said at once, in one line naming the nearest existing folder, while the options are parsed: before
    settings are read, torch is imported or anything loads, and without the network (hub ids pass)."""
    if not value or ctx.resilient_parsing:
        return value
    from nerkd.cli.errors import one_line_errors
    from nerkd.models.hub import check_local

    option = param.opts[0] if param.opts else "--model"
    what = {"--teacher": "teacher", "--base": "base model"}.get(option, "model")
    for ref in [value] if isinstance(value, str) else value:
        name, sep, path = str(ref).partition("=")     # report's and bench's NAME=PATH
        with one_line_errors():
            check_local(path if sep and name and not Path(ref).exists() else ref, what, option)
    return value


def model_option(help: str, **kwargs: Any) -> Any:
    return typer.Option("--model", "-m", help=help, callback=missing_model_fails_fast, **kwargs)


def output_option(help: str, **kwargs: Any) -> Any:
    return typer.Option("--output", "-o", help=help, **kwargs)


def input_option(help: str, **kwargs: Any) -> Any:
    return typer.Option("--input", "-i", help=help, **kwargs)


def overwrite_option(help: str) -> Any:
    return typer.Option("--overwrite", help=help)


def teacher_option(help: str) -> Any:
    return typer.Option("--teacher", "-t", help=help, callback=missing_model_fails_fast)


def resume_option(help: str) -> Any:
    return typer.Option("--resume", help=help)


def device_option(help: str) -> Any:
    return typer.Option("--device", help=help)


def precision_option(help: str) -> Any:
    return typer.Option("--precision", help=help)


def backend_option(help: str) -> Any:
    return typer.Option("--backend", help=help)


def threads_option(help: str) -> Any:
    return typer.Option("--threads", min=1, help=help)


def int8_option(help: str) -> Any:
    return typer.Option("--int8/--no-int8", help=help)


def int8_rows_option(help: str) -> Any:
    """``--int8`` alone, no ``--no-int8``: a flag that adds int8 rows (``nerkd report``)."""
    return typer.Option("--int8", help=help)


def count_option(flag: str, help: str) -> Any:
    """``FLAG`` and ``-n``: how many items a command takes (``bench --sentences``, ``select --notes``)."""
    return typer.Option(flag, "-n", min=1, help=help)


def format_option(help: str, *, short: bool = False) -> Any:
    """``--format`` (and ``-f`` where ``short``): what a command writes."""
    return typer.Option("--format", *(["-f"] if short else []), help=help)


ModelOpt = Annotated[str | None, model_option("Model folder (default: the newest finetune/prune/distill output).")]
TeacherOpt = Annotated[str | None, teacher_option("Teacher folder or hub id (default: teacher.model).")]
ResumeOpt = Annotated[bool, resume_option(
    "Go on from the run folder's last checkpoint (checkpoints/last); refused if a setting or data file that changes "
    "training differs.")]
OverwriteOpt = Annotated[bool, overwrite_option(
    "Also write into a non-empty folder that is not a nerkd model folder (its files are kept; nerkd's own files there "
    "are replaced).")]
NoVerifyOpt = Annotated[bool, typer.Option(
    "--no-verify", help="Load model weights even when their sha256 differs from the one nerkd recorded when it wrote "
                        "them (weights edited on purpose). Default: models.verify.")]
ThreadsOpt = Annotated[int | None, threads_option(
    "CPU threads for torch (default: the physical cores other processes leave free).")]
Int8Opt = Annotated[bool | None, int8_option(
    "Dynamic int8 quantisation of the linear layers (CPU). Default: infer.int8. For int8 on a CPU prefer an "
    "ONNX int8 export (nerkd export --int8, then --backend onnx): faster and closer to fp32 (BENCHMARKS.md).")]


class RunEngine(str, Enum):
    """Where ``infer`` and ``redact`` run: this process, or Spark (``nerkd[spark]``)."""

    local = "local"
    spark = "spark"


EngineOpt = Annotated[RunEngine, typer.Option(
    "--engine", help="local (this process), or spark: --input is a Parquet path or a table, --output a Parquet "
                     "folder, the model runs on Spark's executors (pip install 'nerkd\\[spark]'; README \"Run on a "
                     "warehouse\").")]
MasterOpt = Annotated[str | None, typer.Option(
    "--master", help="--engine spark: the Spark master, e.g. local[4], yarn, spark://host:7077 (default: "
                     "spark-submit's, else local[*]). Not local: the model folder is shipped to the executors.")]
class InputFormat(str, Enum):
    auto = "auto"
    text = "text"
    jsonl = "jsonl"


InputFormatOpt = Annotated[InputFormat, typer.Option(
    "--input-format", help="Input format: one text per line, or JSONL with id/text (auto: from the first line).")]
BatchSizeOpt = Annotated[int | None, typer.Option(
    "--batch-size", min=1, help="Windows per forward pass. Default: infer.batch_size.")]
NoProgressOpt = Annotated[bool, typer.Option("--no-progress", help="No progress bar on stderr.")]

IdColumnOpt = Annotated[str | None, typer.Option(
    "--id-column", help="Parquet or Spark input: the notes' id column (default note_id, else id).")]
TextColumnOpt = Annotated[str | None, typer.Option(
    "--text-column", help="Parquet or Spark input: the notes' text column (default note_text, else text).")]


def resolve(config: Path | None, sets: list[str] | None, *, no_verify: bool = False) -> tuple[Settings, Project]:
    """Load settings (defaults < YAML < env < --set) and the project; remember an explicit config.
    ``no_verify`` (``--no-verify``) is ``--set models.verify=false``; the loaders follow that setting
    (:func:`nerkd.rundir.set_verify`)."""
    from nerkd.project import Project
    from nerkd.rundir import set_verify
    from nerkd.settings import load_settings

    project = Project.discover()
    path = project.config_path(config)
    settings = load_settings(path, [*(sets or []), *(["models.verify=false"] if no_verify else [])])
    set_verify(settings.models.verify)
    if config is not None:
        project.remember_config(Path(config))
    return settings, project
