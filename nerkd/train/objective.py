"""What the training loop optimises: an :class:`Objective` turns a batch into a loss.

The loop (:func:`nerkd.train.loop.train`) owns the optimiser, precision, batching, devices,
DDP and checkpoints; an objective owns the model(s) and the loss. Contract:

``model``
    The :class:`~nerkd.models.ner.NerModel` being trained (the real module: the loop saves it,
    evaluates it and puts it in ``train()`` mode; its CRF, if any, is ``model.crf``).
``forward_model``
    What the objective calls for the *student forward pass*, with the same signature and output
    as ``NerModel.forward``: ``forward_model(input_ids, attention_mask,
    output_hidden_states=False) -> NerOutput``. It is ``model`` until the loop replaces it with a
    DistributedDataParallel and/or ``torch.compile`` wrapper (:func:`nerkd.train.ddp.forward_wrapper`).
    Always go through ``forward_model`` for the student forward, never ``model(...)``, or DDP will
    not synchronise gradients; use ``model`` for everything else (``model.crf``, sizes, labels).
``trainable_extras()``
    Modules trained with the model but not part of it (e.g. hidden-state projections). The loop
    optimises them, moves them to the device, puts them in train mode, all-reduces their gradients
    under DDP and saves them in the resumable checkpoint. They are not saved with the best model.
``to(device)``
    Move every module the objective uses (student, extras, a teacher) to ``device``. The loop calls
    it once, before building the optimiser. A teacher stays in ``eval()`` and frozen: the loop
    only calls ``train()`` on ``model`` and the extras.
``loss(batch, epoch)``
    ``batch`` is :func:`nerkd.data.encode.collate`'s dict already on the device (``input_ids``,
    ``attention_mask``, ``labels`` [B, T], ``word_index``, ``sent``); ``epoch`` is 1-based. Called
    inside the loop's autocast context (bf16/fp16 on GPU), so a teacher forward in here runs under
    the same autocast (wrap it in ``torch.no_grad()``). Returns ``(total, terms)``: ``total`` a
    scalar tensor to minimise, ``terms`` a dict of what to log, every term unweighted and its
    weight (``{"ce": t, "kd": t, "w_ce": 1.0, "w_kd": 0.5}``). Term values may be 0-dim tensors
    (detached; preferred: no host sync, the loop calls ``.item()`` only every ``train.log_every``
    steps) or floats. Use the same keys on every step of an epoch and on every rank.
``unlabeled_loss(batch, epoch, keys=None)`` (optional)
    The loss of an unlabelled batch (``data.unlabeled``: every label ``IGNORE``, ``word_index >= 0``
    marks the owned words; ``keys`` one ``(text ordinal, window rank)`` per row). Only an objective
    with a teacher has it (:class:`nerkd.train.kd.DistillObjective`); the loop serves unlabelled
    batches only to such an objective, and logs its terms with a ``u_`` prefix.

:class:`BaseObjective` implements everything but ``loss``; subclass it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from nerkd.models.ner import NerModel


@runtime_checkable
class Objective(Protocol):
    model: NerModel
    forward_model: nn.Module

    def trainable_extras(self) -> list[nn.Module]: ...

    def to(self, device: torch.device) -> Objective: ...

    def loss(self, batch: dict[str, Tensor], epoch: int) -> tuple[Tensor, dict[str, Tensor | float]]: ...


def takes_unlabeled(objective: Objective) -> bool:
    """Whether the objective can learn from unlabelled batches (it has ``unlabeled_loss``)."""
    return callable(getattr(objective, "unlabeled_loss", None))


class BaseObjective:
    """Defaults for the :class:`Objective` contract: ``forward_model`` is the model, no extras."""

    def __init__(self, model: NerModel):
        self.model = model
        self.forward_model: nn.Module = model

    def trainable_extras(self) -> list[nn.Module]:
        return []

    def to(self, device: torch.device) -> BaseObjective:
        self.model.to(device)
        for extra in self.trainable_extras():
            extra.to(device)
        return self

    def loss(self, batch: dict[str, Tensor], epoch: int) -> tuple[Tensor, dict[str, Tensor | float]]:
        raise NotImplementedError


class CEObjective(BaseObjective):
    """Supervised fine-tuning: gold cross-entropy, or the CRF negative log-likelihood when the
    model has a CRF (the CRF is then trained jointly with the encoder)."""

    def loss(self, batch: dict[str, Tensor], epoch: int) -> tuple[Tensor, dict[str, Tensor | float]]:
        from nerkd.losses import ce_loss, crf_nll

        out = self.forward_model(batch["input_ids"], batch["attention_mask"])
        if self.model.crf is not None:
            total = crf_nll(self.model.crf, out.logits, batch["labels"])
            return total, {"crf_nll": total.detach()}
        total = ce_loss(out.logits, batch["labels"])
        return total, {"ce": total.detach()}
