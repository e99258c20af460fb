"""Device and mixed-precision choices shared by training, inference and benchmarks."""

from __future__ import annotations

import contextlib
import os

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


_cpu_threads_why: str | None = None   # why training on the CPU runs with its thread count (for describe)


def default_cpu_threads() -> str:
    """Training on the CPU: torch's threads = the free physical cores (:func:`nerkd.threads.set_threads`),
    unless ``OMP_NUM_THREADS`` is set (by the user, or by torchrun for several ranks): that count is kept.
    Returns (and remembers, for :func:`describe`) why."""
    global _cpu_threads_why
    if os.environ.get("OMP_NUM_THREADS"):
        _cpu_threads_why = "OMP_NUM_THREADS"
    else:
        from nerkd.threads import set_threads

        _cpu_threads_why = set_threads(None)[1]
    return _cpu_threads_why


def work_device(setting: str = "auto") -> torch.device:
    """:func:`resolve_device`, and on the CPU torch's threads set as training sets them
    (:func:`default_cpu_threads`, said by :func:`describe`): what training, head scoring and
    ``validate`` run on."""
    device = resolve_device(setting)
    if device.type == "cpu":
        default_cpu_threads()
    return device


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index} ({torch.cuda.get_device_name(device)})"
    from nerkd.threads import describe_threads

    return f"cpu ({describe_threads(torch.get_num_threads(), _cpu_threads_why or 'torch default')})"
