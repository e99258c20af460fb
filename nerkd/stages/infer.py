"""The ``infer`` stage: tag a stream of texts with a model and write one result per text.

:func:`run_infer` checks the input and output paths (before anything loads: a wrong path fails at
once), loads the model (:func:`nerkd.infer.load_engine`), opens the files, streams the documents through the
engine chunk by chunk and writes them in one of the output formats of :mod:`nerkd.infer.formats`.
It says its first line (model, device, threads, precision, labels, and which runtime runs the model and why:
:func:`nerkd.infer.choose_backend`) through :mod:`nerkd.log`,
shows progress through the :func:`nerkd.log.progress` hook, and returns an :class:`InferResult`:
the run's counts, what was written, and the notes and warnings about long texts, for the caller
to show. Known failures are :class:`~nerkd.errors.NerkdError` (one line naming ``--input`` or
``--output``, a file and line for bad input).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from nerkd.errors import NerkdError, os_reason
from nerkd.log import NullProgress, progress, say

if TYPE_CHECKING:
    from nerkd.data.encode import EncodeStats
    from nerkd.infer import Engine, RunStats
    from nerkd.infer.formats import ToolWriter
    from nerkd.project import Project
    from nerkd.settings import InferSettings

STDIN, STDOUT = "<stdin>", "<stdout>"


@dataclass
class InferJob:
    """What to tag and where to write it (the settings say how to run the model).

    ``source``/``target``: a file (checked, opened and closed here) or an open binary stream
    (``source_name`` names it in errors; it is left open). ``out_format``: jsonl, labelstudio or
    doccano; ``in_format``: auto, text or jsonl. ``chunk_size``: documents read, sorted and written
    together (default: the engine's, by device); ``threads``: torch's CPU threads (default: the
    physical cores)."""

    source: Path | BinaryIO
    target: Path | BinaryIO
    source_name: str = STDIN
    out_format: str = "jsonl"
    in_format: str = "auto"
    score: str = "mean"
    chunk_size: int | None = None
    threads: int | None = None
    show_progress: bool = True


@dataclass
class InferResult:
    model: str                      # the model reference that ran
    stats: RunStats                 # documents, words, entities, seconds
    encoded: EncodeStats            # sub-word windows: long texts split, words clipped, long chunks
    out_format: str
    target: str                     # the output file, or <stdout>
    written: int                    # lines written (jsonl, doccano), or Label Studio tasks
    tasks: int = 0                  # labelstudio / doccano: one per non-empty text
    skipped_empty: int = 0          # labelstudio / doccano: empty texts make no task
    model_version: str = ""         # labelstudio: the predictions' model_version
    notes: list[tuple[str, str]] = field(default_factory=list)   # ("info" | "warning", message), in order

    @property
    def warnings(self) -> list[str]:
        return [message for level, message in self.notes if level == "warning"]


def resolve_model(model: str | Path | None, project: Project, artifacts_setting: str, *, purpose: str = "run"
                  ) -> str | Path:
    """``model``, else the newest distill, prune or finetune output (:meth:`Project.default_input`)."""
    ref = model or project.default_input("infer", artifacts_setting)
    if ref is None:
        raise NerkdError(f"no model to {purpose}: give --model FOLDER (no distill, prune or finetune output found "
                         f"under {project.artifacts(artifacts_setting)})")
    return ref


def run_infer(model: str | Path, job: InferJob, settings: InferSettings, *, max_length: int, stride: int
              ) -> InferResult:
    """Tag ``job.source`` with ``model`` into ``job.target`` (see module doc)."""
    from nerkd.infer import choose_backend, load_engine
    from nerkd.infer.formats import ToolWriter, model_version
    from nerkd.threads import describe_threads, set_threads

    check_paths(_path(job.source), _path(job.target), model)
    n_threads, why = set_threads(job.threads)
    choice = choose_backend(model, settings)   # said in the first line, with why
    engine = load_engine(model, settings, max_length=max_length, stride=stride, score=job.score, choice=choice)
    say(f"infer: {model} on {engine.device.type} ({describe_threads(n_threads, why)}), "
        f"{engine.precision}{' + int8' if engine.int8 else ''}, "
        f"labels {' '.join(engine.space.types)}, max length {engine.max_length}, sub-words of the "
        f"{'raw text' if engine.tokenize == 'text' else 'words'}{', compiled' if engine.compiled else ''}"
        f"{', onnxruntime' if engine.backend == 'onnx' else ''}{f'; {choice.line}' if choice.line else ''}")
    writer = ToolWriter(job.out_format, model_version(model) if job.out_format == "labelstudio" else "")
    with job_streams(job) as (source, name, total, target):
        stats = _tag(engine, writer, job, source, name, total, target)
    written = stats.docs if job.out_format == "jsonl" else writer.tasks   # empty texts make no task
    return InferResult(str(model), stats, engine.encoded, job.out_format,
                       str(job.target) if isinstance(job.target, Path) else STDOUT, written, writer.tasks,
                       writer.skipped_empty, writer.model_version, encode_notes(engine))


def _tag(engine: Engine, writer: ToolWriter, job: InferJob, source: BinaryIO, name: str, total: int | None,
         target: BinaryIO) -> RunStats:
    """Stream the documents through ``engine``; the output stays whole (a JSON array closed) up to
    the last document written, even when reading fails half-way, and a write that fails (a full disk)
    leaves whole lines only (:class:`WholeWrites`)."""
    from nerkd.infer import read_docs

    write = WholeWrites(target, str(job.target) if isinstance(job.target, Path) else STDOUT,
                        cut=isinstance(job.target, Path)).write
    write(writer.head())
    bar = progress() if job.show_progress else NullProgress()
    try:
        with bar:
            task = bar.add_task("infer", total=total, info="", percent=True)
            return engine.run(read_docs(source, name, job.in_format), write, chunk_size=job.chunk_size,
                              line=writer.line, on_chunk=lambda chunk, s: bar.update(
                                  task, advance=sum(d.size for d in chunk),
                                  info=f"{s.docs} docs, {s.docs / max(s.seconds, 1e-9):,.1f} docs/s"))
    finally:
        write(writer.tail())


def encode_notes(engine: Engine) -> list[tuple[str, str]]:
    """What windowing did to long texts and words, as ``(level, message)`` lines."""
    enc = engine.encoded
    notes = []
    if enc.split_sentences:
        notes.append(("info", f"infer: {enc.split_sentences} long texts split into overlapping windows "
                              f"(nothing truncated)"))
    if enc.clipped_words:
        notes.append(("warning", f"{enc.clipped_words} words longer than a whole window: "
                                 f"tagged from their first {engine.max_length - 2} sub-tokens"))
    if enc.long_chunks:
        notes.append(("info", f"infer: {enc.long_chunks} chunks of text without spaces longer than a whole window "
                              f"were tokenised word by word"))
    return notes


# -- files -------------------------------------------------------------------------------------------
class WholeWrites:
    """The output, written as the engine hands it over: whole chunks of lines (streamed, each chunk
    goes out when it is tagged; the file is opened unbuffered, so nothing waits in a buffer). When a
    write fails (a full disk), a file nerkd opened (``cut``) is cut back to the end of the last chunk
    written whole, so it never ends in a torn line, and the error names it (:class:`NerkdError`)."""

    def __init__(self, stream: BinaryIO, name: str, *, cut: bool):
        self.stream, self.name, self.lines, self.failed = stream, name, 0, False
        self.good = stream.tell() if cut else None   # where the last whole chunk ends

    def write(self, data: bytes) -> None:
        """Write all of ``data``; after a failure only the closing bytes are tried (their failure is quiet)."""
        try:
            view = memoryview(data)
            while view:
                n = self.stream.write(view)
                view = view[len(view) if n is None else n:]
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            self._cut()
            if self.failed:
                return
            self.failed = True
            kept = f"cut back to its last whole line ({self.lines:,} lines)" if self.good is not None else \
                f"{self.lines:,} whole lines written"
            raise NerkdError(f"--output {self.name}: cannot write ({os_reason(e)}); {kept}") from e
        self.lines += data.count(b"\n")
        if self.good is not None:
            self.good += len(data)

    def _cut(self) -> None:
        if self.good is None:
            return
        try:
            os.ftruncate(self.stream.fileno(), self.good)
            self.stream.seek(self.good)
        except OSError:
            pass


def _path(stream: Path | BinaryIO) -> Path | None:
    return stream if isinstance(stream, Path) else None


def check_paths(input_: Path | None, output: Path | None, model: str | Path | None = None) -> None:
    """One-line errors for --input / --output paths that cannot work, before anything is loaded: the
    output is never the input file nor a file of the ``model`` folder.

    The output's folder is created when missing (as for every nerkd --output)."""
    from nerkd.rundir import check_not_input

    if input_ is not None:
        if input_.is_dir():
            raise NerkdError(f"--input {input_}: is a folder, not a file")
        if not input_.is_file():
            raise NerkdError(f"--input {input_}: no such file")
    if output is None:
        return
    if output.is_dir():
        raise NerkdError(f"--output {output}: is a folder, not a file (give a file name, e.g. {output / 'out.jsonl'})")
    check_not_input(output, {"the --input file": input_, "the model's folder (--model)": model}, folder=False)
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


@contextlib.contextmanager
def job_streams(job: InferJob) -> Iterator[tuple[BinaryIO, str, int | None, BinaryIO]]:
    """``(source, its name, its size in bytes or None, target)`` of a job with ``source``, ``source_name`` and
    ``target`` (infer's and redact's); the files opened here are closed after."""
    with contextlib.ExitStack() as stack:
        if isinstance(job.source, Path):
            source, name, total = stack.enter_context(open_for_option(job.source, "rb", "--input")), str(job.source), \
                job.source.stat().st_size
        else:
            source, name, total = job.source, job.source_name, None
        target = stack.enter_context(open_for_option(job.target, "wb", "--output", buffering=0)) \
            if isinstance(job.target, Path) else job.target
        yield source, name, total, target


def open_for_option(path: Path, mode: str, option: str, buffering: int = -1) -> BinaryIO:
    try:
        return path.open(mode, buffering=buffering)
    except OSError as e:
        raise NerkdError(f"{option} {path}: cannot open ({os_reason(e)})") from e
