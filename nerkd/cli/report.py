from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nerkd.cli.common import ConfigOpt, SetOpt, resolve
from nerkd.cli.errors import known_errors


@known_errors
def report(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    data: Annotated[Path | None, typer.Option("--data", "-d", help="Labelled file to score on "
                                              "(default: data.test, else data.dev).", dir_okay=False)] = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", metavar="[NAME=]PATH",
        help="Model or run folder, in the order to show (repeatable; default: the local teacher, then the "
             "distill, prune and finetune outputs).")] = None,
    bench: Annotated[list[Path] | None, typer.Option(
        "--bench", "-b", metavar="FILE", dir_okay=False,
        help="nerkd bench JSON (repeatable; default: <artifacts>/bench.json if present).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Report folder (default: "
                                                "<artifacts>/report).", file_okay=False)] = None,
) -> None:
    """Score every model on one labelled file; write report.md, a self-contained report.html, report.json.

    Shows per-type entity P/R/F1, size and speed-ups (from nerkd bench), an F1/latency Pareto plot
    and the head-importance heatmap of pruned models. Run folders may also give train_summary.json
    and head_importance.json.

    \b
    Example (the teacher and the final model on the dev set):
      nerkd report --data data/dev.jsonl --model artifacts/teacher \\
        --model artifacts/final --output artifacts/report_dev
    """
    from rich.markup import escape

    from nerkd.cli.render import report_tables
    from nerkd.report.render import write_report
    from nerkd.stages.report import (
        build_report,
        default_bench,
        default_data,
        default_models,
        default_output,
        named_models,
    )
    from nerkd.ui import err, log, out

    settings, project = resolve(config, set_)
    specs = named_models(model) if model else default_models(settings, project)
    if not model and not any(s.stage == "teacher" for s in specs):
        log(f"teacher {settings.teacher.model} is not a local folder: left out (add it with --model)")
    data_path = str(data) if data is not None else default_data(settings)
    bench_files = list(bench) if bench else default_bench(settings, project)
    out_dir = output if output is not None else default_output(settings, project)
    log(f"report: {len(specs)} models on {data_path}: " + ", ".join(f"{s.name} ({s.path})" for s in specs))
    if bench_files:
        log("bench figures: " + ", ".join(str(p) for p in bench_files))
    rep = build_report(settings, project, data=data_path, models=specs, bench_files=bench_files, output=out_dir)
    files = write_report(rep)
    for table in report_tables(rep):
        out.print(table)
    for note in rep.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", markup=True, highlight=False, soft_wrap=True)
    for message in rep.warnings:  # last, so they are not lost among the notes
        err.print(f"[yellow]warning:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    log("wrote " + ", ".join(str(p) for p in [*files.values(), *rep.plots.values()]))
    out.print(str(files["html"]), markup=False, highlight=False, soft_wrap=True)
