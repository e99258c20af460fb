"""``nerkd report``: score every model on one file, merge bench figures, draw plots, write the report."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path

from nerkd.errors import NerkdError, SettingsError
from nerkd.infer.benchfile import BenchFile, BenchMatch, machines, match_bench, read_bench
from nerkd.log import progress
from nerkd.project import Project, parse_models
from nerkd.report import plots
from nerkd.report.evaluate import GoldData, load_gold, read_run_file, score_model
from nerkd.report.records import ModelRow, ModelSpec, Report

# -- defaults ----------------------------------------------------------------------------


def default_models(settings, project: Project) -> list[ModelSpec]:
    """The pipeline's models (:meth:`nerkd.project.Project.pipeline_models`) that are folders here: the
    teacher, then the distill, prune and finetune outputs, named by their folder (``student``) with
    their stage (``distill``) as a second name for bench entries. A hub teacher is left out."""
    return [ModelSpec(m.folder, m.path, m.stage)
            for m in project.pipeline_models(settings.teacher.model, settings.paths.artifacts) if m.local]


def named_models(refs: Sequence[str]) -> list[ModelSpec]:
    """``--model`` values (``PATH`` or ``NAME=PATH``) -> specs with unique names
    (:func:`nerkd.project.parse_models`: a repeated folder name gets its parent folder, ``b/final``)."""
    return [ModelSpec(name, path) for name, path in parse_models(refs)]


def default_data(settings) -> str:
    path = settings.data.test or settings.data.dev
    if not path:
        raise SettingsError("report: no data to evaluate on: give --data or set data.test (or data.dev)")
    return path


def default_output(settings, project: Project) -> Path:
    return project.artifacts(settings.paths.artifacts) / "report"


def default_bench(settings, project: Project) -> list[Path]:
    """``<artifacts>/bench.json`` then any other ``<artifacts>/bench*.json`` (e.g. an int8 run)."""
    folder = project.artifacts(settings.paths.artifacts)
    found = sorted(folder.glob("bench*.json"), key=lambda p: (p.name != "bench.json", p.name))
    return [p for p in found if p.is_file()]


# -- build -------------------------------------------------------------------------------

def _run_files(row: ModelRow, notes: list[str]) -> None:
    for attr, fname in (("train_summary", "train_summary.json"), ("head_importance", "head_importance.json")):
        try:
            setattr(row, attr, read_run_file(row.score.path, fname))
        except ValueError as e:
            notes.append(f"{row.name}: {e}; ignored")
    hi = row.head_importance
    if hi is not None:
        scores = hi.get("scores")
        ok = isinstance(scores, list) and scores and all(isinstance(r, list) for r in scores)
        if not ok:
            notes.append(f"{row.name}: head_importance.json has no scores matrix; no heatmap")
            row.head_importance = None


def _disk(row: ModelRow) -> int | None:
    """Weights on disk: the folder's safetensors (an int8 variant has no folder: the bench's figure)."""
    b = row.bench or {}
    if row.score.variant == "int8" or row.score.disk_bytes is None:
        return b.get("disk_bytes") or None
    return row.score.disk_bytes


def _ratio(a, b) -> float | None:
    return a / b if a and b else None


def _compression(rows: list[ModelRow], notes: list[str]) -> None:
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


def _model_notes(data: GoldData, rows: list[ModelRow], notes: list[str]) -> None:
    for row in rows:
        s = row.score
        if s.variant != "fp32":
            continue
        if s.dropped:
            what = ", ".join(f"{t} ({n} spans)" for t, n in s.dropped.items())
            notes.append(f"{s.name}: predicted types absent from the gold label set were dropped, "
                         f"not counted as false positives: {what}")
        if s.renamed:
            notes.append(f"{s.name}: types renamed (labels.rename): "
                         + ", ".join(f"{a} -> {b}" for a, b in s.renamed.items()))
        if s.missing_types:
            notes.append(f"{s.name}: cannot tag {', '.join(s.missing_types)} (recall 0 on those types)")
        if s.scheme != data.scheme and s.scheme == "IO" and data.scheme != "IO":
            notes.append(f"{s.name}: tags in IO, the data in {data.scheme}: two touching entities of the same "
                         "type merge into one in its predictions")


def _plot_all(report: Report) -> None:
    for stale in [report.output / "pareto.png", *report.output.glob("heads_*.png")]:
        stale.unlink(missing_ok=True)  # plots of an earlier run into the same folder
    reason = plots.matplotlib_missing()
    if reason is not None:
        report.plots_skipped = reason
        report.notes.append(reason)
        return
    out = report.output
    rows = report.rows
    with_lat = [r for r in rows if (r.bench or {}).get("latency_ms_p50")]
    if with_lat:
        points = [plots.Point(r.name, float(r.bench["latency_ms_p50"]), 100 * r.score.scores["f1"])
                  for r in with_lat]
        title, xlabel = "F1 vs latency (Pareto front)", "batch-1 latency p50 (ms per sentence, nerkd bench)"
        if len(with_lat) < len(rows):
            report.notes.append("not in the F1/latency plot (no bench figures): "
                                + ", ".join(r.name for r in rows if r not in with_lat))
        log_x = False
    else:
        points = [plots.Point(r.name, r.score.parameters / 1e6, 100 * r.score.scores["f1"]) for r in rows]
        title, xlabel = "F1 vs parameters (no bench figures: run `nerkd bench` for latency)", "parameters (M)"
        log_x = True
    report.plots[title] = plots.pareto_plot(points, out / "pareto.png", xlabel=xlabel, title=title, log_x=log_x)
    for i, row in enumerate(rows):
        hi = row.head_importance
        if hi is None:
            continue
        pruned = [p for p in hi.get("pruned") or [] if isinstance(p, list) and len(p) == 2]
        norm = "normalised" if hi.get("normalize") else "raw"
        title = (f"{row.name}: head importance ({norm}, {hi.get('sentences', '?')} sentences); "
                 f"x = pruned ({len(pruned)})")
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in row.name)
        report.plots[title] = plots.head_heatmap(hi["scores"], pruned, out / f"heads_{i}_{safe}.png",
                                                 title=f"{row.name}: head importance (x = pruned)")


def _score_all(models: list[ModelSpec], matched: BenchMatch, gold: GoldData, settings,
               notes: list[str]) -> list[ModelRow]:
    """One row per model (fp32), then one per int8 bench entry; progress through :func:`nerkd.log.progress`."""
    runs = [(m, "fp32", matched.primary.get(m.name)) for m in models]
    spec_of = {m.name: m for m in models}
    runs += [(spec_of[name], "int8", entry) for name, entry in matched.int8]
    rows: list[ModelRow] = []
    with progress() as bar:
        task = bar.add_task("evaluating", total=len(runs) * gold.sentences, info="")
        for spec, variant, entry in runs:
            name = spec.name if variant == "fp32" else f"{spec.name} int8"
            bar.update(task, info=name)
            score = score_model(name, spec.path, gold, settings, variant=variant,
                                advance=lambda n: bar.advance(task, n))
            row = ModelRow(score=score, stage=spec.stage if variant == "fp32" else None, bench=entry)
            if variant == "fp32":
                _run_files(row, notes)
            rows.append(row)
    return rows


def _bench_notes(rows: list[ModelRow], benches: list[BenchFile], matched: BenchMatch, notes: list[str]) -> None:
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
        if matched.duplicates:
            notes.append(f"{len(matched.duplicates)} duplicate bench entries ignored (first one kept): "
                         + ", ".join(str(e.get("name")) for e in matched.duplicates))
        if len(set(machines(benches))) > 1:
            notes.append("bench files come from different machines: compare their figures with care")
        old = [b.path for b in benches if b.blocks is None]
        if old:
            notes.append(f"no spread over timing blocks in {', '.join(old)} (an older nerkd bench): rerun "
                         "`nerkd bench` for min-max figures")
    if matched.int8:
        notes.append("int8 rows: the model quantised at load time (dynamic int8 Linear layers, as `nerkd infer "
                     "--int8`), scored on CPU; on disk it is the fp32 files")


def build_report(settings, project: Project, *, data: str, models: list[ModelSpec], bench_files: list[Path],
                 output: Path) -> Report:
    """Evaluate ``models`` on ``data`` and collect everything the report shows; draws the plots into
    ``output`` (the other files: :func:`nerkd.report.render.write_report`). Prints nothing."""
    from nerkd.device import resolve_device, resolve_precision

    if not models:
        raise NerkdError("report: no model to evaluate: give --model, or run the pipeline first "
                         f"(no local teacher, no stage output under {settings.paths.artifacts}/)")
    from nerkd.models.hub import check_ref

    for spec in models:  # fail before spending time on the first models
        check_ref(spec.path, f"model {spec.name}" if spec.name != Path(spec.path).name else "model", "--model")
    gold = load_gold(data, settings.data, settings.labels)
    device = resolve_device(settings.infer.device)
    precision = resolve_precision(settings.infer.precision, device)
    benches = [read_bench(p) for p in bench_files]
    bases = [project.root, Path.cwd()]
    matched = match_bench([(m.name, m.path, (m.stage,) if m.stage else ()) for m in models], benches, bases)
    notes: list[str] = []
    if gold.split.read.skipped_empty:
        notes.append(f"{gold.split.read.skipped_empty} empty sentences skipped in {data}")
    rows = _score_all(models, matched, gold, settings, notes)
    _compression(rows, notes)
    _model_notes(gold, rows, notes)
    _bench_notes(rows, benches, matched, notes)
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    report = Report(output=Path(output), created=created, data=gold, rows=rows, device=str(device),
                    precision=precision, benches=benches, bench_unmatched=matched.unmatched, notes=notes,
                    warnings=[f"{b.path}: {w}" for b in benches for w in b.warnings])
    report.output.mkdir(parents=True, exist_ok=True)
    _plot_all(report)
    return report
