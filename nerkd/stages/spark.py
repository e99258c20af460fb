"""``nerkd infer --engine spark``: the notes of a Parquet path or table tagged by :func:`nerkd.spark.tag_notes`.

:func:`run_spark` starts (or joins) a Spark session, reads the notes, checks their columns, tags them with the
model (loaded once per Python worker, on every executor), writes the rows as a Parquet folder (a rerun replaces
it whole; never a path nerkd did not write) and returns the counts: rows read, rows in error (null text, not a
string, bad Unicode, engine failure: each gives one error row, none stops the job), rows tagged, entities.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nerkd.log import say

if TYPE_CHECKING:
    from nerkd.settings import Settings


@dataclass
class SparkJob:
    """``source``: a Parquet path (file, folder, Hadoop URI) or a table name; ``target``: the output folder.
    ``master``: default spark-submit's, else ``local[*]``; ``ship``: send the model folder to the executors
    (``SparkContext.addFile``) instead of reading it at the same path on each (default: unless the master is
    local)."""

    source: str
    target: str
    task: str = "entities"
    id_col: str | None = None
    text_col: str | None = None
    score: str = "mean"
    master: str | None = None
    ship: bool | None = None   # None: ship unless the master is local
    batch_rows: int = 512
    key_file: Path | None = None   # redact: the secret key (default: redact.key_file)


@dataclass
class SparkResult:
    model: str
    model_version: str
    master: str
    task: str
    rows: int           # rows read
    written: int        # output rows: entities (or notes) and error rows
    errors: int         # rows in error (one error row each)
    target: str
    seconds: float
    notes: list[tuple[str, str]] = field(default_factory=list)   # ("info" | "warning", message)

    @property
    def tagged(self) -> int:
        return self.rows - self.errors

    def summary(self) -> str:
        done = f"{self.written - self.errors} {'entities' if self.task == 'entities' else 'notes pseudonymised'}"
        return (f"{self.rows} rows read, {self.tagged} tagged, {self.errors} in error; {done} in "
                f"{self.seconds:.1f} s")


def run_spark(model: str | Path, job: SparkJob, settings: Settings) -> SparkResult:
    """Tag ``job.source`` into ``job.target`` on Spark (see module doc)."""
    from nerkd.data.parquet import pick_columns
    from nerkd.infer.formats import model_version
    from nerkd.spark import partitions_for, read_notes, spark_session, tag_notes, write_rows

    start = time.perf_counter()
    spark = spark_session(job.master, batch_rows=job.batch_rows)
    master = spark.sparkContext.master
    notes = read_notes(spark, job.source)
    pick_columns(notes.columns, job.id_col, job.text_col, f"--input {job.source}")   # a missing column, named here
    version = model_version(model)
    ship = not master.startswith("local") if job.ship is None else job.ship
    key, notes_ = _key(job, settings)
    rows = tag_notes(notes, model, job.text_col, job.id_col, job.task, settings, score=job.score, ship=ship,
                     version=version, key=key, partitions=partitions_for(notes))
    read = notes.count()
    say(f"infer: {model} on Spark {master} ({spark.sparkContext.defaultParallelism} cores, "
        f"{spark.conf.get('spark.task.cpus', '1')} per task{', model shipped' if ship else ''}), {read} rows of "
        f"{job.source}")
    manifest = {"model": str(model), "model_version": version, "task": job.task, "source": job.source,
                "rows_read": read}
    counts = write_rows(rows, job.target, source=job.source, manifest=manifest)
    if job.task == "redact" and counts["rows"] != read:
        notes_.append(("warning", f"{counts['rows']} rows written for {read} notes read"))
    return SparkResult(str(model), version, master, job.task, read, counts["rows"], counts["errors"], job.target,
                       time.perf_counter() - start, notes_)


def _key(job: SparkJob, settings: Settings) -> tuple[bytes | None, list[tuple[str, str]]]:
    """redact's key (read here, sent to the workers with the task) and what to say about it."""
    if job.task != "redact":
        return None, []
    from nerkd.stages.redact import key_notes, read_key

    path = job.key_file or (Path(settings.redact.key_file) if settings.redact.key_file else None)
    if path is None:
        return None, [("info", "redact on Spark without --key-file: surrogates and date shifts are drawn at random, "
                               "so a rerun gives other values; with a key the output repeats")]
    return read_key(path), key_notes(path)
