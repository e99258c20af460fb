"""``nerkd infer`` on Parquet, on one machine: a table of notes in, a table of entities out, streamed.

:func:`run_parquet` checks the paths and the input's columns (before the model loads), then reads the notes in
batches of ``batch_rows`` rows (:class:`~nerkd.data.parquet.ParquetNotes`), tags each batch
(:class:`~nerkd.tables.NoteTagger`: bad rows become error rows, counted) and writes it as one row group of the
output (:func:`~nerkd.infer.parquet.parquet_sink`: a temporary file renamed at the end). Memory holds one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nerkd.data.parquet import BATCH_ROWS
from nerkd.errors import NerkdError
from nerkd.log import NullProgress, progress, say

if TYPE_CHECKING:
    from nerkd.settings import Settings
    from nerkd.tables import TableCounts

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")


def is_parquet(path: Path | str | None) -> bool:
    return path is not None and Path(path).suffix.lower() in PARQUET_SUFFIXES


def parquet_run(input_: Path | None, output: Path | None, out_format: str = "jsonl") -> bool:
    """Whether ``--input``/``--output`` ask for a Parquet run; a one-line error for a mix it cannot do."""
    if not (is_parquet(input_) or is_parquet(output)):
        return False
    if not (is_parquet(input_) and is_parquet(output)):
        raise NerkdError("Parquet in, Parquet out: give both --input NOTES.parquet and --output OUT.parquet "
                         f"(got --input {input_ or '<stdin>'}, --output {output or '<stdout>'})")
    if out_format != "jsonl":
        raise NerkdError(f"--format {out_format}: a Parquet output has its own schema; drop --format")
    return True


@dataclass
class TableJob:
    """What to tag and where: ``source``/``target`` Parquet files; ``id_col``/``text_col`` (default
    ``note_id``/``note_text``, else ``id``/``text``); ``batch_rows``: rows read, tagged and written together."""

    source: Path
    target: Path
    task: str = "entities"
    id_col: str | None = None
    text_col: str | None = None
    batch_rows: int = BATCH_ROWS
    score: str = "mean"
    threads: int | None = None
    show_progress: bool = True
    key_file: Path | None = None   # redact: the secret key (default: redact.key_file)


@dataclass
class TableResult:
    model: str
    model_version: str          # the output's model column
    counts: TableCounts         # rows read, tagged, in error; words, entities
    target: str
    written: int                # output rows (entities and error rows)
    batches: int
    notes: list[tuple[str, str]] = field(default_factory=list)   # ("info" | "warning", message)


def run_parquet(model: str | Path, job: TableJob, settings: Settings) -> TableResult:
    """Tag the notes of ``job.source`` into ``job.target`` (see module doc)."""
    from nerkd.data.parquet import ParquetNotes
    from nerkd.infer.parquet import output_schema, parquet_sink
    from nerkd.stages.infer import check_paths, encode_notes
    from nerkd.tables import NoteTagger
    from nerkd.threads import describe_threads, set_threads

    check_paths(job.source, job.target, model)
    notes = ParquetNotes(job.source, job.id_col, job.text_col)
    key, key_notes = _key(job, settings)
    n_threads, why = set_threads(job.threads)
    tagger = NoteTagger.load(model, settings, job.task, job.score, key=key)
    engine = tagger.engine
    command = "infer" if job.task == "entities" else "redact"
    say(f"{command}: {model} ({tagger.model}) on {engine.device.type} ({describe_threads(n_threads, why)}), "
        f"{engine.precision}{', onnxruntime' if engine.backend == 'onnx' else ''}; {notes.rows} rows of "
        f"{job.source} (id {notes.id_col}, text {notes.text_col}), {job.batch_rows} per batch")
    written = batches = 0
    bar = progress() if job.show_progress else NullProgress()
    with bar, parquet_sink(job.target, output_schema(job.task, notes.id_type)) as write:
        task = bar.add_task(command, total=notes.rows, info="")
        for rows in notes.batches(job.batch_rows):
            written += write(tagger.tag(rows))
            batches += 1
            c = tagger.counts
            bar.update(task, advance=len(rows), info=f"{c.errors} in error, {c.words / max(c.seconds, 1e-9):,.0f} "
                                                     f"words/s")
    return TableResult(str(model), tagger.model, tagger.counts, str(job.target), written, batches,
                       key_notes + encode_notes(engine))


def _key(job: TableJob, settings: Settings) -> tuple[bytes | None, list[tuple[str, str]]]:
    """redact's secret key (``job.key_file``, else ``redact.key_file``) and the notes about it."""
    if job.task != "redact":
        return None, []
    from nerkd.stages.redact import key_notes, read_key

    path = job.key_file or (Path(settings.redact.key_file) if settings.redact.key_file else None)
    return (read_key(path), key_notes(path)) if path is not None else (None, [])
