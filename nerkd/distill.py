"""``nerkd distill``: teacher -> student knowledge distillation.

The loss of a step is ``w_ce L_CE + w_kd L_KD + w_hidden L_Hidden + w_crf L_CRF`` with weights
from the phase in force (``distill.phases``, :meth:`DistillSettings.weights_for_epoch`):

- ``L_CE``: gold cross-entropy, or the CRF negative log-likelihood when the student has a CRF;
- ``L_KD``: KL(teacher || student) at temperature T (x T²) over the shared type space, so an IO
  teacher teaches a BIO/BIOES student (over the full label distribution when both label spaces
  are equal); tokens whose gold type only the data has get no KD;
- ``L_Hidden``: 1 - cosine between hidden states paired by ``distill.layer_map`` (0 = embeddings),
  through learned projections when widths differ;
- ``L_CRF``: squared distance between the CRFs' transition scores, when both models have a CRF.

The loop itself (optimiser, AMP, checkpoints, resume, early stopping, DDP) is
:func:`nerkd.train.loop.train`; this module builds the models and the objective.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from nerkd.data.labels import LabelSpace, TypeMapping, type_mapping
from nerkd.errors import SettingsError
from nerkd.losses import ce_loss, crf_nll, crf_transition_loss, hidden_loss, kd_loss, transition_pairs
from nerkd.models.ner import NerModel
from nerkd.models.student import hidden_projections
from nerkd.train.objective import BaseObjective

TERMS = ("ce", "kd", "hidden", "crf")


def _rank0() -> bool:
    """Rank 0 under torchrun (read from the environment: the process group starts later, in the loop)."""
    from nerkd.train.ddp import detect

    return detect().is_main


def say(message: str) -> None:
    """A log line on stderr (rank 0 only under torchrun)."""
    if _rank0():
        from nerkd.ui import log

        log(message)


def check_layer_map(layer_map, n_teacher: int, n_student: int) -> tuple[list[int], list[int]]:
    """``(teacher, student)`` hidden-state indices (0 = embeddings), checked against both depths."""
    t, s = list(layer_map.teacher), list(layer_map.student)
    if len(t) != len(s):
        raise SettingsError(f"distill.layer_map: {len(t)} teacher layers vs {len(s)} student layers")
    bad_t = [i for i in t if not 0 <= i <= n_teacher]
    bad_s = [i for i in s if not 0 <= i <= n_student]
    if bad_t or bad_s:
        raise SettingsError(f"distill.layer_map: out of range: teacher {bad_t} (0..{n_teacher}), student {bad_s} "
                            f"(0..{n_student}); 0 is the embeddings, the student has {n_student} layers")
    return t, s


def freeze(model: NerModel) -> NerModel:
    model.eval()
    model.requires_grad_(False)
    return model


class DistillObjective(BaseObjective):
    """The distillation :class:`~nerkd.train.objective.Objective` (see the module doc).

    ``projections`` (``nn.ModuleList`` of ``Linear(Hs, Ht)``, one per layer-map pair) are made
    here when the hidden sizes differ and none are given; they are ``trainable_extras()``.
    """

    def __init__(self, student: NerModel, teacher: NerModel, mapping: TypeMapping, distill_settings,
                 layer_map=None, projections: nn.ModuleList | None = None):
        super().__init__(student)
        self.teacher = freeze(teacher)
        self.teacher_forward: nn.Module = self.teacher   # torch.compile'd by compile_teacher()
        self.settings = distill_settings
        self.temperature = float(distill_settings.temperature)
        self.t_layers, self.s_layers = check_layer_map(layer_map or distill_settings.layer_map,
                                                       teacher.num_layers, student.num_layers)
        if projections is None:
            projections = hidden_projections(student.hidden_size, teacher.hidden_size, len(self.t_layers))
        elif len(projections) != len(self.t_layers):
            raise SettingsError(f"distill.layer_map: {len(self.t_layers)} pairs but {len(projections)} projections")
        self.projections = projections
        self.mapping = mapping
        s_space = student.labels
        if len(mapping.student_cols) != len(s_space) or len(mapping.teacher_cols) != teacher.num_labels:
            raise SettingsError("labels: the label mapping does not fit the student/teacher label counts")
        # same label space: KD over the full label distribution (keeps B vs I); else over shared types
        self.kd_per_label = tuple(teacher.labels.labels) == tuple(s_space.labels)
        if self.kd_per_label:
            self.n_shared = len(s_space)
            self.student_cols = torch.arange(len(s_space))
            self.teacher_cols = torch.arange(len(s_space))
        else:
            self.n_shared = len(mapping.shared)
            self.student_cols = torch.tensor(mapping.student_cols, dtype=torch.long)
            self.teacher_cols = torch.tensor(mapping.teacher_cols, dtype=torch.long)
        data_only = set(mapping.data_only)
        # gold labels whose type only the data has: no KD on those tokens
        self.kd_ok = torch.tensor([lab == "O" or lab.split("-", 1)[1] not in data_only for lab in s_space.labels])
        self.use_crf = student.crf is not None and teacher.crf is not None
        self.pairs = transition_pairs(teacher.labels, s_space, dict(mapping.renamed)) if self.use_crf else None
        if not self.use_crf and any(p.weights.crf > 0 for p in distill_settings.phases):
            missing = [name for name, m in (("teacher", teacher), ("student (student.crf)", student)) if m.crf is None]
            say(f"L_CRF skipped: no CRF in the {' and the '.join(missing)}; the crf weights of distill.phases "
                f"are ignored (logged as w_crf 0)")
        if self.projections is not None:
            say(f"L_Hidden: student hidden {student.hidden_size} != teacher {teacher.hidden_size}: "
                f"{len(self.projections)} learned projections")

    def compile_teacher(self) -> None:
        """Run the (frozen, no-grad) teacher forward through ``torch.compile`` (``train.compile``)."""
        self.teacher_forward = torch.compile(self.teacher)

    def trainable_extras(self) -> list[nn.Module]:
        return [self.projections] if self.projections is not None else []

    def to(self, device: torch.device) -> DistillObjective:
        super().to(device)
        self.teacher.to(device)
        self.student_cols = self.student_cols.to(device)
        self.teacher_cols = self.teacher_cols.to(device)
        self.kd_ok = self.kd_ok.to(device)
        return self

    def weights(self, epoch: int) -> dict[str, float]:
        w = self.settings.weights_for_epoch(epoch)
        return {"ce": w.ce, "kd": w.kd, "hidden": w.hidden, "crf": w.crf if self.use_crf else 0.0}

    def terms(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every unweighted loss term (scalars with gradients to the student), no host sync."""
        ids, att, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        if self.teacher.training:
            self.teacher.eval()
        with torch.no_grad():
            t_out = self.teacher_forward(ids, att, output_hidden_states=True)
        s_out = self.forward_model(ids, att, output_hidden_states=True)
        student = self.model
        ce = crf_nll(student.crf, s_out.logits, labels) if student.crf is not None else ce_loss(s_out.logits, labels)
        kd_mask = (labels != -100) & self.kd_ok[labels.clamp(min=0)]
        kd = kd_loss(s_out.logits, t_out.logits, kd_mask, self.temperature, self.student_cols, self.teacher_cols,
                     self.n_shared)
        hid = hidden_loss([s_out.hidden_states[i] for i in self.s_layers],
                          [t_out.hidden_states[i] for i in self.t_layers], att.bool(), self.projections)
        if self.use_crf:
            crf = crf_transition_loss(student.crf, self.teacher.crf, self.pairs)
        else:
            crf = kd.new_zeros(())
        return {"ce": ce, "kd": kd, "hidden": hid, "crf": crf}

    def loss(self, batch: dict[str, Tensor], epoch: int) -> tuple[Tensor, dict[str, Tensor | float]]:
        terms = self.terms(batch)
        weights = self.weights(epoch)
        total = None
        for name in TERMS:
            if weights[name] > 0:
                part = weights[name] * terms[name]
                total = part if total is None else total + part
        if total is None:  # every weight 0: nothing to learn, keep a graph so backward works
            total = 0.0 * terms["ce"]
        logged: dict[str, Tensor | float] = {k: v.detach() for k, v in terms.items()}
        logged.update({f"w_{k}": float(v) for k, v in weights.items()})
        logged["total"] = total.detach()
        return total, logged


