"""Graph-level speed for ``nerkd export --format onnx``: eager attention for tracing, ONNX Runtime's fusions.

:func:`eager_attention` makes the encoder run transformers' *eager* attention while it is traced
(transformers' default, SDPA, traces into more small ops). On the 3-layer MiniLM student, 1 CPU thread,
``nerkd infer``'s own batches (``benchmarks/onnx_forward.py``, forward pass, medians of CPU time vs torch):
dynamo exporter (SDPA) 1.11x, TorchScript exporter with SDPA 1.21x, TorchScript with eager attention
1.25x. ``nerkd export`` traces inside it (with either exporter; the TorchScript one is the default).

:func:`fuse_graph` applies ONNX Runtime's own optimiser (``onnxruntime.transformers.optimizer``, model
type ``bert``): ``Attention`` (Q/K/V projection, scores, mask, softmax and context in one op),
``SkipLayerNormalization``, ``BiasGelu``, ``EmbedLayerNormalization``. Its pattern matcher only knows
the eager attention traced by the TorchScript exporter (a dynamo graph, or SDPA traced, keeps its
attention unfused). Measured on the same student it is *not* faster than the unfused TorchScript graph
(1.14-1.16x vs 1.25x at 1 thread; also slower at 2 threads): it is here to measure on other machines
and models, not on by default.

Pruned models (unequal heads per layer): the attention reshapes with ``-1`` heads, so the optimiser
cannot read a layer's head count and writes the one it is given into every ``Attention`` node (ORT
then refuses the graph, or splits the heads wrongly). :func:`fuse_graph` sets each node's
``num_heads`` from its own Q/K/V weight (its width over the head size, which pruning keeps); a layer
without heads has no attention pattern and stays as it was. The fused graph needs right padding (ones
then zeros in ``attention_mask``), as nerkd's batches and Hugging Face tokenizers pad.

The caller checks the written graph's logits against torch as for any export, and keeps the unfused
graph when fusion fails (:class:`Fusion` says why).
"""

from __future__ import annotations

import contextlib
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
             "BiasGelu", "FastGelu", "Gelu")
BERT_LIKE = ("bert", "roberta", "camembert", "xlm-roberta")   # ORT's "bert" fusions apply to these


@dataclass
class Fusion:
    """What :func:`fuse_graph` did: the fused op counts of the written graph, or why it kept the input."""

    fused: dict[str, int] = field(default_factory=dict)   # op type -> nodes in the written graph
    heads: list[int] = field(default_factory=list)         # num_heads of each fused Attention node
    reason: str | None = None                              # None: fused; else why the graph is unchanged

    @property
    def ok(self) -> bool:
        return self.reason is None

    def summary(self) -> str:
        if not self.ok:
            return f"not fused ({self.reason})"
        return "fused: " + ", ".join(f"{n} {op}" for op, n in sorted(self.fused.items()))


@contextlib.contextmanager
def eager_attention(encoder_model: nn.Module) -> Iterator[None]:
    """The encoder runs transformers' *eager* attention inside (the pattern ORT fuses), its own after."""
    config = encoder_model.config
    before = getattr(config, "_attn_implementation", None)
    setter = getattr(encoder_model, "set_attn_implementation", None)
    if before in (None, "eager") or setter is None:
        yield
        return
    setter("eager")
    try:
        yield
    finally:
        setter(before)


def fused_ops(path: str | Path) -> dict[str, int]:
    """How many nodes of each fused op type (:data:`FUSED_OPS`) the graph at ``path`` holds."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    counts = Counter(node.op_type for node in graph.node)
    return {op: counts[op] for op in FUSED_OPS if counts[op]}


def fuse_graph(src: str | Path, dst: str | Path, *, model_type: str, hidden_size: int, num_heads: int) -> Fusion:
    """ORT's transformer fusions on ``src`` written to ``dst`` (see module doc); ``src`` copied
    unchanged to ``dst`` when the model type is not BERT-like or no attention was fused."""
    src, dst = Path(src), Path(dst)
    if model_type not in BERT_LIKE:
        return _keep(src, dst, f"model type {model_type!r}: ORT's fusions are for {', '.join(BERT_LIKE)}")
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        with _quiet():
            optimized = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                                       opt_level=0)
    except Exception as e:  # noqa: BLE001 - the optimiser raises many types; the unfused graph stays valid
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        return _keep(src, dst, f"onnxruntime's optimizer failed: {first}")
    heads = _set_heads(optimized.model.graph, hidden_size // num_heads)
    counts = Counter(node.op_type for node in optimized.model.graph.node)
    if not counts["Attention"]:
        return _keep(src, dst, "no attention subgraph matched (export with eager attention and the torchscript "
                               "exporter)")
    optimized.save_model_to_file(str(dst))
    fused = {op: counts[op] for op in FUSED_OPS if counts[op]}
    return Fusion(fused, heads)


def _set_heads(graph, head_size: int) -> list[int]:
    """Each ``Attention`` node's ``num_heads`` from its Q/K/V weight ``[in, 3 * heads * head_size]``."""
    from onnx import helper

    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    heads = []
    for node in graph.node:
        if node.op_type != "Attention":
            continue
        sizes = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "qkv_hidden_sizes"), None)
        width = int(sizes[0]) if sizes else shapes[node.input[1]][1] // 3
        n = width // head_size
        for attr in node.attribute:
            if attr.name == "num_heads":
                attr.i = n
        heads.append(n)
    return heads


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The optimiser's logs (top-level loggers such as ``fusion_attention``), warnings and prints
    stay off the console (engine code never prints)."""
    import io
    import logging
    import warnings

    root, sink = logging.getLogger(), logging.NullHandler()   # no stderr "last resort" handler either
    disabled = logging.root.manager.disable
    root.addHandler(sink)
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)
        root.removeHandler(sink)


def _keep(src: Path, dst: Path, reason: str) -> Fusion:
    if src != dst:
        shutil.copyfile(src, dst)
    return Fusion(reason=reason)
