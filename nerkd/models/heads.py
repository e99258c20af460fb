"""Per-layer attention heads of BERT-family encoders (BERT, RoBERTa, CamemBERT, XLM-R).

transformers 5.x dropped ``prune_heads``/``head_mask``; these attention modules reshape with
``-1`` heads, so slicing query/key/value rows and the output-projection columns is enough to
remove heads physically. A model whose layers keep different head counts needs nerkd's loader
(:func:`apply_head_layout` before loading weights) since the config holds one head count.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LayerAttention:
    index: int
    layer: nn.Module       # the transformer layer
    attention: nn.Module   # holds .self (query/key/value) and .output (dense)

    @property
    def self_attn(self) -> nn.Module:
        return self.attention.self

    @property
    def out_proj(self) -> nn.Linear:
        return self.attention.output.dense

    @property
    def head_size(self) -> int:
        return self.self_attn.attention_head_size

    @property
    def num_heads(self) -> int:
        return self.self_attn.num_attention_heads


def encoder_layers(model: nn.Module) -> list[LayerAttention]:
    """The attention of every layer of a BERT-family model (a NerModel, a HF model, or a base)."""
    hf = getattr(model, "encoder_model", model)
    base = getattr(hf, "base_model", hf)
    encoder = getattr(base, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None:
        raise TypeError(f"{type(hf).__name__}: not a BERT-family encoder (no encoder.layer)")
    out = []
    for i, layer in enumerate(layers):
        att = getattr(layer, "attention", None)
        ok = att is not None and (isinstance(getattr(att, "self", None), EmptySelfAttention)
                                  or hasattr(getattr(att, "self", None), "query"))
        if not ok:
            raise TypeError(f"layer {i} of {type(hf).__name__} has no BERT-style self-attention")
        out.append(LayerAttention(i, layer, att))
    return out


class EmptySelfAttention(nn.Module):
    """Self-attention with every head removed: contributes nothing but the output bias."""

    def __init__(self, head_size: int):
        super().__init__()
        self.num_attention_heads = 0
        self.attention_head_size = head_size
        self.all_head_size = 0

    def forward(self, hidden_states, attention_mask=None, **kwargs):
        return hidden_states.new_zeros(*hidden_states.shape[:-1], 0), None


class EmptyOutput(nn.Module):
    """Output projection of a layer with no head left: adds its bias only.

    Same state-dict keys as the ``nn.Linear`` it replaces (``weight [hidden, 0]``, ``bias
    [hidden]``), but the empty ``weight`` is a buffer, not a parameter: every parameter of the
    model then gets a gradient, so DDP needs no list of parameters to ignore. Not an ``nn.Linear``,
    so int8 dynamic quantisation (which cannot handle a zero-width matrix) leaves it alone.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = 0, linear.out_features
        self.register_buffer("weight", linear.weight.detach()[:, :0].clone())
        source = linear.bias if linear.bias is not None else linear.weight.new_zeros(self.out_features)
        self.bias = nn.Parameter(source.detach().clone(), requires_grad=linear.weight.requires_grad)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.bias.to(hidden_states.dtype).expand(*hidden_states.shape[:-1], self.out_features)


def _slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    weight = linear.weight.index_select(dim, index).clone().detach()
    bias = linear.bias
    if bias is not None and dim == 0:
        bias = bias.index_select(0, index)
    with warnings.catch_warnings():  # zero-element init warns when a layer loses all heads
        warnings.simplefilter("ignore", UserWarning)
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                        device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias.detach())
    new.weight.requires_grad_(linear.weight.requires_grad)
    if bias is not None:
        new.bias.requires_grad_(linear.bias.requires_grad)
    new.train(linear.training)
    return new


def keep_heads(la: LayerAttention, keep: list[int]) -> None:
    """Keep only heads ``keep`` (indices into the layer's current heads), slicing weights."""
    sa, d = la.self_attn, la.head_size
    keep = sorted(set(keep))
    if any(h < 0 or h >= la.num_heads for h in keep):
        raise ValueError(f"layer {la.index}: head index out of range 0..{la.num_heads - 1}: {keep}")
    rows = torch.tensor([h * d + j for h in keep for j in range(d)], dtype=torch.long,
                        device=la.out_proj.weight.device)
    if not keep:
        la.attention.output.dense = EmptyOutput(la.out_proj).train(la.out_proj.training)
        la.attention.self = EmptySelfAttention(d).train(sa.training)
        return
    la.attention.output.dense = _slice_linear(la.out_proj, rows, dim=1)
    for name in ("query", "key", "value"):
        setattr(sa, name, _slice_linear(getattr(sa, name), rows, dim=0))
    sa.num_attention_heads = len(keep)
    sa.all_head_size = len(keep) * d


def apply_head_layout(model: nn.Module, heads_per_layer: list[int]) -> None:
    """Reshape (values unset) every layer to ``heads_per_layer[i]`` heads, before loading weights."""
    layers = encoder_layers(model)
    if len(heads_per_layer) != len(layers):
        raise ValueError(f"head layout has {len(heads_per_layer)} layers, model has {len(layers)}")
    for la, n in zip(layers, heads_per_layer, strict=True):
        if n != la.num_heads:
            keep_heads(la, list(range(n)))


def head_counts(model: nn.Module) -> list[int]:
    return [la.num_heads for la in encoder_layers(model)]
