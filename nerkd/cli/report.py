from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nerkd.cli.common import (
    Backend,
    ConfigOpt,
    NoVerifyOpt,
    SetOpt,
    backend_option,
    int8_rows_option,
    model_option,
    output_option,
    resolve,
)
from nerkd.cli.errors import known_errors

DataOpt = Annotated[Path | None, typer.Option(
    "--data", "-d", help="Labelled file (or BRAT folder) to score on (default: data.test, else data.dev).")]
ModelsOpt = Annotated[list[str] | None, model_option(
    "Model or run folder, in the order to show (repeatable; default: the teacher, then the distill, prune and "
    "finetune outputs, as nerkd bench takes them).", metavar="[NAME=]PATH")]
BenchOpt = Annotated[list[Path] | None, typer.Option(
    "--bench", "-b", metavar="FILE", dir_okay=False,
    help="nerkd bench JSON (repeatable; default: <artifacts>/bench.json if present).")]
OutputOpt = Annotated[Path | None, output_option("Report folder (default: <artifacts>/report).", file_okay=False)]
Int8RowsOpt = Annotated[bool, int8_rows_option(
    "Also score each torch model with dynamic int8 on CPU, as nerkd infer --int8: a row '<name> (int8)' under its "
    "fp32 row, with the F1 difference.")]
Bf16RowsOpt = Annotated[bool, typer.Option(
    "--bf16", help="Also score each torch model in bf16, as nerkd infer --precision bf16 (autocast on CPU, bf16 "
                   "weights on GPU): a row '<name> (bf16)' under its fp32 row.")]
BackendOpt = Annotated[Backend, backend_option(
    "auto: a folder written by nerkd export --format onnx is scored with ONNX Runtime (row '<name> (onnx)', "
    "compared with the torch model it was exported from when that one is given too); torch; onnx: every "
    "model must be such a folder (pip install 'nerkd\\[onnx]').")]

RedactOpt = Annotated[bool, typer.Option(
    "--redact", help="Also measure leaks: the redaction nerkd redact would make with each model (redact.* settings), "
                     "scored in characters against the gold entities (recall, documents fully redacted, "
                     "over-redaction), model alone and with the rules, and a sweep of redact.bias. Done unasked when "
                     "the data has a label the rules find (PHONE, NIR...).")]
AllowNoSharedOpt = Annotated[bool, typer.Option(
    "--allow-no-shared-labels", help="Score a model that tags none of the types of the data's entities (its row is "
                                     "all zeros) instead of stopping with an error. Default: "
                                     "report.allow_no_shared_labels.")]


@known_errors
def report(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    no_verify: NoVerifyOpt = False,
    data: DataOpt = None,
    model: ModelsOpt = None,
    bench: BenchOpt = None,
    output: OutputOpt = None,
    int8: Int8RowsOpt = False,
    bf16: Bf16RowsOpt = False,
    backend: BackendOpt = Backend.auto,
    redact: RedactOpt = False,
    allow_no_shared_labels: AllowNoSharedOpt = False,
) -> None:
    """Score every model on one labelled file; write report.md, a self-contained report.html, report.json.

    Shows per-type entity P/R/F1, size and speed-ups (from nerkd bench), an F1/latency Pareto plot
    and the head-importance heatmap of pruned models. Run folders may also give train_summary.json
    and head_importance.json.

    With --int8, --bf16 or an ONNX export among the models, the report compares runtimes: every row
    goes through the words, windows and decoding of nerkd infer, each torch model's own row is fp32,
    and a runtime column and the F1 difference against that fp32 row are added.

    \b
    Example:
      nerkd report --data data/dev.jsonl --model artifacts/teacher \\
        --model artifacts/final --int8 --output artifacts/report_dev
    """
    from rich.markup import escape

    from nerkd.cli.render import report_tables
    settings, project = resolve(config, set_, no_verify=no_verify)   # settings errors before torch is imported
    from nerkd.stages.report import run_report
    from nerkd.ui import err, log, out

    if allow_no_shared_labels:
        settings.report.allow_no_shared_labels = True
    variants = [name for name, on in (("int8", int8), ("bf16", bf16)) if on]
    run = run_report(settings, project, data=data, models=model, bench_files=bench, output=output, variants=variants,
                     backend=backend.value, redact=redact)
    rep, files = run.report, run.files
    for table in report_tables(rep):
        out.print(table)
    for note in rep.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", markup=True, highlight=False, soft_wrap=True)
    for message in rep.warnings:  # last, so they are not lost among the notes
        err.print(f"[yellow]warning:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    log("wrote " + ", ".join(str(p) for p in [*files.values(), *rep.plots.values()]))
    out.print(str(files["html"]), markup=False, highlight=False, soft_wrap=True)
