"""Device and mixed-precision choices shared by training, inference and benchmarks."""

from __future__ import annotations

import contextlib

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(setting: str = "auto") -> torch.device:
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from nerkd.errors import SettingsError

            raise SettingsError("device is cuda but no CUDA GPU is visible")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def resolve_precision(setting: str, device: torch.device) -> str:
    """``auto``: bf16 where the GPU supports it, fp16 on older GPUs, fp32 on CPU."""
    if device.type != "cuda":
        return "fp32" if setting in ("auto", "fp16") else setting
    if setting == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return setting


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
