"""Optimiser, learning-rate schedule and mixed-precision plan of the training loop."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from nerkd.device import resolve_precision


def param_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices (linear weights, embeddings, CRF transitions); none on
    biases, LayerNorm weights and other vectors. Shared parameters are counted once."""
    decay, no_decay, seen = [], [], set()
    for module in modules:
        for p in module.parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(modules: Iterable[nn.Module], lr: float, weight_decay: float,
                    device: torch.device) -> torch.optim.AdamW:
    """AdamW, fused on CUDA (one kernel for all parameters)."""
    fused = device.type == "cuda"
    return torch.optim.AdamW(param_groups(modules, weight_decay), lr=lr, betas=(0.9, 0.999), eps=1e-8,
                             fused=fused or None)


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    return int(math.ceil(total_steps * warmup_ratio))


def lr_factor(step: int, total_steps: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total_steps``.

    ``step`` is the number of optimiser steps already taken (the factor applies to the next one).
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup))


def build_scheduler(optimizer, total_steps: int, warmup_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = warmup_steps(total_steps, warmup_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, warmup))


def precision_plan(setting: str, device: torch.device) -> tuple[str, bool]:
    """``(precision, use_grad_scaler)``: bf16 autocast where the GPU supports it, fp16 autocast with a
    GradScaler otherwise (the scaler only ever for fp16: bf16 has fp32's range), fp32 on CPU."""
    precision = resolve_precision(setting, device)
    return precision, precision == "fp16"


def grad_scaler(use: bool, device: torch.device):
    return torch.amp.GradScaler(device.type) if use else None


def pad_multiple(device: torch.device, compiled: bool) -> int | None:
    """Pad batch widths to a multiple of 16 under torch.compile (few distinct shapes, fewer
    recompilations) or 8 on CUDA (tensor-core friendly); no padding on CPU."""
    if compiled:
        return 16
    return 8 if device.type == "cuda" else None


def optimizer_step(optimizer, scaler, params, clip_grad: float) -> None:
    """Unscale (fp16 only), clip, step, update the scaler and zero the gradients."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(params, clip_grad)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
