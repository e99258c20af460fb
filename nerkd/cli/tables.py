"""Parquet on this machine and ``--engine spark``, for ``nerkd infer`` and ``nerkd redact``: one dispatch, one
summary (rows read, tagged, in error)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from nerkd.cli.common import RunEngine
from nerkd.errors import NerkdError

if TYPE_CHECKING:
    from nerkd.settings import Settings


class TableArgs(NamedTuple):
    input: str | None
    output: str | None
    id_col: str | None
    text_col: str | None
    chunk_size: int | None
    score: str
    threads: int | None
    master: str | None
    progress: bool
    key_file: Path | None = None   # redact


def run_table(engine: RunEngine, a: TableArgs, ref: str | Path, settings: Settings, *, task: str = "entities",
              out_fmt: str = "jsonl") -> bool:
    """Run a Parquet (or Spark) job and say its counts; False when the arguments ask for neither."""
    from nerkd.stages.parquet import parquet_run

    command = "infer" if task == "entities" else "redact"
    if engine is RunEngine.spark:
        if a.input is None or a.output is None:
            raise NerkdError("--engine spark: give --input (a Parquet path or a table) and --output (a folder)")
        _spark(command, a, ref, settings, task)
        return True
    if not parquet_run(Path(a.input) if a.input else None, Path(a.output) if a.output else None, out_fmt):
        return False
    from nerkd.stages.parquet import TableJob, run_parquet
    from nerkd.ui import log, warn

    job = TableJob(Path(a.input), Path(a.output), task, a.id_col, a.text_col, a.chunk_size or 512, a.score,
                   a.threads, a.progress, a.key_file)
    result = run_parquet(ref, job, settings)
    log(f"{command}: {result.counts.summary()}")
    log(f"{command}: wrote {result.written} rows in {result.batches} row groups to {result.target} (model "
        f"{result.model_version})")
    for level, message in result.notes:
        (warn if level == "warning" else log)(message)
    return True


def _spark(command: str, a: TableArgs, ref: str | Path, settings: Settings, task: str) -> None:
    from nerkd.stages.spark import SparkJob, run_spark
    from nerkd.ui import log, warn

    if a.threads:
        warn(f"{command}: --threads is not used by --engine spark: each task runs spark.task.cpus torch threads")
    job = SparkJob(a.input, a.output, task, a.id_col, a.text_col, a.score, a.master,
                   batch_rows=a.chunk_size or 512, key_file=a.key_file)
    result = run_spark(ref, job, settings)
    log(f"{command}: {result.summary()}")
    log(f"{command}: wrote {result.written} rows to {result.target} (a Parquet folder; model {result.model_version})")
    for level, message in result.notes:
        (warn if level == "warning" else log)(message)
