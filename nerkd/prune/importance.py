"""Attention-head importance (Michel, Levy & Neubig, 2019, "Are Sixteen Heads Really Better than One?").

Each layer's heads are gated by a vector of ones ``xi`` that multiplies every head's slice of the
attention output, just before the output projection (a forward pre-hook on
``attention.output.dense``: input ``[B, T, H*d]`` viewed as ``[B, T, H, d]`` times ``xi [H]``).
The importance of head ``h`` is ``|dL/d xi_h|``, which equals ``|sum of grad x activation|`` over
that head's output, accumulated over the data:

    I_h = sum over windows x of | d L(x) / d xi_h |

The gate carries one row per window (``[B, H]``), so each window's gradient is taken on its own
before the absolute value (the paper's expectation over examples, independent of batch size);
``L(x)`` is the window's gold loss (token cross-entropy, or CRF NLL with a CRF), from
:mod:`nerkd.losses` when it exists. With ``normalize`` each layer's scores are divided by their
L2 norm (``I / ||I_layer||_2``, as in the paper's reference code) so layers compare fairly.

The same gates set to 0/1 mask heads (used to check that physical removal == masking).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nerkd.data.schemes import IGNORE
from nerkd.errors import TrainingError
from nerkd.models.heads import encoder_layers


class HeadGates:
    """Multiply each head's output by a gate, via pre-hooks on the attention output projections.

    ``values[i]`` is ``None`` (no-op), a ``[H_i]`` tensor (same gate for every row) or ``[B, H_i]``
    (one gate per row). Use as a context manager: hooks are removed on exit.
    """

    def __init__(self, model: nn.Module):
        self.layers = encoder_layers(model)
        self.counts = [la.num_heads for la in self.layers]
        self.values: list[torch.Tensor | None] = [None] * len(self.layers)
        self._handles: list = []

    def __enter__(self) -> HeadGates:
        for i, la in enumerate(self.layers):
            if self.counts[i] > 0:
                self._handles.append(la.out_proj.register_forward_pre_hook(self._hook(i)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, i: int):
        n = self.counts[i]

        def hook(module, args):
            gate = self.values[i]
            if gate is None:
                return None
            x = args[0]                                   # [B, T, H*d]
            heads = x.reshape(*x.shape[:-1], n, x.shape[-1] // n)
            g = gate.to(x.dtype)
            g = g.view(n, 1) if g.dim() == 1 else g.view(g.shape[0], *([1] * (x.dim() - 2)), n, 1)
            return (heads * g).reshape(x.shape), *args[1:]

        return hook

    def ones(self, rows: int, device, requires_grad: bool = True) -> list[torch.Tensor | None]:
        """Fresh per-row gates of ones (the leaves whose gradients are the head importances)."""
        self.values = [torch.ones(rows, n, device=device, requires_grad=requires_grad) if n else None
                       for n in self.counts]
        return self.values

    def mask(self, removed: Iterable[tuple[int, int]], device=None) -> None:
        """Gates of 1 everywhere except 0 at ``(layer, head)`` pairs (current head indices)."""
        values = [torch.ones(n, device=device) if n else None for n in self.counts]
        for layer, head in removed:
            values[layer][head] = 0.0
        self.values = values


def _losses_module():
    try:
        from nerkd import losses
    except ImportError:
        return None
    return losses


def loss_name(model) -> str:
    losses = _losses_module()
    if getattr(model, "crf", None) is not None:
        return "crf nll (nerkd.losses)" if hasattr(losses, "crf_nll") else "crf nll (built-in)"
    return "ce (nerkd.losses)" if hasattr(losses, "ce_loss") else "ce (F.cross_entropy)"


def _crf_nll_row(crf, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CRF NLL of one row: logits [1,T,L], labels [1,T] -> scalar, over the labelled positions."""
    keep = labels[0] != IGNORE
    emissions = logits[0][keep].unsqueeze(0)
    tags = labels[0][keep].unsqueeze(0)
    return -crf(emissions.float(), tags, reduction="sum")


