"""Tag a warehouse of notes on Spark: :func:`tag_notes` (a library call on a DataFrame) and the pieces of
``nerkd infer --engine spark``. The only room of nerkd that imports pyspark (an import contract says so);
pyspark is imported when a function runs, so importing this package needs no Spark (``pip install
'nerkd[spark]'`` for the functions)."""

from nerkd.spark.job import MARKER, count_rows, partitions_for, read_notes, spark_session, tag_notes, write_rows

__all__ = ["MARKER", "count_rows", "partitions_for", "read_notes", "spark_session", "tag_notes", "write_rows"]
