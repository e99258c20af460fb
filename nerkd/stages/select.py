"""The ``select`` stage: choose the unlabelled notes to annotate next and write them as annotation tasks.

:func:`run_select` checks the paths (before anything loads), loads the model (and the student, if any) with
:func:`nerkd.infer.load_engine`, streams the input (what ``nerkd infer`` reads: plain text, one note per line,
or JSONL with ``text`` and an optional ``id``; or a Parquet table of notes, read as ``nerkd infer --input
NOTES.parquet`` reads it, rows whose text cannot be tagged skipped and counted) through
:func:`nerkd.infer.select.select_notes` chunk by chunk, and writes the chosen notes, best first, as Label Studio
tasks or Doccano lines with the model's pre-annotations (:class:`nerkd.infer.formats.ToolWriter`, the formats
of ``nerkd infer --format``). The output is written atomically once the input is read whole: a bad input line
(named by its number, never its content) leaves no output. Returns a :class:`SelectResult` for the caller to
show.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nerkd.errors import NerkdError, os_reason
from nerkd.log import NullProgress, progress, say
from nerkd.stages.infer import check_paths, encode_notes

if TYPE_CHECKING:
    from collections.abc import Iterator

    from nerkd.infer import Doc, Engine
    from nerkd.infer.select import Selection, SelectStats
    from nerkd.settings import InferSettings, SelectSettings

SELECT_FORMATS = ("labelstudio", "doccano")


@dataclass
class SelectJob:
    """What to choose from and where to write the tasks."""

    source: Path                    # text or JSONL, or a Parquet table (NOTES.parquet)
    target: Path
    out_format: str = "labelstudio"
    in_format: str = "auto"
    id_col: str | None = None       # Parquet: the id and text columns (default note_id/note_text, else id/text)
    text_col: str | None = None
    student: str | Path | None = None
    chunk_size: int | None = None
    threads: int | None = None
    show_progress: bool = True


@dataclass
class SelectResult:
    model: str
    student: str | None
    strategy: str
    stats: SelectStats
    target: str
    out_format: str
    tasks: int                      # tasks (Label Studio) or lines (Doccano) written
    model_version: str = ""         # labelstudio: the predictions' model_version
    notes: list[tuple[str, str]] = field(default_factory=list)   # ("info" | "warning", message)


def run_select(model: str | Path, job: SelectJob, settings: SelectSettings, infer: InferSettings, *,
               max_length: int, stride: int) -> SelectResult:
    """Choose ``settings.n`` notes of ``job.source`` with ``model`` and write them to ``job.target``."""
    from nerkd.infer import load_engine
    from nerkd.infer.formats import model_version
    from nerkd.rundir import check_not_input
    from nerkd.threads import describe_threads, set_threads

    if job.out_format not in SELECT_FORMATS:
        raise NerkdError(f"--format {job.out_format}: expected {' or '.join(SELECT_FORMATS)}")
    check_paths(job.source, job.target, model)
    if job.student is not None:
        check_not_input(job.target, {"the student's folder (--student)": job.student}, folder=False)
    n_threads, why = set_threads(job.threads)
    engine = load_engine(model, infer, max_length=max_length, stride=stride)
    student = None if job.student is None else load_engine(job.student, infer, max_length=max_length,
                                                           stride=stride)
    say(f"select: {settings.n} notes of {job.source} by {_how(settings, job.student)}; {model} on "
        f"{engine.device.type} ({describe_threads(n_threads, why)}), labels {' '.join(engine.space.types)}")
    bad_rows = [0]
    selection = _choose(engine, student, job, settings, bad_rows)
    version = model_version(model) if job.out_format == "labelstudio" else ""
    tasks = _write(engine, selection, job, version)
    notes = encode_notes(engine)
    if bad_rows[0]:
        notes.append(("warning", f"select: {bad_rows[0]} rows of {job.source} skipped: their text cannot be "
                                 f"tagged (null, not a string, or not valid UTF-8)"))
    if selection.stats.chosen < settings.n:
        notes.append(("warning", f"select: only {selection.stats.chosen} notes to choose from, "
                                 f"{settings.n} asked"))
    return SelectResult(str(model), None if job.student is None else str(job.student), settings.strategy,
                        selection.stats, str(job.target), job.out_format, tasks, version, notes)


def _how(settings: SelectSettings, student: str | Path | None) -> str:
    how = f"{settings.strategy} of the {settings.top_words} most uncertain words"
    if settings.strategy == "random":
        how = "a seeded random choice"
    elif student is not None:
        how += f" and disagreement with {student} (weight {settings.student_weight:g})"
    dedup = "near-duplicates kept" if settings.dedup is None else f"near-duplicates (Jaccard >= {settings.dedup:g}) " \
                                                                  f"dropped"
    return f"{how}, {dedup}, seed {settings.seed}"


def _choose(engine: Engine, student: Engine | None, job: SelectJob, settings: SelectSettings,
            bad_rows: list[int]) -> Selection:
    from nerkd.infer.io import read_docs
    from nerkd.infer.select import SelectConfig, select_notes
    from nerkd.stages.parquet import is_parquet

    cfg = SelectConfig(n=settings.n, strategy=settings.strategy, top_words=settings.top_words,
                       student_weight=settings.student_weight, dedup=settings.dedup, seed=settings.seed,
                       chunk_size=job.chunk_size or engine.chunk_size)
    bar = progress() if job.show_progress else NullProgress()
    with bar, contextlib.ExitStack() as stack:
        if is_parquet(job.source):
            docs, total = _table_docs(job, cfg.chunk_size, bad_rows)
        else:
            fh = stack.enter_context(_open(job.source))
            docs, total = read_docs(fh, str(job.source), job.in_format), job.source.stat().st_size
        task = bar.add_task("select", total=total, info="", percent=True)
        return select_notes(docs, engine, cfg, student=student,
                            on_chunk=lambda chunk, s: bar.update(task, advance=sum(d.size for d in chunk),
                                                                 info=f"{s.read} notes"))


def _table_docs(job: SelectJob, batch_rows: int, bad_rows: list[int]) -> tuple[Iterator[Doc], int]:
    """The notes of a Parquet table (``nerkd infer``'s reader) as documents, and its row count; a row that
    cannot be tagged (null text, not a string, bad UTF-8) is counted in ``bad_rows`` (``[count]``) and skipped."""
    from nerkd.data.parquet import ParquetNotes
    from nerkd.infer.io import Doc

    notes = ParquetNotes(job.source, job.id_col, job.text_col)

    def docs() -> Iterator[Doc]:
        for batch in notes.batches(batch_rows):
            for row in batch:
                if row.error is not None:
                    bad_rows[0] += 1
                else:
                    yield Doc(row.row, row.text, row.id, size=1)
    return docs(), notes.rows


def _write(engine: Engine, selection: Selection, job: SelectJob, version: str) -> int:
    """The chosen notes, best first, as tasks (the ones scored without the model, random, are tagged now)."""
    from nerkd.infer.formats import ToolWriter
    from nerkd.io import atomic_write_bytes

    chosen = selection.chosen
    untagged = [c for c in chosen if c.entities is None]
    if untagged:
        for c, ents in zip(untagged, engine.predict([c.doc.text for c in untagged]), strict=True):
            c.entities = ents
    writer = ToolWriter(job.out_format, version)
    data = writer.head() + b"".join(writer.line(c.doc, c.entities or []) for c in chosen) + writer.tail()
    try:
        atomic_write_bytes(job.target, data)
    except OSError as e:
        raise NerkdError(f"--output {job.target}: cannot write ({os_reason(e)})") from e
    return writer.tasks


@contextlib.contextmanager
def _open(path: Path):
    try:
        fh = path.open("rb")
    except OSError as e:
        raise NerkdError(f"--input {path}: cannot open ({os_reason(e)})") from e
    with fh:
        yield fh
