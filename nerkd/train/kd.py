"""The distillation objective (:class:`DistillObjective`): the loss of ``nerkd distill`` and of
``nerkd finetune --teacher``, computed from one batch by the pure functions of :mod:`nerkd.losses`.

The loss of a step is ``w_ce L_CE + w_kd L_KD + w_hidden L_Hidden + w_crf L_CRF`` with weights
from the phase in force (``distill.phases``, :meth:`DistillSettings.weights_for_epoch`):

- ``L_CE``: gold cross-entropy, or the CRF negative log-likelihood when the student has a CRF;
- ``L_KD``: KL(teacher || student) at temperature T (x T²) over the shared type space, so an IO
  teacher teaches a BIO/BIOES student (over the full label distribution when both label spaces
  are equal); tokens whose gold type only the data has get no KD;
- ``L_Hidden``: 1 - cosine between hidden states paired by ``distill.layer_map`` (0 = embeddings),
  through learned projections when widths differ;
- ``L_CRF``: squared distance between the CRFs' transition scores, when both models have a CRF.

Unlabelled batches (``data.unlabeled``, :meth:`DistillObjective.unlabeled_loss`) have no gold: they
take only the teacher's terms, ``distill.unlabeled_weight x (w_kd L_KD + w_hidden L_Hidden)`` with
the same phase weights, KD on every word the window owns (``word_index >= 0``). No CE, no CRF NLL is
computed for them; ``L_CRF`` (which does not depend on the batch) stays with the gold batches, so it
is counted once per gold batch as before. Their teacher outputs may come from a
:class:`~nerkd.train.transfer.TeacherCache` (``teacher_cache``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nerkd.data.labels import TypeMapping
from nerkd.data.schemes import IGNORE
from nerkd.errors import SettingsError
from nerkd.log import say
from nerkd.losses import ce_loss, crf_nll, crf_transition_loss, hidden_loss, kd_loss, transition_pairs
from nerkd.models.ner import NerModel
from nerkd.models.student import hidden_projections
from nerkd.train.objective import BaseObjective

TERMS = ("ce", "kd", "hidden", "crf")


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
        self.teacher_cache = None                         # a TeacherCache for unlabelled batches (the loop sets it)
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

    def teacher_targets(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The teacher's logits ``[B, T, Lt]`` and its hidden states that the layer map pairs (no grad)."""
        if self.teacher.training:
            self.teacher.eval()
        with torch.no_grad():
            t_out = self.teacher_forward(input_ids, attention_mask, output_hidden_states=True)
        return t_out.logits, [t_out.hidden_states[i] for i in self.t_layers]

    def teacher_terms(self, s_out, t_logits: Tensor, t_hidden: list[Tensor], kd_mask: Tensor,
                      attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(L_KD over kd_mask, L_Hidden over the attended positions)`` of a student output."""
        kd = kd_loss(s_out.logits, t_logits, kd_mask, self.temperature, self.student_cols, self.teacher_cols,
                     self.n_shared)
        hid = hidden_loss([s_out.hidden_states[i] for i in self.s_layers], t_hidden, attention_mask.bool(),
                          self.projections)
        return kd, hid

    def terms(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every unweighted loss term (scalars with gradients to the student), no host sync."""
        ids, att, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        t_logits, t_hidden = self.teacher_targets(ids, att)
        s_out = self.forward_model(ids, att, output_hidden_states=True)
        student = self.model
        ce = crf_nll(student.crf, s_out.logits, labels) if student.crf is not None else ce_loss(s_out.logits, labels)
        kd_mask = (labels != IGNORE) & self.kd_ok[labels.clamp(min=0)]
        kd, hid = self.teacher_terms(s_out, t_logits, t_hidden, kd_mask, att)
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

    def unlabeled_loss(self, batch: dict[str, Tensor], epoch: int, keys=None) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of an unlabelled batch (see the module doc): ``unlabeled_weight x (w_kd L_KD +
        w_hidden L_Hidden)``, KD on the owned words (``word_index >= 0``); ``labels`` are not read.
        ``keys`` (one per row) look the teacher's outputs up in ``teacher_cache`` when there is one.
        Returns ``(total, {"kd", "hidden"})`` (the loop logs them as ``u_kd``, ``u_hidden``, ``u_loss``)."""
        ids, att = batch["input_ids"], batch["attention_mask"]
        if self.teacher_cache is not None and keys is not None:
            t_logits, t_hidden = self.teacher_cache.targets(keys, ids, att, self.teacher_targets)
        else:
            t_logits, t_hidden = self.teacher_targets(ids, att)
        s_out = self.forward_model(ids, att, output_hidden_states=True)
        kd, hid = self.teacher_terms(s_out, t_logits, t_hidden, batch["word_index"] >= 0, att)
        w = self.weights(epoch)
        total = None
        for weight, term in ((w["kd"], kd), (w["hidden"], hid)):
            if weight > 0:
                total = weight * term if total is None else total + weight * term
        if total is None:  # both weights 0 in this phase: keep a graph so backward works
            total = 0.0 * kd
        return float(self.settings.unlabeled_weight) * total, {"kd": kd.detach(), "hidden": hid.detach()}