# -- the command's engine ----------------------------------------------------------------------


def load_teacher(settings, ref: str | Path, option: str = "teacher.model") -> NerModel:
    t = settings.teacher
    teacher = NerModel.load(ref, revision=t.revision, trust_remote_code=t.trust_remote_code, what="teacher",
                            option=option)
    return freeze(teacher)


def mapping_record(mapping: TypeMapping, teacher: LabelSpace, student: LabelSpace, settings,
                   teacher_ref: str, kept_layers: list[int] | None, pairs) -> dict:
    """What ``labels.json`` records about the label mapping used."""
    from nerkd.models.student import classifier_row_map

    rows = classifier_row_map(teacher, student, settings.labels.rename)
    same = tuple(teacher.labels) == tuple(student.labels)
    return {
        "teacher": {"model": str(teacher_ref), "labels": list(teacher.labels), "scheme": teacher.scheme},
        "student": {"labels": list(student.labels), "scheme": student.scheme},
        "shared": list(mapping.shared),
        "teacher_cols": list(mapping.teacher_cols),
        "student_cols": list(mapping.student_cols),
        "teacher_only": list(mapping.teacher_only),
        "teacher_only_policy": settings.labels.teacher_only,
        "data_only": list(mapping.data_only),
        "renamed": dict(mapping.renamed),
        "table": [{"teacher": t, "student": s, "shared": c} for t, s, c in mapping.describe(teacher, student)],
        "classifier_init": None if kept_layers is None else (
            "copied" if same else {lab: (teacher.labels[r] if r is not None else None)
                                   for lab, r in zip(student.labels, rows, strict=True)}),
        "kept_teacher_layers": kept_layers,
        "crf_transitions": pairs,
    }


