"""``nerkd finetune --model DIR`` (stage ``finetune``): recovery after pruning.

Continues training a nerkd model, by default the last pruned (else distilled) one, on the
configured gold data for ``finetune.epochs`` epochs at ``finetune.lr``; the output (default
``<artifacts>/final``) keeps the pruned head layout::

    nerkd finetune --model artifacts/student_10L_pruned --output artifacts/student_10L_final

``--crf`` / ``--no-crf`` adds or drops the model's CRF. With ``--teacher REF`` (or
``finetune.teacher``) the loss is the distillation objective of ``nerkd distill`` (same losses and
``distill.phases`` schedule) instead of gold CE alone, and with ``data.unlabeled`` each epoch also
trains on unlabelled batches of that transfer set (teacher terms only, as in ``nerkd distill``);
without a teacher the set cannot be used, and a warning says so. With ``export.after_train: onnx`` the
run ends by writing the model's fp32 ONNX export into ``<output>/onnx``
(:func:`nerkd.stages.export.export_after_train`).

The same command with ``--base`` makes a domain teacher instead: :mod:`nerkd.stages.teacher`.
Both train through :func:`nerkd.stages.common.train_on_gold` and the loop
:func:`nerkd.train.loop.train` (resume, early stopping, DDP, checkpoints).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nerkd.errors import SettingsError
from nerkd.log import say
from nerkd.models.ner import NerModel, load_tokenizer
from nerkd.models.student import set_crf
from nerkd.settings import PathsSettings, Settings
from nerkd.stages.common import (
    Trainee,
    check_lr,
    data_inputs,
    in_run_folder,
    is_main,
    load_training_splits,
    model_ref_id,
    train_on_gold,
)
from nerkd.stages.export import check_after_train, export_after_train

if TYPE_CHECKING:
    from nerkd.project import Project
    from nerkd.rundir import RunFolder
    from nerkd.train.loop import TrainResult


def run_finetune(settings: Settings, project: Project, *, model_ref: str | None = None,
                 teacher_ref: str | None = None, output: str | Path | None = None, crf: bool | None = None,
                 resume: bool = False, epochs: int | None = None, lr: float | None = None,
                 overwrite: bool = False) -> TrainResult:
    """Fine-tune ``model_ref`` (default: the project's last pruned, else distilled, model) into
    ``output`` (default ``<artifacts>/final``); returns the loop's
    :class:`~nerkd.train.loop.TrainResult`. The output folder is guarded as
    :func:`~nerkd.stages.common.in_run_folder` says."""
    check_lr(lr)
    check_after_train(settings)
    out_dir = Path(output) if output else project.default_output("finetune", settings.paths.artifacts)
    model_ref = model_ref or _default_model(project, settings.paths)
    inputs = {"the input model's folder (--model)": model_ref,
              "the teacher (--teacher)": teacher_ref or settings.finetune.teacher, **data_inputs(settings.data)}
    return in_run_folder(project, "finetune", out_dir, lambda run: _finetune(
        settings, out_dir, run, model_ref=model_ref, teacher_ref=teacher_ref, crf=crf, resume=resume, epochs=epochs,
        lr=lr), inputs=inputs, overwrite=overwrite, resume=resume)


def _default_model(project: Project, paths: PathsSettings) -> str:
    found = project.default_input("finetune", paths.artifacts)
    if found is None:
        raise SettingsError("no model to fine-tune: pass --model DIR (or --base to make a teacher); "
                            "nothing found in <artifacts>/pruned or <artifacts>/student")
    return str(found)


def _finetune(settings: Settings, out_dir: Path, run: RunFolder, *, model_ref: str, teacher_ref: str | None,
              crf: bool | None, resume: bool, epochs: int | None, lr: float | None) -> TrainResult:
    splits = load_training_splits(settings.data, settings.labels, "finetune", ("train", "dev"))
    torch.manual_seed(settings.train.seed)
    model = NerModel.load(model_ref, what="model", option="--model")
    tokenizer = load_tokenizer(model_ref, what="model", option="--model")
    note = set_crf(model, crf)
    if note:
        say(note)
    pruned = f", pruned heads {model.heads}" if model.is_pruned else ""
    trainee = Trainee(model, tokenizer, model.labels, f"{model_ref}{pruned}")
    fingerprint = {"model.ref": model_ref_id(model_ref), "base": None, "crf": model.crf is not None, "scratch": None}
    result = train_on_gold(settings, "finetune", out_dir, run, trainee, splits, teacher_ref=teacher_ref,
                           resume=resume, epochs=epochs, lr=lr, fingerprint=fingerprint)
    if is_main():
        export_after_train(settings, out_dir)   # export.after_train: onnx -> <out_dir>/onnx
    return result
