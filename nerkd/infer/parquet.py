"""Parquet output of ``nerkd infer`` (and of the Spark integration): schemas, rows and a streaming writer.

* entities, one row per entity, in the spirit of OMOP's ``note_nlp``: ``note_id`` (the input id, its type
  kept), ``start_char``, ``end_char`` (code-point offsets into the note), ``label``, ``text`` (the
  ``lexical_variant``: ``note[start_char:end_char]``), ``score``, ``model`` (folder name + weights hash,
  :func:`nerkd.infer.formats.model_version`) and ``error``. A note without entities has no row; a note that
  could not be tagged has one row with its ``note_id``, ``model`` and ``error`` set and the rest null.
* redact, one row per note: ``note_id``, ``note_text`` (pseudonymised), ``replacements`` (a list of
  ``{start, end, label, source}`` structs, offsets into the input note) and ``error`` (then the rest is null).

:func:`parquet_sink` writes a file batch by batch (one row group per batch, so memory holds one batch) into a
temporary file of the output's folder, renamed onto the output when the last batch is written: a reader never
sees half a file, and a failed run leaves no output.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nerkd.io import default_mode

if TYPE_CHECKING:
    import pyarrow as pa

TASKS = ("entities", "redact")
ENTITY_COLUMNS = ("note_id", "start_char", "end_char", "label", "text", "score", "model", "error")
REDACT_COLUMNS = ("note_id", "note_text", "replacements", "error")


def output_schema(task: str, id_type: pa.DataType) -> pa.Schema:
    """The output schema of ``task`` (entities or redact) for notes whose ids have type ``id_type``."""
    import pyarrow as pa

    if task == "entities":
        return pa.schema([("note_id", id_type), ("start_char", pa.int32()), ("end_char", pa.int32()),
                          ("label", pa.string()), ("text", pa.string()), ("score", pa.float64()),
                          ("model", pa.string()), ("error", pa.string())])
    if task == "redact":
        replacement = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("label", pa.string()),
                                 ("source", pa.string())])
        return pa.schema([("note_id", id_type), ("note_text", pa.string()),
                          ("replacements", pa.list_(replacement)), ("error", pa.string())])
    raise ValueError(f"unknown task {task!r}")


def entity_columns(ids: Sequence[Any], results: Sequence[tuple[list[dict] | None, str | None]], model: str
                   ) -> dict[str, list]:
    """Columns of entity rows for notes ``ids`` and their ``(entities, error)`` (see module doc)."""
    cols: dict[str, list] = {name: [] for name in ENTITY_COLUMNS}
    for id_, (entities, error) in zip(ids, results, strict=True):
        if error is not None:
            rows = [(None, None, None, None, None, error)]
        else:
            rows = [(e["start"], e["end"], e["label"], e["text"], e["score"], None) for e in entities or ()]
        for start, end, label, text, score, err in rows:
            for name, value in zip(ENTITY_COLUMNS, (id_, start, end, label, text, score, model, err), strict=True):
                cols[name].append(value)
    return cols


def redact_columns(ids: Sequence[Any], results: Sequence[tuple[tuple[str, list[dict]] | None, str | None]]
                   ) -> dict[str, list]:
    """Columns of redact rows for notes ``ids`` and their ``((redacted text, replacements), error)``."""
    cols: dict[str, list] = {name: [] for name in REDACT_COLUMNS}
    for id_, (done, error) in zip(ids, results, strict=True):
        text, repl = done if done is not None else (None, None)
        if repl is not None:
            repl = [{k: r[k] for k in ("start", "end", "label", "source")} for r in repl]
        for name, value in zip(REDACT_COLUMNS, (id_, text, repl, error), strict=True):
            cols[name].append(value)
    return cols


@contextlib.contextmanager
def parquet_sink(path: str | Path, schema: pa.Schema) -> Iterator[Callable[[dict[str, list]], int]]:
    """``write(columns) -> rows written``: each call one row group of ``path`` (see module doc)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with pq.ParquetWriter(tmp_path, schema) as writer:
            def write(columns: dict[str, list]) -> int:
                table = pa.Table.from_pydict(columns, schema=schema)
                if table.num_rows:
                    writer.write_table(table)
                return table.num_rows

            yield write
        os.chmod(tmp_path, default_mode())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
