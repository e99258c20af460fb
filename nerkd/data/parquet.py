"""Notes in a Parquet table, read lazily: the reader of ``nerkd infer --input notes.parquet``.

A table of notes has an id column and a text column: ``note_id`` / ``note_text`` (the OMOP ``note`` table) by
default, else ``id`` / ``text``, or the columns named. It is read with pyarrow in batches of at most
``batch_rows`` rows (:meth:`pyarrow.parquet.ParquetFile.iter_batches` reads one row group at a time), so memory
stays bounded whatever the file's size.

A row whose text is null, not a string or not valid Unicode is not an error of the file: it comes as a
:class:`NoteRow` with ``error`` set (and an empty ``text``), for the caller to write as an error row and count.
The same check (:func:`text_value`) judges the rows Spark hands to its workers. Text columns are read as raw
bytes and decoded row by row, so one bad row cannot fail its batch. Only a file that cannot be read as Parquet,
or that lacks the columns, raises :class:`~nerkd.errors.DataError`. Error messages never quote a note.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nerkd.errors import DataError, require_extra

if TYPE_CHECKING:
    import pyarrow as pa

ID_COLUMNS = ("note_id", "id")        # tried in this order when no id column is named
TEXT_COLUMNS = ("note_text", "text")
BATCH_ROWS = 512                      # rows per batch read, tagged and written (infer's CPU chunk)


@dataclass
class NoteRow:
    row: int                  # 1-based row of the table (or of the batch's partition, on Spark)
    id: Any                   # the id column's value, passed through as it is
    text: str                 # "" for an error row
    error: str | None = None  # why the row cannot be tagged (null text, not a string, bad UTF-8, ...)


def pick_columns(names: Sequence[str], id_col: str | None, text_col: str | None, source: str) -> tuple[str, str]:
    """``(id column, text column)``: the ones named, else the first of :data:`ID_COLUMNS` / :data:`TEXT_COLUMNS`
    present; a :class:`DataError` naming the columns there are when one is missing."""
    found = []
    for given, options, what, flag in ((id_col, ID_COLUMNS, "id", "--id-column"),
                                       (text_col, TEXT_COLUMNS, "text", "--text-column")):
        wanted = (given,) if given else options
        name = next((c for c in wanted if c in names), None)
        if name is None:
            expected = f"no column {given!r}" if given else f"no {what} column ({' or '.join(options)})"
            raise DataError(source, None, f"{expected}; columns are {', '.join(names) or 'none'} (give {flag})")
        found.append(name)
    if found[0] == found[1]:
        raise DataError(source, None, f"the id and text columns are the same ({found[0]})")
    return found[0], found[1]


def text_value(value: Any, utf8: bool = False, kind: str = "") -> tuple[str, str | None]:
    """``(text, None)`` for a taggable value, else ``("", why)``.

    ``utf8``: the value is the raw bytes of a string column (decoded here, a bad row naming the byte);
    ``kind``: the column's type, named when it is not a string type."""
    if value is None or (isinstance(value, float) and value != value):   # null (pandas shows it as NaN)
        return "", "text is null"
    if utf8 and isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8"), None
        except UnicodeDecodeError as e:
            return "", f"text is not valid UTF-8 ({e.reason} at byte {e.start})"
    if not isinstance(value, str):
        return "", f"text is not a string ({kind or type(value).__name__})"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        return "", f"text is not valid Unicode (a lone surrogate at character {e.start})"
    return value, None


def text_column_kind(type_: pa.DataType) -> str:
    """``utf8`` for string columns (read as raw bytes, decoded by :func:`text_value`), else the type's name
    (every row of such a column is an error row)."""
    import pyarrow as pa

    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    return "utf8" if pa.types.is_string(type_) or pa.types.is_large_string(type_) else str(type_)


class ParquetNotes:
    """A Parquet file of notes (see module doc): its columns checked at opening, its rows read by
    :meth:`batches`. ``rows``: the row count from the file's metadata; ``id_type``: the id column's type."""

    def __init__(self, path: str | Path, id_col: str | None = None, text_col: str | None = None):
        require_extra("parquet", "Parquet input", ("pyarrow",))
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = Path(path)
        try:
            self.file = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as e:
            raise DataError(self.path, None, f"not a readable Parquet file ({type(e).__name__})") from None
        schema = self.file.schema_arrow
        self.id_col, self.text_col = pick_columns(schema.names, id_col, text_col, str(self.path))
        self.id_type = schema.field(self.id_col).type
        self.kind = text_column_kind(schema.field(self.text_col).type)
        self.rows = self.file.metadata.num_rows

    def batches(self, batch_rows: int = BATCH_ROWS) -> Iterator[list[NoteRow]]:
        """Lists of at most ``batch_rows`` rows, in the file's order."""
        import pyarrow as pa

        row = 0
        try:
            for batch in self.file.iter_batches(batch_size=batch_rows, columns=[self.id_col, self.text_col]):
                ids = batch.column(self.id_col).to_pylist()
                texts = _raw_texts(batch.column(self.text_col), self.kind)
                out = []
                for id_, value in zip(ids, texts, strict=True):
                    row += 1
                    text, error = text_value(value, self.kind == "utf8", self.kind)
                    out.append(NoteRow(row, id_, text, error))
                yield out
        except (pa.ArrowException, OSError) as e:
            raise DataError(self.path, None, f"cannot read the rows after row {row} ({type(e).__name__})") from None


def _raw_texts(column: pa.Array, kind: str) -> list[Any]:
    """The text column's values: raw UTF-8 bytes for a string column (never decoded by pyarrow, which would
    fail the whole batch on one bad row), Python values otherwise."""
    import pyarrow as pa

    if kind != "utf8":
        return column.to_pylist()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    binary = pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary()
    return column.view(binary).to_pylist()
