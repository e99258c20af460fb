"""The ``bench.json`` contract, both sides: what ``nerkd bench`` writes and ``nerkd report`` reads.

One JSON object (:data:`TOP_FIELDS`, in this order):

* ``machine``: ``cpu``, ``threads``, ``torch``, ``device`` (:data:`MACHINE_FIELDS`);
* ``date`` (UTC, ISO 8601), ``precision`` (fp32, bf16, int8), ``sentences``, ``words`` (timed);
* ``blocks``: interleaved timing blocks; ``load``: the load average while timing (``cores``,
  ``bench_threads``, ``load_avg_1min``, ``others_max``); ``warnings``: why not to trust the timings;
* ``models``: one entry per model in bench order (:data:`MODEL_FIELDS`): medians over the blocks,
  their min and max and per-block values, sizes, peak memory, speed-ups against the first model (the
  latency one paired block by block, with its spread: ``speedup_latency_min``/``_max``).

There is no version key: a file is read by its fields. Version 1 (an older nerkd bench) has no
``blocks``, ``load``, ``warnings`` nor min/max/per-block figures; the reader takes it (``blocks`` None,
and the report says so). Version 2 is what :func:`bench_document` and :func:`write_bench` write now.

Reading: an entry matches a model by path (resolved against the project root, the current folder
and the bench file's folder), else by name. An entry is an int8 variant when the bench ran in int8
(``"precision": "int8"``) or its name says ``int8``; it then becomes its own row, scored with
dynamic int8 quantisation of the matched model. A bf16 entry (``"precision": "bf16"`` or ``bf16`` in
its name) belongs to the model's bf16 row only (``report --bf16``, or ``infer.precision: bf16``), never
to its fp32 row.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson

from nerkd.errors import DataError
from nerkd.io import write_json

VERSION = 2  # what is written now (see the module doc; not a key of the file)
TOP_FIELDS = ("machine", "date", "precision", "sentences", "words", "blocks", "load", "warnings", "models")
MACHINE_FIELDS = ("cpu", "threads", "torch", "device")
MODEL_FIELDS = ("name", "path", "parameters", "disk_bytes", "latency_ms_p50", "latency_ms_p95",
                "latency_ms_p50_min", "latency_ms_p50_max", "words_per_s", "words_per_s_min", "words_per_s_max",
                "latency_ms_p50_blocks", "words_per_s_blocks", "peak_mem_mb", "speedup_latency",
                "speedup_latency_min", "speedup_latency_max", "speedup_throughput")
# The single numbers of an entry (checked when read); version 1 files lack the min/max ones, files of
# nerkd before 2026-12-08 the speed-up spread.
FIGURES = tuple(k for k in MODEL_FIELDS if k not in ("name", "path") and not k.endswith("_blocks"))


# -- writing (nerkd bench) -----------------------------------------------------------------------

def model_entry(name: str, path: str, *, parameters: int, disk_bytes: int, latency_ms_p50_blocks: Sequence[float],
                latency_ms_p95: float, words_per_s_blocks: Sequence[float], peak_mem_mb: float) -> dict:
    """One ``models`` entry from one model's figures: medians over the blocks, their spread, rounded.
    Speed-ups start at 1.0 (:func:`nerkd.infer.bench.add_speedups` sets them against the first model)."""
    p50, wps = list(latency_ms_p50_blocks), list(words_per_s_blocks)
    return {"name": name, "path": str(path), "parameters": int(parameters), "disk_bytes": int(disk_bytes),
            "latency_ms_p50": round(statistics.median(p50), 3), "latency_ms_p95": round(latency_ms_p95, 3),
            "latency_ms_p50_min": round(min(p50), 3), "latency_ms_p50_max": round(max(p50), 3),
            "words_per_s": round(statistics.median(wps), 1),
            "words_per_s_min": round(min(wps), 1), "words_per_s_max": round(max(wps), 1),
            "latency_ms_p50_blocks": [round(x, 3) for x in p50],
            "words_per_s_blocks": [round(x, 1) for x in wps],
            "peak_mem_mb": round(peak_mem_mb, 1), "speedup_latency": 1.0, "speedup_latency_min": 1.0,
            "speedup_latency_max": 1.0, "speedup_throughput": 1.0}


def bench_document(*, machine: dict, precision: str, sentences: int, words: int, blocks: int, load: dict,
                   warnings: Sequence[str], models: Sequence[dict], date: str | None = None) -> dict:
    """The whole ``bench.json`` object (``date``: now, UTC, unless given)."""
    date = date or datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {"machine": {k: machine.get(k) for k in MACHINE_FIELDS}, "date": date, "precision": precision,
            "sentences": sentences, "words": words, "blocks": blocks, "load": load, "warnings": list(warnings),
            "models": list(models)}


def write_bench(path: str | Path, doc: dict) -> Path:
    """Write ``doc`` (:func:`bench_document`) atomically, after checking it has every field of the contract."""
    missing = [k for k in TOP_FIELDS if k not in doc]
    missing += [f"models[{i}].{k}" for i, m in enumerate(doc.get("models", [])) for k in MODEL_FIELDS if k not in m]
    if missing:
        raise ValueError(f"bench document lacks {', '.join(missing)}")
    return write_json(path, doc)


# -- reading (nerkd report) ----------------------------------------------------------------------

@dataclass
class BenchFile:
    path: str
    machine: dict
    date: str
    precision: str
    sentences: int | None
    words: int | None
    entries: list[dict]
    blocks: int | None = None                                   # interleaved timing blocks (None: older file)
    warnings: list[str] = field(default_factory=list)           # e.g. timed under load


@dataclass
class BenchMatch:
    primary: dict[str, dict] = field(default_factory=dict)       # model name -> entry (+ "bench_file")
    int8: list[tuple[str, dict]] = field(default_factory=list)   # (model name, entry)
    bf16: dict[str, dict] = field(default_factory=dict)          # model name -> entry of a bf16 bench
    unmatched: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)


def read_bench(path: str | Path) -> BenchFile:
    """A bench file of either version, checked: one line naming the file and the field when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "bench file not found (run `nerkd bench --json` first)")
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise DataError(path, None, f"invalid JSON ({str(e).split(':')[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise DataError(path, None, 'not a nerkd bench file: expected an object with a "models" list')
    entries = []
    for i, entry in enumerate(data["models"]):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise DataError(path, None, f"models[{i}]: expected an object with a name")
        for key in FIGURES:
            value = entry.get(key)
            if value is not None and not isinstance(value, (int, float)):
                raise DataError(path, None, f"models[{i}].{key}: expected a number, got {value!r}")
        entries.append(dict(entry))
    machine = data.get("machine") if isinstance(data.get("machine"), dict) else {}
    warnings = data.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise DataError(path, None, f"warnings: expected a list of strings, got {warnings!r}")
    blocks = data.get("blocks")
    return BenchFile(str(path), machine, str(data.get("date", "")), str(data.get("precision", "")),
                     data.get("sentences"), data.get("words"), entries,
                     blocks if isinstance(blocks, int) else None, list(warnings))


def is_int8(entry: dict, bench: BenchFile) -> bool:
    return bench.precision.lower() == "int8" or "int8" in str(entry.get("name", "")).lower()


def is_bf16(entry: dict, bench: BenchFile) -> bool:
    return bench.precision.lower() == "bf16" or "bf16" in str(entry.get("name", "")).lower()


def _resolved(path: str | Path) -> Path | None:
    try:
        return Path(path).expanduser().resolve()
    except OSError:
        return None


def _candidates(raw: str, bases: list[Path]) -> set[Path]:
    p = Path(raw).expanduser()
    if p.is_absolute():
        return {q for q in [_resolved(p)] if q}
    return {q for b in bases if (q := _resolved(b / p))}


def _base_name(name: str, tag: str = "int8") -> str:
    """``"final int8"``, ``"final-int8"``, ``"final (int8)"`` -> ``"final"`` (``tag`` int8 or bf16)."""
    out = name.lower().replace(f"({tag})", "").replace(tag, "").strip(" -_()[]")
    return out or name.lower()


def match_bench(models: list[tuple[str, str, tuple[str, ...]]], benches: list[BenchFile],
                bases: list[Path]) -> BenchMatch:
    """Match bench entries to ``models`` = [(name, path, other names)] (first non-int8 entry per model wins).

    Other names are e.g. the stage (``distill``), the name ``nerkd bench`` gives a default model. An entry
    is matched by its path first, and by name only when that path is not a folder of this machine (a bench
    file from elsewhere): an entry of another existing model that shares a name (two runs' "student") is not
    attached to the wrong row.
    """
    result = BenchMatch()
    by_path, by_name = {}, {}
    for name, path, aliases in models:
        r = _resolved(path)
        if r is not None:
            by_path.setdefault(r, name)
        for alias in (name, *aliases):
            by_name.setdefault(alias.lower(), name)
    for bench in benches:
        bench_bases = [*bases, Path(bench.path).resolve().parent]
        for entry in bench.entries:
            entry = {**entry, "bench_file": bench.path, "bench_precision": bench.precision}
            found, elsewhere = None, False
            if entry.get("path"):
                candidates = _candidates(str(entry["path"]), bench_bases)
                hits = [by_path[c] for c in candidates if c in by_path]
                found = hits[0] if hits else None
                elsewhere = found is None and any(c.exists() for c in candidates)
            int8 = is_int8(entry, bench)
            bf16 = not int8 and is_bf16(entry, bench)
            if found is None and not elsewhere:   # by name only when the entry's folder is not on this machine
                key = str(entry["name"]).lower()
                found = by_name.get(_base_name(key, "int8") if int8 else _base_name(key, "bf16") if bf16 else key)
            if found is None:
                result.unmatched.append(entry)
            elif bf16:
                if found in result.bf16:
                    result.duplicates.append(entry)
                else:
                    result.bf16[found] = entry
            elif int8:
                if any(m == found for m, _ in result.int8):
                    result.duplicates.append(entry)
                else:
                    result.int8.append((found, entry))
            elif found in result.primary:
                result.duplicates.append(entry)
            else:
                result.primary[found] = entry
    return result


def machines(benches: list[BenchFile]) -> list[str]:
    out = []
    for b in benches:
        m = b.machine
        desc = ", ".join(str(m[k]) for k in ("cpu", "device") if m.get(k))
        if m.get("threads"):
            desc += f", {m['threads']} threads"
        if m.get("torch"):
            desc += f", torch {m['torch']}"
        out.append(desc or "unknown machine")
    return out
