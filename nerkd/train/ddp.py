"""Multi-GPU (and multi-process CPU) training with ``torchrun`` + DistributedDataParallel.

Launch any training command under ``torchrun``; nothing else changes::

    torchrun --nproc_per_node 4 -m nerkd finetune --model artifacts/pruned
    torchrun --nproc_per_node 4 -m nerkd distill --config configs/kd_camembert.yaml

How it works (see :func:`nerkd.train.loop.train`):

* :func:`detect` reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (set by torchrun); with
  ``WORLD_SIZE`` 1 or unset everything below is a no-op. :func:`setup` starts the process group
  (``nccl`` on CUDA, ``gloo`` on CPU) and pins each rank to ``cuda:LOCAL_RANK``.
* ``train.batch_size`` stays the *global* batch: every rank builds the same length-bucketed
  batches from the same seed and keeps rows ``rank::world_size`` of each (:func:`shard`), so
  results do not depend on the number of GPUs (up to how each rank averages its own rows). A
  batch with fewer rows than ranks lends a duplicated row to the ranks left empty; those rows
  are counted and logged.
* The encoder (what the forward pass runs) is wrapped in DDP, which averages its gradients
  during backward (skipped with ``no_sync`` on accumulation micro-steps). Parameters used
  outside the forward (the CRF, an objective's projections) get an explicit all-reduce at each
  optimiser step (:func:`sync_grads`); they are broadcast from rank 0 at the start.
* Rank 0 alone evaluates on dev, writes files and logs; the dev F1 is broadcast so that every
  rank takes the same early-stopping decision.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from nerkd.device import work_device
from nerkd.errors import TrainingError
from nerkd.models.ner import NerOutput


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect() -> DistEnv:
    """The torchrun environment (single process when ``WORLD_SIZE`` is unset or 1)."""

    def number(name: str, default: int) -> int:
        raw = os.environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise TrainingError(f"environment variable {name}={raw!r} is not an integer") from None

    world = number("WORLD_SIZE", 1)
    if world <= 1:
        return DistEnv()
    if "RANK" not in os.environ:
        raise TrainingError(f"WORLD_SIZE={world} but RANK is not set: launch with torchrun")
    rank = number("RANK", 0)
    local = number("LOCAL_RANK", rank)
    if not 0 <= rank < world:
        raise TrainingError(f"RANK={rank} outside 0..{world - 1}")
    return DistEnv(rank, world, local)


def setup(env: DistEnv, device_setting: str) -> tuple[torch.device, bool]:
    """Pick this rank's device and start the process group; returns ``(device, started_here)``."""
    if not env.enabled:
        return work_device(device_setting), False
    if device_setting != "cpu" and torch.cuda.is_available():
        torch.cuda.set_device(env.local_rank)
    device = work_device(device_setting)
    if dist.is_initialized():
        return device, False
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend, rank=env.rank, world_size=env.world_size, **kwargs)
    return device, True


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard(batches: Sequence[list[int]], env: DistEnv) -> tuple[list[list[int]], int]:
    """This rank's rows of every global batch, and how many rows were duplicated (all ranks)."""
    if not env.enabled:
        return [list(b) for b in batches], 0
    out, duplicated = [], 0
    for b in batches:
        part = list(b[env.rank :: env.world_size])
        if not part:
            part = [b[env.rank % len(b)]]
        duplicated += max(0, env.world_size - len(b))
        out.append(part)
    return out, duplicated


class NerForward(nn.Module):
    """``NerModel.forward`` over a (DDP- and/or compile-) wrapped encoder."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                output_hidden_states: bool = False) -> NerOutput:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                           output_hidden_states=output_hidden_states)
        return NerOutput(out.logits, out.hidden_states if output_hidden_states else None)


def forward_wrapper(model: nn.Module, env: DistEnv, device: torch.device,
                    compile_model: bool = False) -> tuple[nn.Module, nn.Module | None]:
    """``(forward_model, ddp_module)``: what the objective calls for the student forward, and the
    DDP wrapper (for ``no_sync``), or the model itself and None in a single process."""
    if not env.enabled:
        return (torch.compile(model) if compile_model else model), None
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    encoder = model.encoder_model
    # every parameter gets a gradient at each step (a layer whose heads were all pruned keeps its
    # empty output weight as a buffer: nerkd.models.heads.EmptyOutput), so DDP ignores none
    # buffers (position ids) are constants: no need to re-broadcast them at every forward
    params = inspect.signature(DDP.__init__).parameters
    sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    ddp = DDP(encoder, device_ids=ids, **sync)
    forward = NerForward(ddp)
    return (torch.compile(forward) if compile_model else forward), ddp


def outside_params(model: nn.Module, extras: Iterable[nn.Module], env: DistEnv) -> list[nn.Parameter]:
    """Trainable parameters DDP does not cover: the CRF and the objective's extras."""
    if not env.enabled:
        return []
    params = list(model.crf.parameters()) if getattr(model, "crf", None) is not None else []
    for extra in extras:
        params += list(extra.parameters())
    return [p for p in params if p.requires_grad]


def broadcast_params(params: Sequence[torch.Tensor], env: DistEnv) -> None:
    if env.enabled:
        with torch.no_grad():
            for p in params:
                dist.broadcast(p.data, 0)


def sync_grads(params: Sequence[nn.Parameter], env: DistEnv) -> None:
    """Average the gradients of ``params`` over ranks, in one all-reduce and without host sync.

    A parameter without a gradient (e.g. projections whose loss weight is 0 this epoch) keeps
    ``grad=None`` so AdamW skips it, as in a single process. Every rank runs the same objective on
    the same parameters, so every rank has the same set of gradients.
    """
    if not env.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= env.world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def no_sync(ddp: nn.Module | None, skip: bool):
    """DDP's ``no_sync`` on accumulation micro-steps (no gradient all-reduce), else a no-op."""
    return ddp.no_sync() if (ddp is not None and skip) else contextlib.nullcontext()


def all_reduce(tensor: torch.Tensor, env: DistEnv, op: str = "sum") -> torch.Tensor:
    if env.enabled:
        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN,
                                    "max": dist.ReduceOp.MAX}[op])
    return tensor


def broadcast_object(obj, env: DistEnv):
    """Rank 0's ``obj`` on every rank."""
    if not env.enabled:
        return obj
    box = [obj if env.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj, env: DistEnv) -> list:
    """Every rank's ``obj``, in rank order (on every rank)."""
    if not env.enabled:
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out
