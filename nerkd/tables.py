"""Tables of notes, tagged batch by batch: the row task shared by ``nerkd infer`` on Parquet and the Spark workers.

A :class:`NoteTagger` holds a loaded model (the engine of ``nerkd infer``, with its settings) and turns a batch of
:class:`~nerkd.data.parquet.NoteRow` into the columns of the task's output (:mod:`nerkd.infer.parquet`): one row per
entity (``entities``), or one pseudonymised note per row (``redact``: the entities and the rules' identifiers
replaced by a :class:`~nerkd.redact.Redactor`, ``redact.bias`` set on the engine). Nothing is lost and nothing stops
the run: a row the reader marked (null text, not a string, bad UTF-8, a lone surrogate) becomes an error row; when
the engine fails on a batch, the batch is tagged again note by note and only the notes that fail alone become error
rows (``engine failed (<exception type>)``, with a warning naming the row, never the text). :attr:`NoteTagger.counts`
adds up rows, rows tagged, rows in error, words, entities and replacements.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nerkd.infer.parquet import TASKS, entity_columns, redact_columns
from nerkd.log import warn

if TYPE_CHECKING:
    from nerkd.data.parquet import NoteRow
    from nerkd.infer import Engine
    from nerkd.redact import Redactor
    from nerkd.settings import Settings


@dataclass
class TableCounts:
    rows: int = 0        # rows read
    tagged: int = 0      # rows tagged (empty texts included: nothing to find there)
    errors: int = 0      # error rows: null, not a string, bad Unicode, engine failure
    words: int = 0
    entities: int = 0
    replacements: int = 0   # redact
    seconds: float = 0.0  # in the model and its decoding

    def add(self, other: TableCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> str:
        rate = self.words / self.seconds if self.seconds > 0 else 0.0
        repl = f", {self.replacements} replacements" if self.replacements else ""
        return (f"{self.rows} rows read, {self.tagged} tagged, {self.errors} in error; {self.entities} entities"
                f"{repl}, {self.words} words in {self.seconds:.1f} s: {rate:,.0f} words/s")


class NoteTagger:
    """A model tagging batches of notes into output columns (see module doc)."""

    def __init__(self, engine: Engine, task: str = "entities", *, model: str = "", redactor: Redactor | None = None):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}")
        if (task == "redact") != (redactor is not None):
            raise ValueError("task redact needs a redactor, and only it")
        self.engine, self.task, self.model, self.redactor = engine, task, model, redactor
        self.counts = TableCounts()

    @classmethod
    def load(cls, model: str | Path, settings: Settings, task: str = "entities", score: str = "mean",
             version: str | None = None, key: bytes | None = None) -> NoteTagger:
        """``version``: the ``model`` column's value (default: :func:`~nerkd.infer.formats.model_version`);
        ``key``: redact's secret key (``redact.key_file``'s bytes)."""
        from nerkd.infer import load_engine
        from nerkd.infer.formats import model_version

        redactor = None
        if task == "redact":
            from nerkd.redact import Redactor

            redactor = Redactor(settings.redact, key)
        engine = load_engine(model, settings.infer, max_length=settings.data.max_length, stride=settings.data.stride,
                             score=score)
        if redactor is not None:
            engine.entity_bias = settings.redact.bias
        return cls(engine, task, model=version if version is not None else model_version(model), redactor=redactor)

    def tag(self, rows: Sequence[NoteRow]) -> dict[str, list]:
        """The output columns of ``rows``; :attr:`counts` grows by their counts."""
        start = time.perf_counter()
        counts = TableCounts(rows=len(rows))
        good = [r for r in rows if r.error is None]
        done = self._entities(good, counts)
        if self.redactor is not None:
            done = [self._redact(r, ents, err, counts) for r, (ents, err) in zip(good, done, strict=True)]
        found = dict(zip((id(r) for r in good), done, strict=True))
        results = [found.get(id(r), (None, r.error)) for r in rows]
        counts.errors = sum(1 for _, error in results if error is not None)
        counts.tagged = counts.rows - counts.errors
        counts.seconds = time.perf_counter() - start
        self.counts.add(counts)
        ids = [r.id for r in rows]
        return entity_columns(ids, results, self.model) if self.redactor is None else redact_columns(ids, results)

    def _redact(self, row: NoteRow, entities: list[dict] | None, error: str | None, counts: TableCounts
                ) -> tuple[tuple[str, list[dict]] | None, str | None]:
        """``((redacted text, replacements), None)``, or ``(None, why)``."""
        if error is not None or entities is None:
            return None, error
        try:
            result = self.redactor.redact(row.text, entities)
        except Exception as e:   # a bug on one note: an error row, the run goes on
            warn(f"row {row.row}: redaction failed ({type(e).__name__}); written as an error row")
            return None, f"redaction failed ({type(e).__name__})"
        counts.replacements += len(result.replacements)
        return (result.text, result.replacements), None

    def _entities(self, rows: Sequence[NoteRow], counts: TableCounts) -> list[tuple[list[dict] | None, str | None]]:
        """``(entities, None)`` per row, or ``(None, "engine failed (...)")`` for a row the engine fails on alone."""
        try:
            return [(ents, None) for ents in self._run(rows, counts)]
        except Exception as e:   # one bad note must not cost the batch: tag it again note by note
            if len(rows) == 1:
                return [self._failed(rows[0], e)]
        out: list[tuple[list[dict] | None, str | None]] = []
        for r in rows:
            try:
                out.append((self._run([r], counts)[0], None))
            except Exception as e:   # the note becomes an error row; the run goes on
                out.append(self._failed(r, e))
        return out

    @staticmethod
    def _failed(row: NoteRow, e: Exception) -> tuple[None, str]:
        warn(f"row {row.row}: the engine failed ({type(e).__name__}); written as an error row")
        return None, f"engine failed ({type(e).__name__})"

    def _run(self, rows: Sequence[NoteRow], counts: TableCounts) -> list[list[dict]]:
        from nerkd.infer import Doc

        if not rows:
            return []
        found: list[list[dict]] = []

        def keep(doc: Doc, entities: list[dict]) -> bytes:
            found.append(entities)
            return b""

        docs = [Doc(r.row, r.text) for r in rows]
        stats = self.engine.run(docs, lambda _: None, chunk_size=len(docs), line=keep)
        counts.words += stats.words
        counts.entities += stats.entities
        return found
