"""``nerkd report``: score every model on one file, merge bench figures, draw plots, write the report.

Each row is a model in a runtime (:mod:`nerkd.report.runtimes`: torch at the report's precision,
``--int8``, ``--bf16``, or ONNX Runtime for an ONNX export), scored through the engine of ``nerkd
infer`` loaded by :func:`nerkd.infer.load_engine`. :func:`run_report` is the stage:
the defaults (models, data, bench files, output folder), the report (:func:`build_report`) and its files
(:func:`nerkd.report.render.write_report`).
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from nerkd.errors import ModelLoadError, NerkdError, SettingsError
from nerkd.infer.benchfile import BenchMatch, match_bench, read_bench
from nerkd.io import file_sha256
from nerkd.log import progress, say, warn
from nerkd.project import Project, default_models, parse_models
from nerkd.report import errors, figures, plots, redaction
from nerkd.report.evaluate import GoldData, load_gold, read_run_file, score_model
from nerkd.report.records import ModelRow, ModelSpec, Report
from nerkd.report.runtimes import Run, compares, plan_runs, references
from nerkd.rundir import check_not_input


@dataclass
class ReportRun:
    report: Report
    files: dict[str, Path]     # "md", "html", "json" -> the file written


def run_report(settings, project: Project, *, data: str | Path | None = None, models: Sequence[str] | None = None,
               bench_files: Sequence[Path] | None = None, output: Path | None = None, variants: Sequence[str] = (),
               backend: str = "auto", redact: bool = False) -> ReportRun:
    """Score ``models`` (``--model`` values; default :func:`nerkd.project.default_models`, the models
    ``nerkd bench`` takes, under the same names; one that cannot load is skipped with a warning) on
    ``data`` (default :func:`default_data`) with the figures of ``bench_files`` (default
    :func:`default_bench`), and write the report into ``output`` (default :func:`default_output`).
    ``variants``, ``backend`` and ``redact``: see :func:`build_report`. Says what it scores through
    :mod:`nerkd.log`; prints nothing."""
    from nerkd.report.render import write_report

    specs = named_models(models) if models else _loadable(settings, project)
    data_path = str(data) if data is not None else default_data(settings)
    benches = list(bench_files) if bench_files else default_bench(settings, project)
    out_dir = output if output is not None else default_output(settings, project)
    say(f"report: {len(specs)} models on {data_path}: " + ", ".join(f"{s.name} ({s.path})" for s in specs))
    if benches:
        say("bench figures: " + ", ".join(str(p) for p in benches))
    rep = build_report(settings, project, data=data_path, models=specs, bench_files=benches, output=out_dir,
                       variants=variants, backend=backend, redact=redact)
    return ReportRun(rep, write_report(rep))


# -- defaults ----------------------------------------------------------------------------


def _loadable(settings, project: Project) -> list[ModelSpec]:
    """:func:`nerkd.project.default_models` as specs (their stage, ``distill``, a second name for older bench
    entries), less those that cannot load (a hub teacher, offline and not in the cache): skipped with a
    warning, as ``nerkd bench`` skips them."""
    from nerkd.models.hub import check_ref

    specs = []
    for m in default_models(settings, project):
        try:
            check_ref(m.path, "model", "teacher.model" if m.stage == "teacher" else None)
        except ModelLoadError as e:
            warn(f"skipped {m.name}: {e}")
            continue
        specs.append(ModelSpec(m.name, m.path, m.stage))
    return specs


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


def _model_notes(data: GoldData, rows: list[ModelRow], notes: list[str]) -> None:
    for row in rows:
        s = row.score
        if not row.base:
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


def _report_name(name: str) -> bool:
    """A name the report writes (or removes, stale plots) in its folder."""
    return name in ("report.md", "report.html", "report.json", "pareto.png") or fnmatch.fnmatchcase(name, "heads_*.png")


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


def _engine(run: Run, settings):
    """The engine of ``nerkd infer`` for ``run`` (its runtime's device, precision, int8 and backend)."""
    from nerkd.infer import load_engine
    from nerkd.stages.bench import teacher_kwargs

    rt = run.runtime
    section = settings.infer.model_copy(update={"device": rt.device, "precision": rt.precision, "compile": False,
                                                "int8": rt.int8 and rt.backend == "torch", "backend": rt.backend})
    return load_engine(run.spec.path, section, max_length=settings.data.max_length, stride=settings.data.stride,
                       **teacher_kwargs(settings)(run.spec.path))


def _score_all(runs: list[Run], entries: list[dict | None], gold: GoldData, settings,
               notes: list[str]) -> list[ModelRow]:
    """One row per run (``entries``: their bench figures); progress through :func:`nerkd.log.progress`."""
    rows: list[ModelRow] = []
    with progress() as bar:
        task = bar.add_task("evaluating", total=len(runs) * gold.sentences, info="")
        for run, entry in zip(runs, entries, strict=True):
            bar.update(task, info=run.name)
            engine = _engine(run, settings)
            score = score_model(run.name, run.spec.path, engine, gold, dict(settings.labels.rename),
                                runtime=run.runtime, advance=lambda n: bar.advance(task, n),
                                allow_no_shared=settings.report.allow_no_shared_labels)
            del engine
            row = ModelRow(score=score, stage=run.spec.stage if run.base else None, bench=entry, base=run.base)
            if run.base:
                _run_files(row, notes)
            rows.append(row)
            if not (set(gold.types) - set(score.missing_types)) & gold.present_types():
                notes.append(f"{run.name} tags none of the types of the data's entities: its row is all zeros "
                             "(--allow-no-shared-labels)")
    return rows


def _weights_sha256(path: str) -> dict[str, str]:
    """file name -> sha256 of a model folder's safetensors (as an ONNX export's manifest names its source)."""
    folder = Path(path)
    return {p.name: file_sha256(p) for p in sorted(folder.glob("*.safetensors")) if p.is_file()} \
        if folder.is_dir() else {}


def _compare(runs: list[Run], rows: list[ModelRow], notes: list[str]) -> None:
    """Each row's F1 against its reference row's (:func:`nerkd.report.runtimes.references`); each folder's
    weights are hashed once per report."""
    for run, row, ref in zip(runs, rows, references(runs, functools.cache(_weights_sha256)), strict=True):
        if ref is not None:
            row.reference = rows[ref].name
            row.f1_delta = row.score.scores["f1"] - rows[ref].score.scores["f1"]
        elif run.spec.export is not None:
            source = (run.spec.export.get("source") or {}).get("model") or "?"
            notes.append(f"{row.name}: exported from {source}, which is not a model of this report: no F1 "
                         "difference (add it with --model)")


def _runtime_notes(runs: list[Run], notes: list[str]) -> None:
    labels = {r.runtime.label for r in runs if not r.base or r.runtime.backend == "onnx"}
    if "int8" in labels:
        notes.append("int8 rows: the model quantised at load time (dynamic int8 Linear layers, as `nerkd infer "
                     "--int8`), scored on CPU; on disk it is the fp32 files")
    if "bf16" in labels:
        notes.append("bf16 rows: as `nerkd infer --precision bf16` (autocast on CPU, bf16 weights on GPU); on disk "
                     "it is the fp32 files")
    if labels & {"onnx", "onnx int8"}:
        notes.append("onnx rows: the exported graph run by ONNX Runtime on CPU (as `nerkd infer --backend onnx`); "
                     "words, windows and decoding are the same as for the torch rows")


def _with_backends(models: list[ModelSpec], backend: str) -> list[ModelSpec]:
    """``models`` with the manifest of each one that runs on ONNX Runtime (``backend`` auto: an ONNX
    export folder; onnx: every model must be one); one-line errors before anything is scored."""
    from nerkd.infer.onnx_backend import is_onnx_export, read_manifest, require_onnx, resolve_backend

    out = []
    for spec in models:
        if resolve_backend(spec.path, backend) == "torch":
            out.append(spec)
        elif not is_onnx_export(spec.path):
            raise SettingsError(f"--backend onnx: model {spec.name} ({spec.path}) is not an ONNX export: export it "
                                "with nerkd export --format onnx, or drop --backend onnx")
        else:
            out.append(replace(spec, export=read_manifest(spec.path)))
    if any(s.export is not None for s in out):
        require_onnx("nerkd report on an ONNX export")
    return out


def _plan(specs: list[ModelSpec], variants: Sequence[str], settings, matched: BenchMatch,
          notes: list[str]) -> tuple[list[Run], str, str]:
    """The rows to score, and the device and precision of the torch models' own rows (fp32 when
    runtimes are compared: the reference of the other rows)."""
    import torch

    from nerkd.device import default_cpu_threads, describe, resolve_device, resolve_precision
    from nerkd.threads import describe_threads

    device = resolve_device(settings.infer.device)
    precision = resolve_precision(settings.infer.precision, device)
    why = default_cpu_threads()            # the free physical cores (int8 and ONNX rows run on the CPU)
    say(f"report: scoring on {describe(device)}" if device.type == "cpu" else
        f"report: scoring on {describe(device)}; CPU rows on {describe_threads(torch.get_num_threads(), why)}")
    if compares(specs, variants) and precision != "fp32":
        notes.append(f"torch models' own rows scored in fp32 (infer.precision gives {precision} on {device.type}): "
                     "the reference of the other runtimes")
        precision = "fp32"
    torch_int8 = [name for name, _ in matched.int8 if any(s.name == name and s.export is None for s in specs)]
    bf16 = device.type != "cuda" or torch.cuda.is_bf16_supported()
    runs, more = plan_runs(specs, variants, device=device.type, precision=precision, bf16=bf16, int8_of=torch_int8)
    notes += more
    return runs, str(device), precision


def build_report(settings, project: Project, *, data: str, models: list[ModelSpec], bench_files: list[Path],
                 output: Path, variants: Sequence[str] = (), backend: str = "auto", redact: bool = False) -> Report:
    """Evaluate ``models`` on ``data`` and collect everything the report shows; draws the plots into
    ``output`` (the other files: :func:`nerkd.report.render.write_report`). Prints nothing.

    ``variants``: ``int8`` and/or ``bf16``, rows added per torch model; ``backend``: auto, torch or onnx
    (:func:`nerkd.infer.onnx_backend.resolve_backend`); ``redact``: measure leaks (:mod:`nerkd.report.redaction`),
    done unasked when the data has a label the redaction rules find."""
    if not models:
        raise NerkdError("report: no model to evaluate: give --model, or run the pipeline first "
                         f"(no local teacher, no stage output under {settings.paths.artifacts}/)")
    from nerkd.models.hub import check_ref

    for spec in models:  # fail before spending time on the first models
        check_ref(spec.path, f"model {spec.name}" if spec.name != Path(spec.path).name else "model", "--model")
    check_not_input(output, {"the --data file": data, **{f"the bench file {p}": p for p in bench_files},
                             **{f"the model {m.name}'s folder": m.path for m in models}}, writes=_report_name)
    specs = _with_backends(models, backend)
    gold = load_gold(data, settings.data, settings.labels)
    benches = [read_bench(p) for p in bench_files]
    bases = [project.root, Path.cwd()]
    matched = match_bench([(m.name, m.path, (m.stage,) if m.stage else ()) for m in specs], benches, bases)
    notes: list[str] = []
    if gold.split.read.skipped_empty:
        notes.append(f"{gold.split.read.skipped_empty} empty sentences skipped in {data}")
    runs, device, precision = _plan(specs, variants, settings, matched, notes)
    rows = _score_all(runs, figures.bench_entries(runs, matched), gold, settings, notes)
    _compare(runs, rows, notes)
    figures.compression(rows, notes)
    _model_notes(gold, rows, notes)
    figures.bench_notes(rows, benches, matched, notes)
    _runtime_notes(runs, notes)
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    report = Report(output=Path(output), created=created, data=gold, rows=rows, device=device,
                    precision=precision, benches=benches, bench_unmatched=matched.unmatched, notes=notes,
                    warnings=[f"{b.path}: {w}" for b in benches for w in b.warnings],
                    compares=compares(specs, variants))
    report.errors = errors.collect(gold.split.sentences, gold.gold_tags, rows, k=settings.report.errors_in_context,
                                   seed=settings.report.seed)
    report.redaction = redaction.measure(runs, gold, settings.redact, lambda run: _engine(run, settings),
                                         asked=redact, notes=notes)
    report.output.mkdir(parents=True, exist_ok=True)
    _plot_all(report)
    return report
