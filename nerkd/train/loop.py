"""The one training engine, shared by ``distill`` and ``finetune`` (read it top to bottom).

Each epoch: length-bucketed batches shuffled from ``train.seed + epoch``; for each batch, the
objective's loss under autocast, backward (scaled for fp16), and every ``train.grad_accum``
batches an optimiser step (gradient clipping, AdamW, linear warm-up then decay). Losses stay on
the device; the host only reads them every ``train.log_every`` steps (progress bar and a line of
``metrics.jsonl``). After each epoch: dev evaluation (entity F1), the best model saved at the run
folder root, the resumable state saved in ``checkpoints/last`` (also every
``train.checkpoint_every`` steps), early stopping after ``train.patience`` epochs without gain.

A non-finite loss stops the run with :class:`~nerkd.errors.TrainingError` before anything else is
written, so the last good checkpoint survives. Resuming (``resume=True``) restores model,
optimiser, scheduler, scaler, RNG states and the position in the epoch: on CPU an interrupted
and resumed run ends with the same weights as an uninterrupted one. It is refused when the run's
plan or :func:`~nerkd.train.checkpoint.fingerprint` (settings that change training, data hashes,
the engine's ``fingerprint`` extras: models, distillation settings) differs from the checkpoint's.
A run without ``resume`` first removes any previous checkpoint and summary from ``out_dir``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from nerkd import rundir
from nerkd.data.encode import Window, bucket_batches, collate
from nerkd.device import autocast, describe
from nerkd.errors import TrainingError
from nerkd.io import write_json
from nerkd.log import progress, say
from nerkd.train import checkpoint, ddp
from nerkd.train.logs import Accumulator, MetricsLog
from nerkd.train.objective import Objective
from nerkd.train.optim import (
    build_optimizer,
    build_scheduler,
    grad_scaler,
    optimizer_step,
    pad_multiple,
    precision_plan,
)


@dataclass
class DevSet:
    windows: list[Window]
    gold_tags: list[list[str]]
    n_words: list[int]

    @classmethod
    def from_split(cls, split, space=None) -> DevSet:
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


def epoch_plan(lengths: Sequence[int], settings, epoch: int,
               env: ddp.DistEnv) -> tuple[list[list[int]], int, list[int]]:
    """This rank's batches for ``epoch`` (every rank cuts the same global batches), the number of
    duplicated rows, and the real (unpadded) token count of each global batch."""
    batches = bucket_batches(lengths, settings.train.batch_size, settings.data.max_tokens_per_batch,
                             shuffle=True, seed=settings.train.seed + epoch)
    mine, duplicated = ddp.shard(batches, env)
    return mine, duplicated, [sum(lengths[k] for k in b) for b in batches]


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


def train(objective: Objective, tokenizer, train_windows: Sequence[Window], dev: DevSet | None, settings,
          out_dir: str | Path, *, epochs: int | None = None, lr: float | None = None, resume: bool = False,
          stage: str = "distill", fingerprint: dict | None = None) -> TrainResult:
    """Train ``objective.model`` (see module doc); the best model ends up at ``out_dir``'s root.

    ``fingerprint``: what else defines the run for ``--resume`` (flattened into
    :func:`~nerkd.train.checkpoint.fingerprint`)."""
    env = ddp.detect()
    device, started = ddp.setup(env, settings.train.device)
    try:
        return _train(objective, tokenizer, train_windows, dev, settings, Path(out_dir), env, device,
                      epochs or settings.train.epochs, lr or settings.train.lr, resume, stage, fingerprint)
    finally:
        objective.forward_model = objective.model  # drop the DDP/compile wrapper
        if started:
            ddp.teardown()


def _train(objective, tokenizer, train_windows, dev, settings, out_dir, env, device, epochs, lr, resume, stage,
           extra_fingerprint):
    t = settings.train
    main = env.is_main
    log = say   # rank 0 only: the CLI's handler (nerkd.ui.install) is silent on other ranks
    if not train_windows:
        raise TrainingError("no training windows: the train split is empty")
    if main:
        rundir.adopt(out_dir)
        if not resume:   # nothing of an older run in this folder may be resumed or reported later
            rundir.clear_checkpoints(out_dir)
            (out_dir / "train_summary.json").unlink(missing_ok=True)
        settings.save(out_dir)

    # -- model, optimiser, schedule, precision ------------------------------------------------
    seed_epoch(t.seed, 0, 0)
    precision, use_scaler = precision_plan(t.precision, device)
    objective.to(device)
    model, extras = objective.model, list(objective.trainable_extras())
    outside = ddp.outside_params(model, extras, env)
    ddp.broadcast_params(outside, env)
    objective.forward_model, ddp_module = ddp.forward_wrapper(model, env, device, t.compile)
    pad_to = pad_multiple(device, t.compile)
    params = [p for m in (model, *extras) for p in m.parameters() if p.requires_grad]
    optimizer = build_optimizer([model, *extras], lr, t.weight_decay, device)
    scaler = grad_scaler(use_scaler, device)

    lengths = [len(w) for w in train_windows]
    plans = [epoch_plan(lengths, settings, e, env) for e in range(1, epochs + 1)]
    steps_per_epoch = [-(-len(b) // t.grad_accum) for b, _, _ in plans]
    total_steps = sum(steps_per_epoch) if t.max_steps is None else min(t.max_steps, sum(steps_per_epoch))
    scheduler = build_scheduler(optimizer, total_steps, t.warmup_ratio)
    duplicated = sum(d for _, d, _ in plans)

    plan = {"windows": len(train_windows), "tokens": sum(lengths), "batch_size": t.batch_size,
            "grad_accum": t.grad_accum, "max_tokens_per_batch": settings.data.max_tokens_per_batch, "seed": t.seed,
            "epochs": epochs, "max_steps": t.max_steps, "lr": lr, "warmup_ratio": t.warmup_ratio}
    fingerprint = checkpoint.fingerprint(settings, stage, extra_fingerprint)
    state = {"plan": plan, "fingerprint": fingerprint, "epoch": 1, "pos": 0, "step": 0, "best_f1": None,
             "best_epoch": None, "best_dev": None,
             "bad_epochs": 0, "history": [], "stopped_early": False, "stop_reason": "completed",
             "finished": False, "world_size": env.world_size, "metrics_bytes": 0, "window": None, "epoch_sums": None}
    metrics = MetricsLog(out_dir / "metrics.jsonl", main)
    if resume:
        found = checkpoint.find_last(out_dir)
        if found is None:
            raise TrainingError(f"nothing to resume in {out_dir}: no checkpoints/last (run without --resume)")
        saved = checkpoint.read_state(found)
        saved_plan = saved.get("plan", {})
        changed = [f"{k} {saved_plan.get(k)} -> {v}" for k, v in plan.items() if saved_plan.get(k) != v]
        if saved.get("fingerprint") is not None:
            changed += checkpoint.fingerprint_changes(saved["fingerprint"], fingerprint)
        else:
            log(f"note: {found} predates run fingerprints: only the plan (data size, batches, epochs, lr) is checked")
        if changed:
            raise TrainingError(f"cannot resume {found}: the run changed ({'; '.join(changed)}); resume with the "
                                "same settings and data, or start a new run (without --resume)")
        state = checkpoint.load_last(found, model=model, extras=extras, optimizer=optimizer, scheduler=scheduler,
                                     scaler=scaler, device=device, rank=env.rank, world_size=env.world_size)
        state["fingerprint"] = fingerprint
        missing = metrics.truncate(state["metrics_bytes"])
        if missing:
            log(f"note: {metrics.path} is {missing} bytes shorter than when {found} was saved: kept as it is "
                "(lines logged before the checkpoint are missing)")
        state.pop("rng", None)
        note = "" if state.pop("rng_restored") else f" (saved with {state['world_size']} ranks: RNG reseeded)"
        log(f"resuming {found}: epoch {state['epoch']}, batch {state['pos']}, step {state['step']}{note}")
    else:
        metrics.truncate(0)

    log(f"{stage}: {len(train_windows)} windows, {sum(steps_per_epoch)} optimiser steps over {epochs} epochs"
        f"{f' (capped at {t.max_steps})' if t.max_steps else ''}, batch {t.batch_size} x accum {t.grad_accum}, "
        f"lr {lr:g}, {describe(device)}, {precision}{' + GradScaler' if scaler else ''}"
        f"{f', {env.world_size} ranks' if env.enabled else ''}{', compiled' if t.compile else ''}")
    if duplicated:
        log(f"note: {duplicated} rows duplicated over {epochs} epochs so that every rank gets a row "
            f"(batches smaller than {env.world_size} ranks)")

    # -- training -------------------------------------------------------------------------------
    window, epoch_acc = Accumulator(device), Accumulator(device)
    window.load(state.pop("window"), env.world_size)
    epoch_acc.load(state.pop("epoch_sums"), env.world_size)
    bad_step = torch.full((), -1, dtype=torch.long, device=device)   # first non-finite loss (on device)
    step, epoch = state["step"], state["epoch"]
    tokens, clock = 0, time.perf_counter()

    def check_finite(where_epoch: int) -> None:
        first = int(ddp.all_reduce(torch.where(bad_step < 0, 1 << 62, bad_step), env, "min"))
        if first < 1 << 62:
            found = checkpoint.find_last(out_dir)
            kept = f"last good checkpoint kept at {found}" if found else "no checkpoint had been saved yet"
            raise TrainingError(f"non-finite loss at step {first} (epoch {where_epoch}): {kept}")

    def save_state(next_epoch: int, pos: int) -> None:
        check_finite(epoch)
        rng = ddp.gather_objects(checkpoint.rng_state(), env)
        snapshot = {**state, "epoch": next_epoch, "pos": pos, "step": step, "metrics_bytes": metrics.size(),
                    "window": window.state(env), "epoch_sums": epoch_acc.state(env)}
        if main:
            checkpoint.save_last(out_dir, model=model, extras=extras, optimizer=optimizer, scheduler=scheduler,
                                 scaler=scaler, rng=rng, state=snapshot)

    bar = progress()
    with bar:
        task = bar.add_task(stage, total=total_steps, completed=min(step, total_steps), info="")
        while epoch <= epochs and not state["finished"]:
            batches, _, batch_tokens = plans[epoch - 1]
            start = state["pos"] if epoch == state["epoch"] else 0
            if start == 0:
                seed_epoch(t.seed, epoch, env.rank)
            model.train()
            for extra in extras:
                extra.train()
            hit_max = False
            for i in range(start, len(batches)):
                group_start = i - i % t.grad_accum
                group = min(t.grad_accum, len(batches) - group_start)
                boundary = i + 1 == group_start + group
                batch = collate([train_windows[k] for k in batches[i]], tokenizer.pad_token_id, pad_to)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                with ddp.no_sync(ddp_module, skip=not boundary):
                    with autocast(device, precision):
                        loss, terms = objective.loss(batch, epoch)
                    scaled = loss / group
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                loss = loss.detach()
                bad_step = torch.where(torch.isfinite(loss) | (bad_step >= 0), bad_step, step + 1)
                window.add(loss, terms)
                epoch_acc.add(loss, terms)
                tokens += batch_tokens[i]
                if not boundary:
                    continue
                # optimiser step
                ddp.sync_grads(outside, env)
                optimizer_step(optimizer, scaler, params, t.clip_grad)
                scheduler.step()
                step += 1
                bar.update(task, advance=1)
                hit_max = t.max_steps is not None and step >= t.max_steps
                last_of_epoch = i + 1 == len(batches)
                if step % t.log_every == 0 or hit_max or last_of_epoch:
                    check_finite(epoch)
                    now = time.perf_counter()
                    terms_mean = window.mean(env)
                    window.reset()
                    speed = tokens / max(now - clock, 1e-9)
                    tokens, clock = 0, now
                    lr_now = scheduler.get_last_lr()[0]
                    metrics.write({"kind": "train", "step": step, "epoch": epoch, "lr": lr_now, **terms_mean,
                                   "tokens_per_s": round(speed, 1)})
                    bar.update(task, info=f"loss {terms_mean['loss']:.4f}  lr {lr_now:.2e}  {speed:,.0f} tok/s")
                if t.checkpoint_every and step % t.checkpoint_every == 0 and not (last_of_epoch or hit_max):
                    save_state(epoch, i + 1)
                if hit_max:
                    break

            # -- end of epoch: evaluate, keep the best, save the state, maybe stop ------------------
            check_finite(epoch)
            record = {"kind": "epoch", "epoch": epoch, "step": step, "partial": hit_max, **epoch_acc.mean(env)}
            epoch_acc.reset()
            improved = dev is None
            if dev is not None:
                result = _evaluate(model, dev, tokenizer, settings, device, precision) if main else None
                result = ddp.broadcast_object(result, env)
                record.update(dev_f1=result["f1"], dev_precision=result["precision"], dev_recall=result["recall"],
                              dev_per_type={k: v["f1"] for k, v in result["per_type"].items()})
                improved = state["best_f1"] is None or result["f1"] > state["best_f1"]
                if improved:
                    state.update(best_f1=result["f1"], best_epoch=epoch, best_dev=result, bad_epochs=0)
                else:
                    state["bad_epochs"] += 1
                best = "best" if improved else f"best {state['best_f1']:.4f} at epoch {state['best_epoch']}"
                log(f"epoch {epoch}: dev F1 {result['f1']:.4f} ({best})")
            else:
                state["best_epoch"] = epoch
            if improved and main:
                checkpoint.save_best(model, tokenizer, out_dir)
            state["history"].append({k: v for k, v in record.items() if k != "kind"})
            metrics.write(record)
            if hit_max:
                state.update(stop_reason="max_steps", finished=True)
            elif t.patience and dev is not None and state["bad_epochs"] >= t.patience:
                state.update(stop_reason="early_stopping", stopped_early=True, finished=True)
                log(f"early stopping: no dev F1 gain for {t.patience} epochs")
            elif epoch == epochs:
                state["finished"] = True
            save_state(epoch + 1, 0)
            epoch += 1

    result = TrainResult(out_dir, state["best_f1"], state["best_epoch"], len(state["history"]), step,
                         state["stopped_early"], state["stop_reason"], state["best_dev"], state["history"], stage)
    if main:
        write_json(out_dir / "train_summary.json", {
            "stage": stage, "best_f1": result.best_f1, "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run, "steps": step, "stopped_early": result.stopped_early,
            "stop_reason": result.stop_reason, "dev": result.dev, "history": result.history,
            "precision": precision, "device": describe(device), "world_size": env.world_size,
            "duplicated_rows": duplicated, "train_windows": len(train_windows), "lr": lr, "epochs": epochs})
    return result


def _evaluate(model, dev: DevSet, tokenizer, settings, device, precision) -> dict:
    from nerkd.metrics import evaluate
    from nerkd.models.decode import predict_tags

    pred = predict_tags(model, dev.windows, dev.n_words, pad_id=tokenizer.pad_token_id,
                        batch_size=max(settings.train.batch_size, 32), device=device, precision=precision)
    return evaluate(dev.gold_tags, pred)
