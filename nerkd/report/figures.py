"""The figures each row of ``nerkd report`` shows besides its scores: which bench entry is its own
(:func:`bench_entries`), the notes on the bench files (:func:`bench_notes`), and the size and speed
ratios against the first row (:func:`compression`)."""

from __future__ import annotations

from nerkd.infer.benchfile import BenchFile, BenchMatch, machines
from nerkd.report.records import ModelRow
from nerkd.report.runtimes import Run


def _disk(row: ModelRow) -> int | None:
    """Weights on disk: the folder's weight files (an int8 or bf16 row converts them at load time: the
    bench's figure)."""
    b = row.bench or {}
    if row.score.runtime.converted or row.score.disk_bytes is None:
        return b.get("disk_bytes") or None
    return row.score.disk_bytes


def _ratio(a, b) -> float | None:
    return a / b if a and b else None


def compression(rows: list[ModelRow], notes: list[str]) -> None:
    """Ratios against the first row; speed-ups from bench figures, recomputed against the first row."""
    first = rows[0]
    fb = first.bench or {}
    disk0 = _disk(first)
    used_bench_speedups = False
    for row in rows:
        b = row.bench or {}
        params = row.score.parameters or b.get("parameters")
        disk = _disk(row)
        c = {"parameters": params, "disk_bytes": disk, "params_ratio": _ratio(first.score.parameters, params),
             "disk_ratio": _ratio(disk0, disk), "speedup_latency": None, "speedup_throughput": None}
        if b.get("latency_ms_p50") and fb.get("latency_ms_p50"):
            c["speedup_latency"] = fb["latency_ms_p50"] / b["latency_ms_p50"]
        elif b.get("speedup_latency") is not None:
            c["speedup_latency"], used_bench_speedups = b["speedup_latency"], True
        if b.get("words_per_s") and fb.get("words_per_s"):
            c["speedup_throughput"] = b["words_per_s"] / fb["words_per_s"]
        elif b.get("speedup_throughput") is not None:
            c["speedup_throughput"], used_bench_speedups = b["speedup_throughput"], True
        row.compression = c
    if used_bench_speedups:
        notes.append(f"{first.name} has no bench figures: speed-ups are the bench file's own "
                     "(relative to the bench's first model)")


def bench_entries(runs: list[Run], matched: BenchMatch) -> list[dict | None]:
    """Bench figures per run: a model's own row takes its entry; an int8 row the int8 entry, a bf16 row (its
    own row under ``infer.precision: bf16``, or ``--bf16``'s) the bf16 entry (for an ONNX export, an entry
    named ``(onnx int8)`` is its own)."""
    int8 = dict(matched.int8)
    out = []
    for run in runs:
        name = run.spec.name
        if run.spec.export is not None:
            out.append(matched.primary.get(name) or int8.get(name))
        elif run.runtime.precision == "bf16" and not run.runtime.int8:
            out.append(matched.bf16.get(name))
        else:
            out.append(matched.primary.get(name) if run.base else int8.get(name) if run.runtime.int8 else None)
    return out


def bench_notes(rows: list[ModelRow], benches: list[BenchFile], matched: BenchMatch, notes: list[str]) -> None:
    if not benches:
        notes.append("bench figures missing (latency, throughput, memory): run `nerkd bench` "
                     "(writes <artifacts>/bench.json) or give --bench FILE")
    else:
        unbenched = [r.name for r in rows if r.bench is None]
        if unbenched:
            notes.append(f"no bench entry for {', '.join(unbenched)}")
        if matched.unmatched:
            notes.append(f"{len(matched.unmatched)} bench entries match no evaluated model: "
                         + ", ".join(str(e.get("name")) for e in matched.unmatched))
        hidden = [name for name, entry in matched.bf16.items() if not any(r.bench is entry for r in rows)]
        if hidden:
            notes.append(f"bf16 bench figures of {', '.join(hidden)} not shown: they belong to a bf16 row "
                         "(add --bf16)")
        if matched.duplicates:
            notes.append(f"{len(matched.duplicates)} duplicate bench entries ignored (first one kept): "
                         + ", ".join(str(e.get("name")) for e in matched.duplicates))
        if len(set(machines(benches))) > 1:
            notes.append("bench files come from different machines: compare their figures with care")
        old = [b.path for b in benches if b.blocks is None]
        if old:
            notes.append(f"no spread over timing blocks in {', '.join(old)} (an older nerkd bench): rerun "
                         "`nerkd bench` for min-max figures")
