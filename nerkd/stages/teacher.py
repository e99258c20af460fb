"""``nerkd finetune --base ENCODER|scratch`` (stage ``teacher``): a domain teacher.

A base encoder (folder or hub id, :func:`nerkd.models.base.base_model`) gets a new classifier
over the data's label set, and a CRF with ``--crf`` / ``finetune.crf``; it is trained on the
configured gold data for ``finetune.epochs`` epochs at ``finetune.lr`` into ``<artifacts>/teacher``
(default)::

    nerkd finetune --base camembert-base --crf --epochs 5 --output artifacts/teacher
    nerkd finetune --base scratch --output artifacts/teacher     # offline quickstart

``--base scratch`` (:func:`nerkd.models.scratch.scratch_model`) builds a tiny CamemBERT-architecture
encoder (4 layers, hidden 128, 4 heads) with a Unigram tokenizer (vocabulary 2000) trained on
``data.train``: no download. ``--teacher REF`` (or ``finetune.teacher``) adds the distillation
losses, as for the recovery stage (:mod:`nerkd.stages.finetune`); both train through
:func:`nerkd.stages.common.train_on_gold`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nerkd.data.dataset import Split, label_space_for
from nerkd.data.labels import LabelSpace
from nerkd.errors import SettingsError
from nerkd.models.base import base_model
from nerkd.models.scratch import SCRATCH, SCRATCH_HEADS, SCRATCH_HIDDEN, SCRATCH_LAYERS, scratch_model
from nerkd.settings import DataSettings, Settings
from nerkd.stages.common import (
    Trainee,
    check_lr,
    data_inputs,
    in_run_folder,
    load_training_splits,
    model_ref_id,
    train_on_gold,
)
from nerkd.train import ddp

if TYPE_CHECKING:
    from nerkd.project import Project
    from nerkd.rundir import RunFolder
    from nerkd.train.loop import TrainResult


def run_teacher(settings: Settings, project: Project, *, base: str, teacher_ref: str | None = None,
                output: str | Path | None = None, crf: bool | None = None, resume: bool = False,
                epochs: int | None = None, lr: float | None = None, scratch_layers: int = SCRATCH_LAYERS,
                scratch_hidden: int = SCRATCH_HIDDEN, overwrite: bool = False) -> TrainResult:
    """Make a teacher from ``base`` (an encoder, or ``"scratch"``) into ``output`` (default
    ``<artifacts>/teacher``); returns the loop's :class:`~nerkd.train.loop.TrainResult`. The output
    folder is guarded as :func:`~nerkd.stages.common.in_run_folder` says."""
    check_lr(lr)
    out_dir = Path(output) if output else project.default_output("teacher", settings.paths.artifacts)
    inputs = {"the base encoder (--base)": base, "the teacher (--teacher)": teacher_ref or settings.finetune.teacher,
              **data_inputs(settings.data)}
    return in_run_folder(project, "teacher", out_dir, lambda run: _teacher(
        settings, out_dir, run, base=base, teacher_ref=teacher_ref, crf=crf, resume=resume, epochs=epochs, lr=lr,
        scratch=(scratch_layers, scratch_hidden)), inputs=inputs, overwrite=overwrite, resume=resume)


def _teacher(settings: Settings, out_dir: Path, run: RunFolder, *, base: str, teacher_ref: str | None,
             crf: bool | None, resume: bool, epochs: int | None, lr: float | None,
             scratch: tuple[int, int]) -> TrainResult:
    splits = load_training_splits(settings.data, settings.labels, "finetune", ("train", "dev"))
    torch.manual_seed(settings.train.seed)
    space = label_space_for(list(splits.values()), settings.data)
    use_crf = settings.finetune.crf if crf is None else crf
    if base == SCRATCH:
        trainee = _scratch(splits["train"], space, use_crf, settings.data, out_dir, run, resume, *scratch)
    else:
        model, tokenizer = base_model(base, space, use_crf, trust_remote_code=settings.teacher.trust_remote_code)
        trainee = Trainee(model, tokenizer, space, f"{base} + new classifier over {len(space)} labels")
    fingerprint = {"model.ref": None, "base": model_ref_id(base), "crf": trainee.model.crf is not None,
                   "scratch": list(scratch) if base == SCRATCH else None}
    return train_on_gold(settings, "teacher", out_dir, run, trainee, splits, teacher_ref=teacher_ref, resume=resume,
                         epochs=epochs, lr=lr, fingerprint=fingerprint)


def _scratch(train: Split, space: LabelSpace, crf: bool, data: DataSettings, out_dir: Path, run: RunFolder,
             resume: bool, layers: int, hidden: int) -> Trainee:
    """The ``--base scratch`` model; its tokenizer is saved at once (a fresh run) so that a crash
    before the first save can still be resumed, and read back from there on ``--resume``."""
    if ddp.detect().enabled:
        raise SettingsError("--base scratch trains its tokenizer in-process: run it without torchrun")
    tokenizer = None
    if resume and (out_dir / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(out_dir)
    texts = [" ".join(s.tokens) for s in train.sentences]
    model, tokenizer = scratch_model(texts, space, crf, data.max_length, layers=layers, hidden=hidden,
                                     tokenizer=tokenizer)
    if not resume:
        run.fresh_start()
        out_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(out_dir)
    source = (f"scratch: {layers} layers, hidden {hidden}, {SCRATCH_HEADS} heads, "
              f"vocabulary {len(tokenizer)} trained on {len(texts)} sentences")
    return Trainee(model, tokenizer, space, source)
