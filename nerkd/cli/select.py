from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nerkd.cli.common import (
    BatchSizeOpt,
    ConfigOpt,
    Device,
    IdColumnOpt,
    InputFormat,
    InputFormatOpt,
    ModelOpt,
    NoProgressOpt,
    NoVerifyOpt,
    SetOpt,
    TextColumnOpt,
    ThreadsOpt,
    count_option,
    device_option,
    format_option,
    input_option,
    missing_model_fails_fast,
    output_option,
    resolve,
)
from nerkd.cli.errors import known_errors

if TYPE_CHECKING:
    from nerkd.stages.select import SelectResult


class TaskFormat(str, Enum):
    labelstudio = "labelstudio"
    doccano = "doccano"


class Strategy(str, Enum):
    entropy = "entropy"
    margin = "margin"
    random = "random"


StudentOpt = Annotated[str | None, typer.Option(
    "--student", callback=missing_model_fails_fast,
    help="A second model (e.g. the distilled student): notes where the two disagree rank higher "
         "(select.student_weight).")]
StrategyOpt = Annotated[Strategy | None, typer.Option(
    "--strategy", help="A word's uncertainty: entropy of its label distribution, or margin between its two likeliest "
                       "labels; random: a seeded random choice (a baseline). Default: select.strategy.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Breaks ties in score (random: the whole choice). "
                                                            "Default: select.seed.")]


@known_errors
def select(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    no_verify: NoVerifyOpt = False,
    model: ModelOpt = None,
    input_: Annotated[Path, input_option("Unlabelled notes: one per line, JSONL with id/text, or a table: "
                                         "NOTES.parquet.", dir_okay=False)] = ...,
    output: Annotated[Path, output_option("Tasks file to write (Label Studio JSON or Doccano JSONL).",
                                          dir_okay=False)] = ...,
    notes: Annotated[int | None, count_option("--notes", "Notes to choose. Default: select.n.")] = None,
    fmt: Annotated[TaskFormat, format_option(
        "labelstudio (Label Studio tasks with predictions, one JSON array) or doccano (Doccano JSONL).")
                   ] = TaskFormat.labelstudio,
    student: StudentOpt = None,
    strategy: StrategyOpt = None,
    seed: SeedOpt = None,
    input_format: InputFormatOpt = InputFormat.auto,
    device: Annotated[Device | None, device_option("Default: infer.device.")] = None,
    batch_size: BatchSizeOpt = None,
    threads: ThreadsOpt = None,
    no_progress: NoProgressOpt = False,
    id_column: IdColumnOpt = None,
    text_column: TextColumnOpt = None,
) -> None:
    """Choose the unlabelled notes to annotate next: those the model is least sure of (and, with --student, those
    two models disagree on), near-duplicates dropped, written as annotation tasks with the model's pre-annotations.

    A note's score is the mean uncertainty of its select.top_words most uncertain words (entropy or margin of
    their label distribution); the best --notes notes are kept, best first, no two of them near-duplicates (word
    Jaccard >= select.dedup). The input is streamed (memory: the notes kept, plus a chunk); equal scores are
    ordered by --seed. Import the tasks in Label Studio or Doccano, correct them, export, and train on the
    export (data.format labelstudio or doccano). The summary on stderr says how many notes were read, skipped
    (empty), dropped (near-duplicates) and chosen, and the range of scores.

    \b
    Example:
      nerkd select --model artifacts/final --input data/texts.txt -n 5 \\
        --output artifacts/tasks.json
    """
    from nerkd.stages.infer import resolve_model
    from nerkd.stages.select import SelectJob, run_select

    settings, project = resolve(config, set_, no_verify=no_verify)
    ref = resolve_model(model, project, settings.paths.artifacts, purpose="select with")
    updates = {k: v for k, v in {"n": notes, "seed": seed, "strategy": strategy.value if strategy else None}.items()
               if v is not None}
    section = settings.select.model_copy(update=updates)
    infer = settings.infer.model_copy(update={k: v for k, v in {
        "device": device.value if device else None, "batch_size": batch_size}.items() if v is not None})
    job = SelectJob(input_, output, out_format=fmt.value, in_format=input_format.value, id_col=id_column,
                    text_col=text_column, student=student, threads=threads, show_progress=not no_progress)
    _summary(run_select(ref, job, section, infer, max_length=settings.data.max_length, stride=settings.data.stride))


def _summary(result: SelectResult) -> None:
    """The run's last lines on stderr: what was scored, dropped and chosen, and where it went."""
    from nerkd.ui import log, warn

    s = result.stats
    scored = f"{s.scored} scored" + ("" if s.low is None else f", scores {s.low:.4f}..{s.high:.4f}")
    chosen = "" if s.chosen_low is None else f" (scores {s.chosen_low:.4f}..{s.chosen_high:.4f})"
    if result.strategy == "random":
        scored, chosen = f"{s.scored} in the draw", " at random"
    log(f"select: {s.read} notes read, {s.empty} empty skipped, {scored}; "
        f"{s.duplicates} near-duplicates dropped; {s.chosen} chosen{chosen}")
    what = "Label Studio tasks" if result.out_format == "labelstudio" else "Doccano lines"
    version = f" (model_version {result.model_version})" if result.model_version else ""
    log(f"select: wrote {result.tasks} {what}{version}, best first, to {result.target}")
    for level, message in result.notes:
        (warn if level == "warning" else log)(message)
