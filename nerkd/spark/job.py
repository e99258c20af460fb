"""The driver's side of the Spark integration: a session, notes in, tagged rows out, a guarded write.

:func:`tag_notes` is the library call (``mapInPandas`` over Arrow batches, the model loaded once per Python
worker by :mod:`nerkd.spark.worker`); :func:`spark_session`, :func:`read_notes`, :func:`write_rows` and
:func:`count_rows` are what ``nerkd infer --engine spark`` adds around it. pyspark is imported inside the
functions: importing :mod:`nerkd.spark` needs no Spark.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from nerkd.errors import NerkdError, require_extra

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from nerkd.settings import Settings

MARKER = "_nerkd.json"   # in every output folder nerkd wrote (Spark's readers skip names starting with _)
BATCH_ROWS = 512


def _require() -> None:
    require_extra("spark", "Spark", ("pyspark", "pyarrow", "pandas"))


def spark_session(master: str | None = None, *, batch_rows: int = BATCH_ROWS, app_name: str = "nerkd",
                  conf: dict[str, str] | None = None, log_level: str = "ERROR") -> SparkSession:
    """The active session, else a new one on ``master`` (default: spark-submit's, else ``local[*]``).

    ``batch_rows``: rows per Arrow batch handed to the workers. The workers run this interpreter
    (``PYSPARK_PYTHON`` is set to it unless already set), so they import the same nerkd, pyarrow and torch.
    ``log_level``: Spark's own log lines (its warnings are many and mostly about the JVM)."""
    _require()
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master is None and "PYSPARK_GATEWAY_PORT" not in os.environ:  # not launched by spark-submit
        master = "local[*]"
    if master is not None:
        builder = builder.master(master)
    for key, value in {"spark.sql.execution.arrow.maxRecordsPerBatch": str(batch_rows), **(conf or {})}.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as e:   # pyspark's gateway errors: Java missing or failing to start
        raise NerkdError(f"Spark did not start ({type(e).__name__}: {str(e).splitlines()[0][:200]}); it needs "
                         f"Java 17 or later (java on the PATH or JAVA_HOME)") from e
    spark.sparkContext.setLogLevel(log_level)
    return spark


def tag_notes(df: DataFrame, model: str | Path, text_col: str | None = None, id_col: str | None = None,
              task: str = "entities", settings: Settings | None = None, *, score: str = "mean",
              ship: bool = False, version: str | None = None, key: bytes | None = None,
              partitions: int | None = None) -> DataFrame:
    """Tag the notes of ``df``: a DataFrame of the task's output rows (:mod:`nerkd.infer.parquet`'s schemas).

    ``id_col`` / ``text_col``: default ``note_id`` / ``note_text``, else ``id`` / ``text``. ``model``: a model
    folder (torch or ONNX export) at a path every executor can read, or, with ``ship``, a local folder sent to
    every executor with ``SparkContext.addFile``. ``settings``: nerkd's settings (``infer`` and ``data``
    sections: device, precision, backend, max_length, ...; default: the defaults). A row whose text is null,
    not a string, not valid Unicode, or makes the engine fail gives an error row; the job goes on.
    ``version``: the ``model`` column (default: the folder's name and weights hash); ``key``: redact's secret key
    (sent to the workers with the task); ``partitions``: spread the notes over this many partitions first (by a
    hash of id and text: deterministic), e.g. when a small table sits in fewer partitions than there are cores."""
    _require()
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_type

    from nerkd.data.parquet import pick_columns
    from nerkd.infer.formats import model_version
    from nerkd.infer.parquet import TASKS, output_schema
    from nerkd.settings import Settings
    from nerkd.spark.worker import WorkerSpec, tag_frames

    if task not in TASKS:
        raise NerkdError(f"task {task!r}: expected one of {', '.join(TASKS)}")
    id_col, text_col = pick_columns(df.columns, id_col, text_col, "the notes")
    text_type = df.schema[text_col].dataType
    kind = "utf8" if isinstance(text_type, (T.StringType, T.VarcharType, T.CharType)) else text_type.simpleString()
    text = F.col(text_col).cast("binary") if kind == "utf8" else F.col(text_col)
    arrow = output_schema(task, to_arrow_type(df.schema[id_col].dataType))
    ref = str(Path(model).resolve()) if Path(model).exists() else str(model)   # workers may start elsewhere
    if ship:
        df.sparkSession.sparkContext.addFile(ref, recursive=Path(ref).is_dir())
        ref = Path(ref).name
    settings = settings or Settings()
    spec = WorkerSpec(ref, ship, task, settings.model_dump_json(), score,
                      version if version is not None else model_version(model), kind, arrow, key)
    notes = df.select(F.col(id_col).alias("note_id"), text.alias("note_text"))
    if partitions:
        notes = notes.repartition(partitions, F.hash("note_id", "note_text"))
    return notes.mapInPandas(functools.partial(tag_frames, spec), from_arrow_schema(arrow, prefer_timestamp_ntz=False))


def read_notes(spark: SparkSession, source: str) -> DataFrame:
    """A Parquet path (a file, a folder of parts, any Hadoop URI) or, for a bare name, a catalog table."""
    from pyspark.errors import AnalysisException

    is_path = "/" in source or "://" in source or source.endswith((".parquet", ".parq")) or Path(source).exists()
    try:
        return spark.read.parquet(driver_path(spark, source)) if is_path else spark.table(source)
    except AnalysisException as e:
        what = "no such Parquet path" if is_path else "no such table (a path needs a / or .parquet)"
        missing = any(c in str(e) for c in ("PATH_NOT_FOUND", "TABLE_OR_VIEW_NOT_FOUND"))
        raise NerkdError(f"--input {source}: {what if missing else str(e).splitlines()[0][:200]}") from None


def partitions_for(notes: DataFrame) -> int | None:
    """A partition count for :func:`tag_notes` when ``notes`` have fewer partitions than the cores (twice the
    cores), else None: a small table read from one file would run on one core, the model being slow next to
    the read."""
    cores = notes.sparkSession.sparkContext.defaultParallelism
    return 2 * cores if notes.rdd.getNumPartitions() < cores else None


def driver_path(spark: SparkSession, path: str) -> str:
    """``path`` as this process means it: without a scheme and on a local default file system, made absolute
    from this process's folder (the JVM would resolve it from the folder it started in); else as it is (a
    relative path on HDFS is under the user's home there)."""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", path):
        return path
    default = spark.sparkContext._jsc.hadoopConfiguration().get("fs.defaultFS") or "file:///"
    return str(Path(path).absolute()) if default.startswith("file:") else path


def _fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """``(Hadoop FileSystem, qualified Path)`` of ``path`` (local, HDFS, S3, ...)."""
    jvm = spark.sparkContext._jvm
    p = jvm.org.apache.hadoop.fs.Path(driver_path(spark, path))
    fs = p.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, fs.makeQualified(p)


def write_rows(rows: DataFrame, target: str, *, source: str | None = None,
               manifest: dict[str, Any] | None = None) -> dict[str, int]:
    """Write ``rows`` as a Parquet folder at ``target``; returns :func:`count_rows` of what was written.

    Never replaces a path nerkd did not write (a folder without :data:`MARKER`, a file) nor the input. The
    rows go to a sibling folder first (Spark's overwrite mode: a leftover of a killed run is replaced), which
    gets the marker and is then renamed onto ``target``: a rerun replaces its output whole, rows never pile
    up, and ``target`` never holds half a job."""
    spark = rows.sparkSession
    fs, out = _fs(spark, target)
    if source is not None and _fs(spark, source)[1].toString() == out.toString():
        raise NerkdError(f"--output {target}: is the --input; writing would erase it")
    if fs.exists(out) and not fs.exists(out.suffix("/" + MARKER)):
        raise NerkdError(f"--output {target}: exists and was not written by nerkd (no {MARKER}); give a new "
                         f"path (nerkd replaces only its own output)")
    tmp = out.getParent().suffix(f"/.{out.getName()}.nerkd-tmp")
    rows.write.mode("overwrite").parquet(tmp.toString())
    counts = count_rows(spark, tmp.toString())
    stream = fs.create(tmp.suffix("/" + MARKER), True)
    try:
        stream.write(bytearray(orjson.dumps({**(manifest or {}), "counts": counts}, option=orjson.OPT_INDENT_2)))
    finally:
        stream.close()
    if fs.exists(out):
        fs.delete(out, True)
    if not fs.rename(tmp, out):
        raise NerkdError(f"--output {target}: cannot rename {tmp.toString()} onto it")
    return counts


def count_rows(spark: SparkSession, path: str) -> dict[str, int]:
    """``{"rows": output rows, "errors": error rows}`` of a written output."""
    from pyspark.sql import functions as F

    out = spark.read.parquet(path)
    got = out.agg(F.count(F.lit(1)).alias("rows"), F.count("error").alias("errors")).collect()[0]
    return {"rows": int(got["rows"]), "errors": int(got["errors"])}
