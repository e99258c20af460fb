from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nerkd.cli.common import (
    ConfigOpt,
    NoVerifyOpt,
    OverwriteOpt,
    ResumeOpt,
    SetOpt,
    missing_model_fails_fast,
    model_option,
    output_option,
    resolve,
    teacher_option,
)
from nerkd.cli.errors import known_errors
from nerkd.errors import SettingsError

ModelOpt = Annotated[str | None, model_option(
    "nerkd model to keep training (default: the last prune, else distill, output).")]
BaseOpt = Annotated[str | None, typer.Option(
    "--base", help="Make a domain teacher from this encoder (folder or hub id, e.g. camembert-base) with a new "
                   "classifier over the data's labels; 'scratch' builds a tiny offline one.",
    callback=missing_model_fails_fast)]
TeacherOpt = Annotated[str | None, teacher_option(
    "Also distil from this teacher (default: finetune.teacher; none = gold CE only).")]
OutputOpt = Annotated[Path | None, output_option(
    "Run folder (default: <artifacts>/final, or <artifacts>/teacher with --base).", file_okay=False)]
CrfOpt = Annotated[bool | None, typer.Option(
    "--crf/--no-crf", help="With --base: add a CRF (default: finetune.crf). With --model: add or drop one.")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs (default: finetune.epochs).")]


def _learning_rate(value: float | None) -> float | None:
    """--lr is bounded as finetune.lr: 0 < lr < 1 (typer's min/max are closed bounds)."""
    if value is not None and not 0 < value < 1:
        raise typer.BadParameter(f"{value:g} is not in the range 0<x<1.")
    return value


LrOpt = Annotated[float | None, typer.Option(
    "--lr", callback=_learning_rate, metavar="<float> [0<x<1]", help="Peak learning rate (default: finetune.lr).")]
LayersOpt = Annotated[int, typer.Option("--scratch-layers", min=1, help="Layers of the --base scratch encoder.")]
HiddenOpt = Annotated[int, typer.Option("--scratch-hidden", min=4, help="Hidden size of the --base scratch encoder "
                                                                         "(a multiple of its 4 heads).")]


@known_errors
def finetune(model: ModelOpt = None, base: BaseOpt = None, teacher: TeacherOpt = None, output: OutputOpt = None,
             crf: CrfOpt = None, resume: ResumeOpt = False, epochs: EpochsOpt = None, lr: LrOpt = None,
             scratch_layers: LayersOpt = 4, scratch_hidden: HiddenOpt = 128, overwrite: OverwriteOpt = False,
             config: ConfigOpt = None, set_: SetOpt = None, no_verify: NoVerifyOpt = False) -> None:
    """Fine-tune on the configured data: recover a pruned model, or make a domain teacher.

    Recovery (default): keeps training the last pruned (else distilled) model for finetune.epochs
    epochs at finetune.lr; pruned heads stay pruned. Output: <artifacts>/final.

    Teacher: --base ENCODER adds a classifier over the data's labels (and a CRF with --crf); --base
    scratch builds a tiny offline CamemBERT (4 layers, hidden 128) with a tokenizer trained on
    data.train. Output: <artifacts>/teacher.

    --teacher REF adds the distillation losses of nerkd distill. Writes the best model,
    settings.yaml, labels.json, metrics.jsonl, train_summary.json and checkpoints/ to the run
    folder. Multi-GPU: torchrun --nproc_per_node N -m nerkd finetune ...

    \b
    Example (recovery, then a scratch teacher as in the quickstart):
      nerkd finetune --model artifacts/pruned --epochs 3 -o artifacts/final_3
      nerkd finetune --base scratch --epochs 10 --lr 2e-3 -o artifacts/teacher_2
    """
    settings, project = resolve(config, set_, no_verify=no_verify)
    common = {"teacher_ref": teacher, "output": output, "crf": crf, "resume": resume, "epochs": epochs, "lr": lr,
              "overwrite": overwrite}
    if base:   # stage "teacher": a new classifier on an encoder
        if model:
            raise SettingsError("--model and --base exclude each other: --model continues training a nerkd model, "
                                "--base starts a teacher from an encoder")
        from nerkd.stages.teacher import run_teacher

        result = run_teacher(settings, project, base=base, scratch_layers=scratch_layers,
                             scratch_hidden=scratch_hidden, **common)
    else:      # stage "finetune": recovery of a pruned/distilled model
        from nerkd.stages.finetune import run_finetune

        result = run_finetune(settings, project, model_ref=model, **common)
    _render(result)


def _render(result) -> None:
    from nerkd.cli.render import scores_table
    from nerkd.ui import is_main_rank, out

    if not is_main_rank():
        return
    if result.dev is not None:
        out.print(scores_table(result.dev, f"{result.stage}: dev scores (best epoch {result.best_epoch})"))
    best = f"best dev F1 {result.best_f1:.4f} at epoch {result.best_epoch}" if result.best_f1 is not None \
        else "no dev set: last model kept"
    stops = {"early_stopping": ", stopped early", "max_steps": ", stopped at train.max_steps"}
    stop = stops.get(result.stop_reason, "")
    out.print(f"{best} ({result.epochs_run} epochs, {result.steps} steps{stop}) -> {result.out_dir}")