def row_losses(model, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Gold loss of each row: logits [B,T,L], labels [B,T] (-100 ignored) -> [B].

    A row with no labelled position gets 0 (it adds nothing to the importance).
    """
    losses = _losses_module()
    crf = getattr(model, "crf", None)
    out = []
    for b in range(logits.shape[0]):
        lg, lb = logits[b : b + 1], labels[b : b + 1]
        if not bool((lb != IGNORE).any()):
            out.append(lg.sum() * 0.0)
        elif crf is not None:
            fn = getattr(losses, "crf_nll", None)
            out.append(fn(crf, lg, lb) if fn else _crf_nll_row(crf, lg, lb))
        else:
            fn = getattr(losses, "ce_loss", None)
            out.append(fn(lg, lb) if fn else F.cross_entropy(lg.reshape(-1, lg.shape[-1]).float(),
                                                            lb.reshape(-1), ignore_index=IGNORE))
    return torch.stack(out)


@dataclass
class Importance:
    raw: list[list[float]]     # per layer, per current head: summed |dL/d gate|
    windows: int               # windows that carried at least one label
    tokens: int                # labelled positions seen
    loss: float                # summed gold loss of those windows (for the record)

    def normalized(self) -> list[list[float]]:
        return normalize(self.raw)


def normalize(raw: list[list[float]]) -> list[list[float]]:
    """Per-layer L2 normalisation: ``I / ||I_layer||_2`` (a zero layer stays zero)."""
    out = []
    for layer in raw:
        norm = math.sqrt(sum(v * v for v in layer))
        out.append([v / (norm + 1e-20) for v in layer])
    return out


def compute_importance(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], *,
                       device: torch.device | str = "cpu",
                       on_batch: Callable[[int], None] | None = None) -> Importance:
    """Michel et al. head importance over ``batches`` (collate() dicts with gold ``labels``).

    The model is left as it was (eval mode during the pass; parameters' ``requires_grad``
    restored; hooks removed). Only the gates need gradients, so parameter gradients are skipped.
    """
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    gates = HeadGates(model)
    acc = [torch.zeros(n, dtype=torch.float64) for n in gates.counts]
    windows = tokens = 0
    total_loss = 0.0
    try:
        with gates, torch.enable_grad():
            for batch in batches:
                ids = batch["input_ids"].to(device)
                mask = batch["attention_mask"].to(device)
                labels = batch["labels"].to(device)
                values = gates.ones(ids.shape[0], device)
                logits = model(ids, mask).logits
                losses = row_losses(model, logits, labels)
                loss = losses.sum()
                if not torch.isfinite(loss):
                    raise TrainingError(f"head importance: non-finite loss ({loss.item()}) on a batch")
                live = [(i, g) for i, g in enumerate(values) if g is not None]
                if live and loss.requires_grad:
                    grads = torch.autograd.grad(loss, [g for _, g in live], allow_unused=True)
                    for (i, _), grad in zip(live, grads, strict=True):
                        if grad is not None:
                            acc[i] += grad.detach().abs().sum(0).double().cpu()
                labelled = (labels != IGNORE)
                windows += int(labelled.any(1).sum())
                tokens += int(labelled.sum())
                total_loss += float(loss.detach())
                if on_batch is not None:
                    on_batch(int(ids.shape[0]))
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)
    return Importance([a.tolist() for a in acc], windows, tokens, total_loss)


@torch.no_grad()
def masked_logits(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  removed: Iterable[tuple[int, int]]) -> torch.Tensor:
    """Logits with heads ``(layer, current head)`` zeroed by the gates (the model is not changed)."""
    gates = HeadGates(model)
    with gates:
        gates.mask(removed, device=input_ids.device)
        return model(input_ids, attention_mask).logits