def log_mapping(mapping: TypeMapping, teacher: LabelSpace, student: LabelSpace, policy: str) -> None:
    if not _rank0():
        return
    from rich.table import Table

    from nerkd.ui import err

    table = Table(title=f"label mapping: teacher {teacher.scheme} -> data {student.scheme} (KD over shared types)",
                  title_justify="left")
    for col in ("teacher labels", "data labels", "shared"):
        table.add_column(col)
    for row in mapping.describe(teacher, student):
        table.add_row(*row)
    err.print(table)
    if mapping.teacher_only:
        fate = "folded into O" if policy == "outside" else "dropped from KD (teacher renormalised)"
        say(f"teacher-only types {', '.join(mapping.teacher_only)}: {fate}")
    if mapping.data_only:
        say(f"data-only types {', '.join(mapping.data_only)}: gold supervision only, no KD on their tokens")


def _write_run_files(settings, output: Path, record: dict) -> None:
    from nerkd.io import write_json

    if _rank0():
        output.mkdir(parents=True, exist_ok=True)
        settings.save(output)
        write_json(output / "labels.json", record)


def model_ref_id(ref: str | Path) -> str:
    """A model reference as recorded in a run's fingerprint: a local folder resolved, a hub id as is."""
    path = Path(ref)
    return str(path.resolve()) if path.exists() else str(ref)


def run_distill(settings, project, teacher_ref: str | Path, output: str | Path, resume: bool = False,
                overwrite: bool = False):
    """Distil ``teacher_ref`` into a student saved in ``output``; returns the loop's ``TrainResult``.

    ``output`` is guarded by :class:`nerkd.rundir.RunFolder` (checked and locked before anything is
    loaded; with ``resume``, a checkpoint must be there; ``overwrite`` allows a non-nerkd folder)."""
    from nerkd.rundir import RunFolder

    output = Path(output)
    with RunFolder(output, overwrite=overwrite, resume=resume, main=_rank0(), log=say) as run:
        result = _distill(settings, teacher_ref, output, resume, run)
    if _rank0():
        project.remember_output("distill", output)
    return result


def _distill(settings, teacher_ref: str | Path, output: Path, resume: bool, run):
    from nerkd.data.dataset import data_warnings, encode_split, label_space_for, load_splits, read_notes
    from nerkd.models.ner import load_tokenizer
    from nerkd.models.student import build_student
    from nerkd.train.loop import DevSet, train

    splits = load_splits(settings.data, label_settings=settings.labels)
    if "train" not in splits:
        raise SettingsError("data.train: not set; nerkd distill needs training data")
    if "dev" not in splits:
        say("[yellow]warning:[/] data.dev is not set: no evaluation, no early stopping, the last model is kept")
    for warning in data_warnings(splits):
        say(f"[yellow]warning:[/] {warning}")
    space = label_space_for(list(splits.values()), settings.data)
    teacher = load_teacher(settings, teacher_ref)
    t = settings.teacher
    tokenizer = load_tokenizer(teacher_ref, revision=t.revision, trust_remote_code=t.trust_remote_code,
                               what="teacher", option="teacher.model")
    max_pos = getattr(teacher.config, "max_position_embeddings", None)
    if max_pos is not None and settings.data.max_length > max_pos - 2:
        raise SettingsError(f"data.max_length: {settings.data.max_length} > the teacher's {max_pos - 2} positions")
    mapping = type_mapping(teacher.labels, space, settings.labels.rename, settings.labels.teacher_only)
    if len(mapping.shared) < 2:
        raise SettingsError(f"labels.rename: teacher types ({', '.join(teacher.labels.types)}) and data types "
                            f"({', '.join(space.types)}) share none; map them with labels.rename")
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
    record = mapping_record(mapping, teacher.labels, space, settings, str(teacher_ref), kept, pairs)
    record["kd_over"] = "labels (same label space)" if objective.kd_per_label else "shared types"
    run.fresh_start()
    _write_run_files(settings, output, record)

    for name in ("train", "dev"):
        if name in splits:
            sp = encode_split(splits[name], tokenizer, space, settings.data)
            say(f"{name} ({sp.path}): {sp.encoded.summary()}{read_notes(sp)}")
    dev = DevSet.from_split(splits["dev"], space) if "dev" in splits else None

    fingerprint = {"teacher.ref": model_ref_id(teacher_ref), "teacher.revision": t.revision,
                   "student": settings.student.model_dump(mode="json"),
                   "labels": settings.labels.model_dump(mode="json"),
                   "distill": settings.distill.model_dump(mode="json")}
    return train(objective, tokenizer, splits["train"].windows, dev, settings, output, resume=resume,
                 stage="distill", fingerprint=fingerprint)
