"""What runs in Spark's Python workers: the model, loaded once per worker, tagging Arrow batches as pandas frames.

:func:`tag_frames` is the function ``mapInPandas`` calls for each partition. Its :class:`WorkerSpec` (pickled
with the function) says which model, task and settings; the loaded :class:`~nerkd.tables.NoteTagger` is kept
in a module-level cache keyed by that spec, so a Python worker (Spark reuses them across tasks,
``spark.python.worker.reuse``, on by default) loads the model once and reuses it for every batch of every task
it runs. :data:`STATS` counts loads and batches in this process (what the tests read back), and each load says
one log line on the worker's stderr (the executor's log).

Threads: torch runs ``spark.task.cpus`` threads per task (the task's share of its executor). Device: a GPU
assigned to the task by Spark's resource scheduling (``spark.task.resource.gpu.amount``) is used, else
``infer.device`` decides (``auto``: a visible GPU, else the CPU).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nerkd.log import say

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from nerkd.tables import NoteTagger


@dataclass(frozen=True)
class WorkerSpec:
    model: str             # the model folder as the executors see it (or the name it was shipped under)
    shipped: bool          # shipped with SparkContext.addFile: found with SparkFiles.get(model)
    task: str              # entities | redact
    settings_json: str     # the Settings, as JSON (the cache key; rebuilt in the worker)
    score: str
    version: str           # the output's model column
    kind: str              # utf8 (raw bytes of a string column, decoded per row) or the column's type
    schema: pa.Schema      # the output's Arrow schema
    secret: bytes | None = field(default=None, repr=False)   # redact's key

    @property
    def key(self) -> tuple:
        digest = hashlib.sha256(self.secret).hexdigest() if self.secret is not None else None
        return self.model, self.shipped, self.task, self.settings_json, self.score, self.version, digest


_TAGGERS: dict[tuple, NoteTagger] = {}
STATS: dict[str, int] = {"loads": 0, "batches": 0, "rows": 0}


def tagger(spec: WorkerSpec) -> NoteTagger:
    """This worker's tagger for ``spec``: loaded at the first call, the same object afterwards."""
    found = _TAGGERS.get(spec.key)
    if found is not None:
        return found
    from nerkd.settings import Settings
    from nerkd.tables import NoteTagger

    threads, device = _task_resources()
    import torch

    torch.set_num_threads(threads)
    if device is not None:
        torch.cuda.set_device(device)
    settings = Settings.model_validate_json(spec.settings_json)
    found = NoteTagger.load(_model_path(spec), settings, spec.task, spec.score, version=spec.version,
                            key=spec.secret)
    _TAGGERS[spec.key] = found
    STATS["loads"] += 1
    say(f"nerkd spark worker {os.getpid()}: loaded {spec.version} on {found.engine.device} "
        f"({threads} thread{'s' if threads != 1 else ''}), task {spec.task}")
    return found


def _task_resources() -> tuple[int, int | None]:
    """``(threads, GPU index or None)`` of the running task: ``spark.task.cpus`` and an assigned GPU."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None:  # outside a Spark task (a direct call): one thread, infer.device decides
        return 1, None
    gpus = ctx.resources().get("gpu")
    device = int(gpus.addresses[0]) if gpus is not None and gpus.addresses else None
    return max(1, ctx.cpus()), device


def _model_path(spec: WorkerSpec) -> str:
    if not spec.shipped:
        return spec.model
    from pyspark import SparkFiles

    return SparkFiles.get(spec.model)


def tag_frames(spec: WorkerSpec, frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``mapInPandas``'s function: frames of (id, text) in, frames of the task's output rows out."""
    import pyarrow as pa

    from nerkd.data.parquet import NoteRow, text_value

    model = tagger(spec)
    row = 0
    for frame in frames:
        # through Arrow: pandas shows an integer column with nulls as floats and NaN
        ids: list[Any] = pa.Array.from_pandas(frame.iloc[:, 0], type=spec.schema.field("note_id").type).to_pylist()
        rows = []
        for id_, value in zip(ids, frame.iloc[:, 1].tolist(), strict=True):
            row += 1
            rows.append(NoteRow(row, id_, *text_value(value, spec.kind == "utf8", spec.kind)))
        STATS["batches"] += 1
        STATS["rows"] += len(rows)
        table = pa.Table.from_pydict(model.tag(rows), schema=spec.schema)
        yield table.to_pandas(integer_object_nulls=True)
