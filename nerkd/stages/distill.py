"""``nerkd distill``: teacher -> student knowledge distillation.

Builds the student from the teacher (:func:`nerkd.models.student.build_student`) and the
distillation objective (:class:`nerkd.train.kd.DistillObjective`, where the four losses and
their phases are described), then trains it with :func:`nerkd.train.loop.train` (optimiser,
AMP, checkpoints, resume, early stopping, DDP). With ``data.unlabeled``, each epoch also trains on
unlabelled batches of that transfer set (teacher terms only: :mod:`nerkd.train.transfer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nerkd.data.labels import LabelSpace, TypeMapping
from nerkd.log import say
from nerkd.settings import LabelSettings, Settings
from nerkd.stages.common import (
    check_positions,
    data_inputs,
    encode_and_log,
    in_run_folder,
    load_teacher,
    load_teacher_tokenizer,
    load_training_splits,
    log_mapping,
    model_ref_id,
    shared_mapping,
    transfer_for,
    write_run_files,
)
from nerkd.train.kd import DistillObjective

if TYPE_CHECKING:
    from nerkd.project import Project
    from nerkd.rundir import RunFolder
    from nerkd.train.loop import TrainResult


def mapping_record(mapping: TypeMapping, teacher: LabelSpace, student: LabelSpace, labels: LabelSettings,
                   teacher_ref: str, kept_layers: list[int] | None, pairs) -> dict:
    """What ``labels.json`` records about the label mapping used."""
    from nerkd.models.student import classifier_row_map

    rows = classifier_row_map(teacher, student, labels.rename)
    same = tuple(teacher.labels) == tuple(student.labels)
    return {
        "teacher": {"model": str(teacher_ref), "labels": list(teacher.labels), "scheme": teacher.scheme},
        "student": {"labels": list(student.labels), "scheme": student.scheme},
        "shared": list(mapping.shared),
        "teacher_cols": list(mapping.teacher_cols),
        "student_cols": list(mapping.student_cols),
        "teacher_only": list(mapping.teacher_only),
        "teacher_only_policy": labels.teacher_only,
        "data_only": list(mapping.data_only),
        "renamed": dict(mapping.renamed),
        "table": [{"teacher": t, "student": s, "shared": c} for t, s, c in mapping.describe(teacher, student)],
        "classifier_init": None if kept_layers is None else (
            "copied" if same else {lab: (teacher.labels[r] if r is not None else None)
                                   for lab, r in zip(student.labels, rows, strict=True)}),
        "kept_teacher_layers": kept_layers,
        "crf_transitions": pairs,
    }


def run_distill(settings: Settings, project: Project, teacher_ref: str | Path | None = None,
                output: str | Path | None = None, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Distil ``teacher_ref`` (default ``teacher.model``) into a student saved in ``output`` (default
    ``<artifacts>/student``); returns the loop's ``TrainResult``.

    ``output`` is guarded as :func:`~nerkd.stages.common.in_run_folder` says (checked and locked
    before anything is loaded; with ``resume``, a checkpoint must be there; ``overwrite`` allows a
    non-nerkd folder)."""
    teacher_ref = teacher_ref or settings.teacher.model
    output = Path(output) if output else project.default_output("distill", settings.paths.artifacts)
    inputs = {"the teacher (teacher.model)": teacher_ref,
              "the student's model (student.config)": settings.student.config, **data_inputs(settings.data)}
    return in_run_folder(project, "distill", output, lambda run: _distill(settings, teacher_ref, output, resume, run),
                         inputs=inputs, overwrite=overwrite, resume=resume)


def _distill(settings: Settings, teacher_ref: str | Path, output: Path, resume: bool, run: RunFolder
             ) -> TrainResult:
    from nerkd.data.dataset import label_space_for
    from nerkd.models.student import build_student
    from nerkd.train.loop import DevSet, train

    splits = load_training_splits(settings.data, settings.labels, "distill")
    space = label_space_for(list(splits.values()), settings.data)
    teacher = load_teacher(settings.teacher, teacher_ref)
    tokenizer = load_teacher_tokenizer(settings.teacher, teacher_ref)
    check_positions(settings.data.max_length, teacher.config, "teacher")
    mapping = shared_mapping(teacher.labels, space, settings.labels)
    log_mapping(mapping, teacher.labels, space, settings.labels.teacher_only)

    torch.manual_seed(settings.train.seed)
    student, kept = build_student(settings, teacher, space, tokenizer)
    where = f"teacher layers {kept}" if kept is not None else f"from {settings.student.config}"
    say(f"student: {student.num_layers} layers ({where}), {student.num_parameters() / 1e6:.1f}M parameters; "
        f"teacher: {teacher.num_layers} layers, {teacher.num_parameters() / 1e6:.1f}M")
    objective = DistillObjective(student, teacher, mapping, settings.distill)
    if settings.train.compile:
        objective.compile_teacher()   # the loop compiles the student forward itself
    pairs = "skipped (a model has no CRF)" if not objective.use_crf else (
        "identity" if objective.pairs is None else f"{len(objective.pairs)} matched scores")
    record = mapping_record(mapping, teacher.labels, space, settings.labels, str(teacher_ref), kept, pairs)
    record["kd_over"] = "labels (same label space)" if objective.kd_per_label else "shared types"
    run.fresh_start()
    write_run_files(output, record)

    encode_and_log(splits, ("train", "dev"), tokenizer, space, settings.data)
    transfer = transfer_for(settings, splits, teacher=True, stage="distill")
    dev = DevSet.from_split(splits["dev"], space) if "dev" in splits else None
    fingerprint = {"teacher.ref": model_ref_id(teacher_ref), "teacher.revision": settings.teacher.revision,
                   "student": settings.student.model_dump(mode="json"),
                   "labels": settings.labels.model_dump(mode="json"),
                   "distill": settings.distill.model_dump(mode="json")}
    return train(objective, tokenizer, splits["train"].windows, dev, settings, output, resume=resume,
                 stage="distill", fingerprint=fingerprint, unlabeled=transfer)
