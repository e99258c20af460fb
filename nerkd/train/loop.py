"""The one training engine, shared by ``distill``, ``finetune`` and the teacher (read it top to bottom).

:func:`train` opens the run folder, builds the fixed :class:`TrainSetup` (:func:`set_up`: model on
the device, DDP wrapper, optimiser, schedule, precision, every epoch's batches), starts or resumes a
:class:`TrainState` (:func:`resume_state`: where the run stands, what a checkpoint holds) and a
:class:`Meter` (running loss sums, tokens, the first non-finite step), then runs epochs until the
plan is done (:func:`run_epochs`). Only the state and the meter change as the run goes.

Each epoch (:func:`train_epoch`, one optimiser step per turn of its loop, top to bottom):
length-bucketed batches shuffled from ``train.seed + epoch`` (:func:`epoch_batches`); for each of
the step's ``train.grad_accum`` micro-batches, the objective's loss under autocast and backward
(scaled by a GradScaler for fp16 only; :func:`forward_backward`); then the optimiser step (gradient
clipping, AdamW, linear warm-up then decay). Losses stay on the device; the host only reads them
every ``train.log_every`` steps (progress bar and a line of ``metrics.jsonl``). After each epoch
(:func:`end_epoch`): dev evaluation (entity F1), the best model saved at the run folder root, the
resumable state saved in ``checkpoints/last`` (also every ``train.checkpoint_every`` steps), early
stopping after ``train.patience`` epochs without gain. Rank 0 alone evaluates, logs and writes.

A non-finite loss stops the run with :class:`~nerkd.errors.TrainingError` before anything else is
written, so the last good checkpoint survives. Resuming (``resume=True``) restores model,
optimiser, scheduler, scaler, RNG states and the position in the epoch: on CPU an interrupted
and resumed run ends with the same weights as an uninterrupted one. It is refused when the run's
plan or :func:`~nerkd.train.checkpoint.fingerprint` (settings that change training, data hashes,
the engine's ``fingerprint`` extras: models, distillation settings) differs from the checkpoint's.
A run without ``resume`` first removes any previous checkpoint and summary from ``out_dir``.

With an unlabelled transfer set (``unlabeled``, a :class:`~nerkd.train.transfer.TransferSet` built
from ``data.unlabeled``), each epoch also serves unlabelled batches, spread evenly among the gold
ones (:func:`~nerkd.train.transfer.interleave`); the objective's ``unlabeled_loss`` trains on them
and ``metrics.jsonl`` logs their terms apart (``u_loss``, ``u_kd``, ``u_hidden``). Their texts, and
so the epoch, depend only on the settings, the file and the epoch: resume stays exact; the
sampler's state is saved in ``state.json`` and checked on resume (same file, cap and seed).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor, nn

from nerkd import rundir
from nerkd.data.encode import Window, bucket_batches, collate
from nerkd.device import autocast, describe
from nerkd.errors import TrainingError
from nerkd.io import write_json
from nerkd.log import Progress, progress, say
from nerkd.settings import DataSettings, Settings, TrainSettings
from nerkd.train import checkpoint, ddp
from nerkd.train.logs import Accumulator, MetricsLog
from nerkd.train.objective import Objective, takes_unlabeled
from nerkd.train.optim import (
    build_optimizer,
    build_scheduler,
    grad_scaler,
    optimizer_step,
    pad_multiple,
    precision_plan,
)
from nerkd.train.transfer import TransferSet, build_cache, interleave

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from nerkd.data.dataset import Split
    from nerkd.data.labels import LabelSpace
    from nerkd.models.ner import NerModel


@dataclass
class DevSet:
    windows: list[Window]
    gold_tags: list[list[str]]
    n_words: list[int]

    @classmethod
    def from_split(cls, split: Split, space: LabelSpace | None = None) -> DevSet:
        """From an encoded :class:`nerkd.data.dataset.Split` (gold tags in ``space``'s scheme if given)."""
        gold = split.gold_tags
        if space is not None:
            from nerkd.data.dataset import tag_ids

            gold = [[space.labels[i] for i in ids] for ids in tag_ids(split, space)]
        return cls(split.windows, gold, [len(s.tokens) for s in split.sentences])


@dataclass
class TrainResult:
    out_dir: Path
    best_f1: float | None        # None without a dev set
    best_epoch: int | None
    epochs_run: int
    steps: int
    stopped_early: bool
    stop_reason: str             # completed | early_stopping | max_steps
    dev: dict | None             # nerkd.metrics.evaluate() of the best epoch
    history: list[dict]
    stage: str = "distill"       # distill | finetune | teacher


# -- the state a checkpoint carries -------------------------------------------------------------
OPTIONAL_STATE = ("fingerprint", "unlabeled")   # keys an older state.json may lack (None then)


@dataclass
class TrainState:
    """Where a run stands: the live position while training, and what ``checkpoints/last/state.json``
    holds (one key per field; :func:`~nerkd.train.checkpoint.save_last` adds the host RNG states)."""

    plan: dict[str, Any]                   # what the run is (:func:`run_plan`): resume refuses another
    fingerprint: dict[str, Any] | None     # checkpoint.fingerprint(); None in checkpoints that predate it
    world_size: int                        # ranks of the run that saved it (RNG restored only for the same count)
    epoch: int = 1                         # the epoch being (or next to be) trained, 1-based ...
    pos: int = 0                           # ... and the next batch of it
    step: int = 0                          # optimiser steps taken
    best_f1: float | None = None
    best_epoch: int | None = None
    best_dev: dict | None = None           # nerkd.metrics.evaluate() of the best epoch
    bad_epochs: int = 0                    # epochs since the best one (early stopping)
    history: list[dict] = field(default_factory=list)   # one record per finished epoch
    stopped_early: bool = False
    stop_reason: str = "completed"         # completed | early_stopping | max_steps
    finished: bool = False
    metrics_bytes: int = 0                 # metrics.jsonl's size when saved (resume cuts what came after)
    window: dict | None = None             # Accumulator.state() of the log window when saved ...
    epoch_sums: dict | None = None         # ... and of the epoch so far
    unlabeled: dict | None = None          # the unlabelled sampler's state at the start of ``epoch`` (or None)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: Path) -> TrainState:
        """A saved state; one line naming the keys an older or foreign ``state.json`` lacks."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [k for k in names if k not in data and k not in OPTIONAL_STATE]
        if missing:
            raise TrainingError(f"{where}: cannot resume from this checkpoint: its state.json lacks "
                                f"{', '.join(missing)} (written by another nerkd version); start a new run "
                                "without --resume")
        return cls(**{k: data.get(k) for k in names})


# -- what a run trains with ---------------------------------------------------------------------
class EpochPlan(NamedTuple):
    """One epoch on this rank: every rank cuts the same global batches and keeps its rows."""

    batches: list[list[int]]   # this rank's window indices, per global batch
    tokens: list[int]          # real (unpadded) tokens of each global batch
    duplicated: int            # rows lent to ranks that a small batch left empty (all ranks)
    unlabeled: list[list[int]] = []   # the same for the epoch's unlabelled windows (TransferSet.windows)
    u_tokens: list[int] = []

    def order(self) -> list[tuple[str, int]]:
        """The epoch's batches in training order: ``(kind, index)``, unlabelled ones spread evenly."""
        return interleave(len(self.batches), len(self.unlabeled))

    def steps(self, accum: int) -> int:
        return -(-(len(self.batches) + len(self.unlabeled)) // accum)


class Batch(NamedTuple):
    """One micro-batch as the epoch serves it (:func:`epoch_batches`)."""

    pos: int                   # index in the epoch (checkpoint position, accumulation groups)
    tensors: dict[str, Tensor]  # collate()'s dict, on the device
    tokens: int                # real tokens of the global batch (throughput)
    kind: str = "gold"         # which source it came from: gold | unlabeled
    keys: list | None = None   # unlabelled rows: (text ordinal, window rank), the teacher cache's keys


@dataclass(frozen=True)
class TrainSetup:
    """Everything one run trains with, built once by :func:`set_up` and not changed after (the objects
    it holds have their own state: the model's weights, the optimiser's moments, the log file). Where
    the run stands is a :class:`TrainState`, its running sums a :class:`Meter`."""

    objective: Objective
    tokenizer: PreTrainedTokenizerBase
    windows: Sequence[Window]
    dev: DevSet | None
    cfg: TrainSettings
    max_tokens: int | None     # data.max_tokens_per_batch
    out_dir: Path
    stage: str
    epochs: int                # effective (finetune has its own)
    lr: float
    env: ddp.DistEnv
    device: torch.device
    precision: str             # fp32 | bf16 | fp16 (autocast)
    model: NerModel            # the real module (saved, evaluated); the objective may call a wrapper
    extras: list[nn.Module]    # the objective's trainable extras
    ddp_module: nn.Module | None
    outside: list[nn.Parameter]  # trainable parameters DDP does not cover (CRF, extras): all-reduced by hand
    params: list[nn.Parameter]   # every trainable parameter (gradient clipping)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None   # fp16 only
    pad_to: int | None
    plans: list[EpochPlan]     # one per epoch
    total_steps: int
    metrics: MetricsLog        # metrics.jsonl (rank 0 writes)
    transfer: TransferSet | None = None   # the unlabelled set (data.unlabeled), if the run uses one

    @property
    def main(self) -> bool:
        return self.env.is_main

    def release(self) -> None:
        """Drop the DDP wrapper, which must go before its process group (the one change after set-up:
        frames of an exception on its way up still hold this object)."""
        object.__setattr__(self, "ddp_module", None)


@dataclass
class Meter:
    """What changes at every micro-batch besides the :class:`TrainState`'s position: the loss sums
    (on the device: the host reads them at log lines only), the tokens and time since the last log
    line, and the first step whose loss was not finite."""

    window: Accumulator        # loss sums since the last log line
    epoch_sums: Accumulator    # loss sums of the epoch so far
    bad_step: Tensor           # first step with a non-finite loss (-1: none), kept on the device
    tokens: int = 0            # tokens trained since the last log line ...
    clock: float = 0.0         # ... and when that line was written

    @classmethod
    def on(cls, device: torch.device) -> Meter:
        return cls(Accumulator(device), Accumulator(device), torch.full((), -1, dtype=torch.long, device=device))

    def add(self, loss: Tensor, terms: dict[str, Tensor], batch: Batch, step: int) -> None:
        """One micro-batch of optimiser step ``step + 1`` (nothing is read from the device)."""
        self.bad_step = torch.where(torch.isfinite(loss) | (self.bad_step >= 0), self.bad_step, step + 1)
        prefix = "u_" if batch.kind == "unlabeled" else ""
        self.window.add(loss, terms, prefix)
        self.epoch_sums.add(loss, terms, prefix)
        self.tokens += batch.tokens


def epoch_plan(lengths: Sequence[int], cfg: TrainSettings, max_tokens: int | None, epoch: int,
               env: ddp.DistEnv, u_lengths: Sequence[int] = ()) -> EpochPlan:
    """This rank's batches for ``epoch`` (see :class:`EpochPlan`); ``u_lengths``: the epoch's
    unlabelled windows, batched the same way from their own seed."""
    batches = bucket_batches(lengths, cfg.batch_size, max_tokens, shuffle=True, seed=cfg.seed + epoch)
    mine, duplicated = ddp.shard(batches, env)
    u_batches = bucket_batches(u_lengths, cfg.batch_size, max_tokens, shuffle=True,
                               seed=1_000_003 * (cfg.seed + 1) + epoch) if u_lengths else []
    u_mine, u_duplicated = ddp.shard(u_batches, env)
    return EpochPlan(mine, [sum(lengths[k] for k in b) for b in batches], duplicated + u_duplicated,
                     u_mine, [sum(u_lengths[k] for k in b) for b in u_batches])


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Reseed every RNG at the start of an epoch (dropout masks differ per rank)."""
    s = seed * 1_000_003 + epoch * 1009 + rank
    random.seed(s)
    torch.manual_seed(s)
    try:
        import numpy as np

        np.random.seed(s % 2**32)
    except ImportError:  # pragma: no cover
        pass


# -- the run, top to bottom ---------------------------------------------------------------------
def train(objective: Objective, tokenizer: PreTrainedTokenizerBase, train_windows: Sequence[Window],
          dev: DevSet | None, settings: Settings, out_dir: str | Path, *, epochs: int | None = None,
          lr: float | None = None, resume: bool = False, stage: str = "distill",
          fingerprint: dict | None = None, unlabeled: TransferSet | None = None) -> TrainResult:
    """Train ``objective.model`` (see module doc); the best model ends up at ``out_dir``'s root.

    ``epochs``/``lr`` override ``train.epochs``/``train.lr``; ``fingerprint``: what else defines the
    run for ``--resume`` (flattened into :func:`~nerkd.train.checkpoint.fingerprint`); ``unlabeled``:
    the transfer set whose batches the objective's ``unlabeled_loss`` also trains on."""
    if not train_windows:
        raise TrainingError("no training windows: the train split is empty")
    if unlabeled is not None:
        if not takes_unlabeled(objective):
            raise TrainingError(f"data.unlabeled: {type(objective).__name__} has no teacher, so it cannot train on "
                                "unlabelled batches")
        fingerprint = {**(fingerprint or {}), "data.unlabeled (sha256)": checkpoint.file_hash(unlabeled.path)}
    out_dir = Path(out_dir)
    env = ddp.detect()
    device, started = ddp.setup(env, settings.train.device)
    run: TrainSetup | None = None
    try:
        if env.is_main:
            open_run_folder(out_dir, settings, resume)
        run = set_up(objective, tokenizer, train_windows, dev, settings.train, settings.data, out_dir, env, device,
                     stage=stage, epochs=epochs or settings.train.epochs, lr=lr or settings.train.lr,
                     transfer=unlabeled)
        state = TrainState(run_plan(run), checkpoint.fingerprint(settings, stage, fingerprint), env.world_size)
        meter = Meter.on(device)
        if resume:
            state = resume_state(run, state, meter)
        else:
            run.metrics.truncate(0)
        announce(run)
        if unlabeled is not None and unlabeled.cache_teacher:
            objective.teacher_cache = build_cache(
                unlabeled, objective, tokenizer, epochs=run.epochs, device=device, precision=run.precision,
                batch_size=run.cfg.batch_size, max_tokens=run.max_tokens, pad_to=run.pad_to, env=env)
        run_epochs(run, state, meter)
        return finish(run, state)
    finally:
        objective.forward_model = objective.model  # drop the DDP/compile wrapper ...
        if run is not None:
            run.release()                            # ... all of it: DDP must go before its process group
        if unlabeled is not None and unlabeled.cache_teacher:
            objective.teacher_cache = None           # the cache's memory goes with the run
        if started:
            ddp.teardown()


def open_run_folder(out_dir: Path, settings: Settings, resume: bool) -> None:
    """Rank 0: claim the folder, clear an older run's checkpoint and summary (unless resuming),
    write ``settings.yaml`` (the only place a training run writes it)."""
    rundir.adopt(out_dir)
    if not resume:   # nothing of an older run in this folder may be resumed or reported later
        rundir.clear_checkpoints(out_dir)
        (out_dir / "train_summary.json").unlink(missing_ok=True)
    settings.save(out_dir)


def set_up(objective: Objective, tokenizer: PreTrainedTokenizerBase, windows: Sequence[Window], dev: DevSet | None,
           cfg: TrainSettings, data: DataSettings, out_dir: Path, env: ddp.DistEnv, device: torch.device, *,
           stage: str, epochs: int, lr: float, transfer: TransferSet | None = None) -> TrainSetup:
    """Model and extras on the device (DDP-wrapped), optimiser, schedule, precision, every epoch's batches
    (gold and, with ``transfer``, unlabelled)."""
    seed_epoch(cfg.seed, 0, 0)
    precision, use_scaler = precision_plan(cfg.precision, device)
    objective.to(device)
    model, extras = objective.model, list(objective.trainable_extras())
    outside = ddp.outside_params(model, extras, env)
    ddp.broadcast_params(outside, env)
    objective.forward_model, ddp_module = ddp.forward_wrapper(model, env, device, cfg.compile)
    optimizer = build_optimizer([model, *extras], lr, cfg.weight_decay, device)

    lengths = [len(w) for w in windows]
    plans = [epoch_plan(lengths, cfg, data.max_tokens_per_batch, e, env,
                        [len(w) for w in transfer.windows(tokenizer, e).windows] if transfer is not None else ())
             for e in range(1, epochs + 1)]
    total_steps = sum(p.steps(cfg.grad_accum) for p in plans)
    if cfg.max_steps is not None:
        total_steps = min(cfg.max_steps, total_steps)
    return TrainSetup(
        objective=objective, tokenizer=tokenizer, windows=windows, dev=dev, cfg=cfg,
        max_tokens=data.max_tokens_per_batch, out_dir=out_dir, stage=stage, epochs=epochs, lr=lr, env=env,
        device=device, precision=precision, model=model, extras=extras, ddp_module=ddp_module, outside=outside,
        params=[p for m in (model, *extras) for p in m.parameters() if p.requires_grad],
        optimizer=optimizer, scheduler=build_scheduler(optimizer, total_steps, cfg.warmup_ratio),
        scaler=grad_scaler(use_scaler, device), pad_to=pad_multiple(device, cfg.compile), plans=plans,
        total_steps=total_steps, metrics=MetricsLog(out_dir / "metrics.jsonl", env.is_main), transfer=transfer)


def run_plan(run: TrainSetup) -> dict[str, Any]:
    """What the run is, for ``--resume`` (effective values: finetune overrides epochs and lr)."""
    t = run.cfg
    plan = {"windows": len(run.windows), "tokens": sum(len(w) for w in run.windows), "batch_size": t.batch_size,
            "grad_accum": t.grad_accum, "max_tokens_per_batch": run.max_tokens, "seed": t.seed,
            "epochs": run.epochs, "max_steps": t.max_steps, "lr": run.lr, "warmup_ratio": t.warmup_ratio}
    if run.transfer is not None:   # only then: checkpoints of runs without one keep the same plan
        plan["unlabeled_batches"] = [len(p.unlabeled) for p in run.plans]
    return plan


def resume_state(run: TrainSetup, state: TrainState, meter: Meter) -> TrainState:
    """The state of ``checkpoints/last``, with model, extras, optimiser, scheduler, scaler, RNG and
    the meter's running sums restored, and ``metrics.jsonl`` cut back to when it was saved."""
    found = checkpoint.find_last(run.out_dir)
    if found is None:
        raise TrainingError(f"nothing to resume in {run.out_dir}: no checkpoints/last (run without --resume)")
    saved = TrainState.from_json(checkpoint.read_state(found), found)
    check_same_run(found, saved, state)
    if run.transfer is not None:
        problem = run.transfer.restore(saved.unlabeled, saved.epoch)
        if problem:
            raise TrainingError(f"cannot resume {found}: {run.transfer.path}: {problem}; start a new run "
                                "(without --resume)")
    loaded = checkpoint.load_last(found, model=run.model, extras=run.extras, optimizer=run.optimizer,
                                  scheduler=run.scheduler, scaler=run.scaler, device=run.device, rank=run.env.rank,
                                  world_size=run.env.world_size)
    missing = run.metrics.truncate(saved.metrics_bytes)
    if missing:
        say(f"note: {run.metrics.path} is {missing} bytes shorter than when {found} was saved: kept as it is "
            "(lines logged before the checkpoint are missing)")
    meter.window.load(saved.window, run.env.world_size)
    meter.epoch_sums.load(saved.epoch_sums, run.env.world_size)
    note = "" if loaded["rng_restored"] else f" (saved with {saved.world_size} ranks: RNG reseeded)"
    say(f"resuming {found}: epoch {saved.epoch}, batch {saved.pos}, step {saved.step}{note}")
    # from here on the state describes this run (its plan, fingerprint and ranks)
    return dataclasses.replace(saved, plan=state.plan, fingerprint=state.fingerprint, world_size=state.world_size,
                               window=None, epoch_sums=None)


def check_same_run(found: Path, saved: TrainState, current: TrainState) -> None:
    """Refuse to resume a checkpoint of another run (plan, settings, data)."""
    changed = [f"{k} {saved.plan.get(k)} -> {v}" for k, v in current.plan.items() if saved.plan.get(k) != v]
    if saved.fingerprint is not None:
        changed += checkpoint.fingerprint_changes(saved.fingerprint, current.fingerprint or {})
    else:
        say(f"note: {found} predates run fingerprints: only the plan (data size, batches, epochs, lr) is checked")
    if changed:
        raise TrainingError(f"cannot resume {found}: the run changed ({'; '.join(changed)}); resume with the "
                            "same settings and data, or start a new run (without --resume)")


def announce(run: TrainSetup) -> None:
    t, env = run.cfg, run.env
    say(f"{run.stage}: {len(run.windows)} windows, {sum(p.steps(t.grad_accum) for p in run.plans)} optimiser steps "
        f"over {run.epochs} epochs{f' (capped at {t.max_steps})' if t.max_steps else ''}, batch {t.batch_size} x "
        f"accum {t.grad_accum}, lr {run.lr:g}, {describe(run.device)}, {run.precision}"
        f"{' + GradScaler' if run.scaler else ''}{f', {env.world_size} ranks' if env.enabled else ''}"
        f"{', compiled' if t.compile else ''}")
    if run.transfer is not None:
        u = run.transfer
        batches = [len(p.unlabeled) for p in run.plans]
        say(f"unlabelled batches: {u.per_epoch:,} texts per epoch (distill.unlabeled_ratio), "
            f"{sum(batches) / len(batches):.1f} batches per epoch among {len(run.plans[0].batches)} gold; "
            f"{run.epochs * u.per_epoch / u.texts:.2f} passes over the {u.texts:,} texts in {run.epochs} epochs")
    duplicated = sum(p.duplicated for p in run.plans)
    if duplicated:
        say(f"note: {duplicated} rows duplicated over {run.epochs} epochs so that every rank gets a row "
            f"(batches smaller than {env.world_size} ranks)")


def run_epochs(run: TrainSetup, state: TrainState, meter: Meter) -> None:
    """Train epoch after epoch from the state's position until the run is finished."""
    meter.tokens, meter.clock = 0, time.perf_counter()
    with progress() as bar:
        task = bar.add_task(run.stage, total=run.total_steps, completed=min(state.step, run.total_steps), info="")
        while state.epoch <= run.epochs and not state.finished:
            hit_max = train_epoch(run, state, meter, bar, task)
            end_epoch(run, state, meter, hit_max)


# -- one epoch ----------------------------------------------------------------------------------
def epoch_batches(run: TrainSetup, plan: EpochPlan, epoch: int, start: int) -> Iterator[Batch]:
    """The epoch's micro-batches from position ``start``, collated and on the device: the gold
    batches and, with a transfer set, the unlabelled ones in :meth:`EpochPlan.order` (a position
    is an index in that order, so a checkpoint's position holds for both kinds)."""
    order = plan.order()
    u = run.transfer.windows(run.tokenizer, epoch) if plan.unlabeled and start < len(order) else None
    for pos in range(start, len(order)):
        kind, i = order[pos]
        if kind == "gold":
            rows, keys, tokens = [run.windows[k] for k in plan.batches[i]], None, plan.tokens[i]
        else:
            rows, keys, tokens = [u.windows[k] for k in plan.unlabeled[i]], [u.keys[k] for k in plan.unlabeled[i]], \
                plan.u_tokens[i]
        batch = collate(rows, run.tokenizer.pad_token_id, run.pad_to)
        yield Batch(pos, {k: v.to(run.device, non_blocking=True) for k, v in batch.items()}, tokens, kind, keys)


def train_epoch(run: TrainSetup, state: TrainState, meter: Meter, bar: Progress, task: int) -> bool:
    """Train ``state.epoch`` from batch ``state.pos``, one optimiser step per turn of the loop; True
    when ``train.max_steps`` was reached."""
    t = run.cfg
    plan = run.plans[state.epoch - 1]
    n = len(plan.batches) + len(plan.unlabeled)
    if state.pos == 0:
        seed_epoch(t.seed, state.epoch, run.env.rank)
    for module in (run.model, *run.extras):
        module.train()
    batches = epoch_batches(run, plan, state.epoch, state.pos)
    while state.pos < n:
        # the step's micro-batches: every train.grad_accum batches of the epoch (fewer at its end);
        # each backward adds loss / size to the gradients, DDP all-reduces them on the last one only
        first = state.pos // t.grad_accum * t.grad_accum
        size = min(t.grad_accum, n - first)
        for batch in islice(batches, first + size - state.pos):
            loss, terms = forward_backward(run, batch, state.epoch, size, sync=batch.pos == first + size - 1)
            meter.add(loss, terms, batch, state.step)
        # the optimiser step
        ddp.sync_grads(run.outside, run.env)
        optimizer_step(run.optimizer, run.scaler, run.params, t.clip_grad)
        run.scheduler.step()
        state.step, state.pos = state.step + 1, first + size
        bar.update(task, advance=1)
        # log, checkpoint, stop
        hit_max = t.max_steps is not None and state.step >= t.max_steps
        if state.step % t.log_every == 0 or hit_max or state.pos == n:
            log_window(run, state, meter, bar, task)
        if t.checkpoint_every and state.step % t.checkpoint_every == 0 and not (state.pos == n or hit_max):
            check_finite(run, meter, state.epoch)
            save_state(run, state, meter)
        if hit_max:
            return True
    return False


def forward_backward(run: TrainSetup, batch: Batch, epoch: int, size: int, sync: bool
                     ) -> tuple[Tensor, dict[str, Tensor]]:
    """The objective's loss of one micro-batch under autocast, backward of ``loss / size``
    (GradScaler-scaled for fp16); DDP all-reduces the gradients only when ``sync`` (the step's last
    micro-batch). Returns the loss (detached) and its terms, still on the device."""
    with ddp.no_sync(run.ddp_module, skip=not sync):
        with autocast(run.device, run.precision):
            if batch.kind == "unlabeled":
                loss, terms = run.objective.unlabeled_loss(batch.tensors, epoch, keys=batch.keys)
            else:
                loss, terms = run.objective.loss(batch.tensors, epoch)
        scaled = loss / size
        (run.scaler.scale(scaled) if run.scaler is not None else scaled).backward()
    return loss.detach(), terms


def log_window(run: TrainSetup, state: TrainState, meter: Meter, bar: Progress, task: int) -> None:
    """A ``metrics.jsonl`` line and the progress bar: mean terms since the last line (reads the device)."""
    check_finite(run, meter, state.epoch)
    now = time.perf_counter()
    terms = meter.window.mean(run.env)
    meter.window.reset()
    speed = meter.tokens / max(now - meter.clock, 1e-9)
    meter.tokens, meter.clock = 0, now
    lr = run.scheduler.get_last_lr()[0]
    run.metrics.write({"kind": "train", "step": state.step, "epoch": state.epoch, "lr": lr, **terms,
                       "tokens_per_s": round(speed, 1)})
    shown = f"loss {terms['loss']:.4f}" if "loss" in terms else f"u_loss {terms.get('u_loss', float('nan')):.4f}"
    bar.update(task, info=f"{shown}  lr {lr:.2e}  {speed:,.0f} tok/s")


def check_finite(run: TrainSetup, meter: Meter, epoch: int) -> None:
    """Raise if any rank saw a non-finite loss (the only host read of ``meter.bad_step``)."""
    first = int(ddp.all_reduce(torch.where(meter.bad_step < 0, 1 << 62, meter.bad_step), run.env, "min"))
    if first < 1 << 62:
        found = checkpoint.find_last(run.out_dir)
        kept = f"last good checkpoint kept at {found}" if found else "no checkpoint had been saved yet"
        raise TrainingError(f"non-finite loss at step {first} (epoch {epoch}): {kept}")


def save_state(run: TrainSetup, state: TrainState, meter: Meter) -> None:
    """``checkpoints/last`` at the state's position (every rank takes part: RNG states and the
    meter's running sums are gathered; rank 0 writes)."""
    rng = ddp.gather_objects(checkpoint.rng_state(), run.env)
    snapshot = dataclasses.replace(state, metrics_bytes=run.metrics.size(), window=meter.window.state(run.env),
                                   epoch_sums=meter.epoch_sums.state(run.env),
                                   unlabeled=run.transfer.state(state.epoch) if run.transfer is not None else None)
    if run.main:
        checkpoint.save_last(run.out_dir, model=run.model, extras=run.extras, optimizer=run.optimizer,
                             scheduler=run.scheduler, scaler=run.scaler, rng=rng, state=snapshot.to_json())


# -- end of an epoch ----------------------------------------------------------------------------
def end_epoch(run: TrainSetup, state: TrainState, meter: Meter, hit_max: bool) -> None:
    """Evaluate, keep the best model, log the epoch, decide whether to stop, save the state."""
    check_finite(run, meter, state.epoch)   # nothing from a broken epoch is evaluated or saved
    record = {"kind": "epoch", "epoch": state.epoch, "step": state.step, "partial": hit_max,
              **meter.epoch_sums.mean(run.env)}
    meter.epoch_sums.reset()
    improved = evaluate_epoch(run, state, record)
    if improved and run.main:
        checkpoint.save_best(run.model, run.tokenizer, run.out_dir)
    state.history.append({k: v for k, v in record.items() if k != "kind"})
    run.metrics.write(record)
    if hit_max:
        state.stop_reason, state.finished = "max_steps", True
    elif run.cfg.patience and run.dev is not None and state.bad_epochs >= run.cfg.patience:
        state.stop_reason, state.stopped_early, state.finished = "early_stopping", True, True
        say(f"early stopping: no dev F1 gain for {run.cfg.patience} epochs")
    elif state.epoch == run.epochs:
        state.finished = True
    state.epoch, state.pos = state.epoch + 1, 0
    save_state(run, state, meter)


def evaluate_epoch(run: TrainSetup, state: TrainState, record: dict) -> bool:
    """Dev scores into ``record`` and the best-so-far bookkeeping; whether this epoch is the best
    (every epoch is without a dev set). Rank 0 evaluates; every rank gets its result."""
    if run.dev is None:
        state.best_epoch = state.epoch
        return True
    result = ddp.broadcast_object(evaluate_dev(run, run.dev) if run.main else None, run.env)
    record.update(dev_f1=result["f1"], dev_precision=result["precision"], dev_recall=result["recall"],
                  dev_per_type={k: v["f1"] for k, v in result["per_type"].items()})
    improved = state.best_f1 is None or result["f1"] > state.best_f1
    if improved:
        state.best_f1, state.best_epoch, state.best_dev, state.bad_epochs = result["f1"], state.epoch, result, 0
    else:
        state.bad_epochs += 1
    best = "best" if improved else f"best {state.best_f1:.4f} at epoch {state.best_epoch}"
    say(f"epoch {state.epoch}: dev F1 {result['f1']:.4f} ({best})")
    return improved


def evaluate_dev(run: TrainSetup, dev: DevSet) -> dict:
    """:func:`nerkd.metrics.evaluate` of the model's predictions on ``dev``."""
    from nerkd.metrics import evaluate
    from nerkd.models.decode import predict_tags

    pred = predict_tags(run.model, dev.windows, dev.n_words, pad_id=run.tokenizer.pad_token_id,
                        batch_size=max(run.cfg.batch_size, 32), device=run.device, precision=run.precision)
    return evaluate(dev.gold_tags, pred)


def finish(run: TrainSetup, state: TrainState) -> TrainResult:
    """The run's result, also written (rank 0) as ``train_summary.json``."""
    result = TrainResult(run.out_dir, state.best_f1, state.best_epoch, len(state.history), state.step,
                         state.stopped_early, state.stop_reason, state.best_dev, state.history, run.stage)
    if run.main:
        write_json(run.out_dir / "train_summary.json", {
            "stage": run.stage, "best_f1": result.best_f1, "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run, "steps": result.steps, "stopped_early": result.stopped_early,
            "stop_reason": result.stop_reason, "dev": result.dev, "history": result.history,
            "precision": run.precision, "device": describe(run.device), "world_size": run.env.world_size,
            "duplicated_rows": sum(p.duplicated for p in run.plans), "train_windows": len(run.windows),
            "lr": run.lr, "epochs": run.epochs, "unlabeled": unlabeled_summary(run)})
    return result


def unlabeled_summary(run: TrainSetup) -> dict | None:
    """What ``train_summary.json`` says about the transfer set (None without one)."""
    u = run.transfer
    if u is None:
        return None
    cache = getattr(run.objective, "teacher_cache", None)
    return {"path": u.path, "texts": u.texts, "texts_per_epoch": u.per_epoch,
            "batches_per_epoch": [len(p.unlabeled) for p in run.plans],
            "teacher_cache": None if cache is None else {
                "windows": len(cache), "mib": round(cache.bytes / 2**20, 2), "full": cache.full,
                "rows_from_cache": cache.hits, "rows_computed": cache.misses}}
