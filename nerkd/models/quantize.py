"""Dynamic int8 quantisation of a model's linear layers (CPU inference)."""

from __future__ import annotations

import warnings

import torch
from torch import nn


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantisation of every ``nn.Linear`` of ``model.encoder_model`` (CPU only).

    Uses ``torch.ao.quantization.quantize_dynamic`` (fbgemm/x86 int8 kernels). It still works on
    torch 2.13 but is deprecated in favour of torchao's ``quantize_``; its deprecation warnings
    are silenced here. Linear layers with no weights (a layer whose heads were all pruned) are
    left in fp32.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

        spec = {name: default_dynamic_qconfig for name, mod in model.encoder_model.named_modules()
                if isinstance(mod, nn.Linear) and mod.weight.numel() > 0}
        model.encoder_model = quantize_dynamic(model.encoder_model, spec, dtype=torch.qint8, inplace=True)
    return model
