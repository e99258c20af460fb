"""The training loop: resume equivalence, NaN handling, atomic checkpoints, early stopping, logs."""

from __future__ import annotations

import math
import os
import shutil

import orjson
import pytest
import torch

from nerkd.data.dataset import encode_split, read_split, tag_ids
from nerkd.errors import TrainingError
from nerkd.models.ner import NerModel, load_tokenizer
from nerkd.settings import load_settings
from nerkd.train import CEObjective, DevSet, checkpoint, train
from nerkd.train.ddp import DistEnv, shard
from nerkd.train.optim import grad_scaler, lr_factor, param_groups, precision_plan
from tests.helpers import DATA

BASE = ["train.batch_size=4", "train.grad_accum=2", "train.epochs=2", "train.lr=1e-3", "train.patience=0",
        "train.log_every=1", "train.checkpoint_every=2", "train.warmup_ratio=0.2", "train.device=cpu",
        "data.max_length=32", "data.stride=8", "data.limit=24"]


def make_settings(*extra: str):
    return load_settings(None, [f"data.train={DATA / 'train.jsonl'}", f"data.dev={DATA / 'dev.jsonl'}",
                                f"data.label2id={DATA / 'label2id.json'}", *BASE, *extra])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Bit-identical resumes compare runs made with one thread count: the free-core default can pick 1 thread for
    one run and 2 for the next on a loaded machine (seen: a resume then differs in the last bits)."""
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"            # nerkd keeps torch's count when this is set
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    if before is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = before


@pytest.fixture(scope="module")
def data(tiny_bio):
    """Encoded train (24 windows) and dev (6 sentences) for the tiny BIO model."""
    settings = make_settings()
    tok = load_tokenizer(tiny_bio)
    space = NerModel.load(tiny_bio).labels
    train_split = encode_split(read_split("train", DATA / "train.jsonl", settings.data), tok, space, settings.data)
    dev_split = read_split("dev", DATA / "dev.jsonl", settings.data)
    dev_split.sentences = dev_split.sentences[:6]
    encode_split(dev_split, tok, space, settings.data)
    gold = [[space.labels[i] for i in ids] for ids in tag_ids(dev_split, space)]
    dev = DevSet(dev_split.windows, gold, [len(s.tokens) for s in dev_split.sentences])
    return tok, train_split.windows[:24], dev   # 6 batches of 4 per epoch


class Counting(CEObjective):
    """CE objective that counts its calls and can crash or return NaN at a given call."""

    def __init__(self, model, crash_at=None, nan_at=None):
        super().__init__(model)
        self.calls, self.crash_at, self.nan_at = 0, crash_at, nan_at

    def loss(self, batch, epoch):
        self.calls += 1
        if self.calls == self.crash_at:
            raise RuntimeError("injected crash")
        total, terms = super().loss(batch, epoch)
        if self.calls == self.nan_at:
            total = total * float("nan")
        return total, terms


def run(folder, data, out, settings=None, n_windows=None, **kw):
    tok, windows, dev = data
    windows = windows[:n_windows]
    obj = kw.pop("objective", None) or Counting(NerModel.load(folder), **kw.pop("objective_kw", {}))
    result = train(obj, tok, windows, dev, settings or make_settings(), out, stage="test", **kw)
    return obj, result


@pytest.fixture(scope="module")
def baseline(tiny_bio, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline")
    obj, result = run(tiny_bio, data, out)
    return obj, result, out


def read_metrics(out):
    return [orjson.loads(line) for line in (out / "metrics.jsonl").read_bytes().splitlines()]


def same(a, b) -> bool:
    """Equal structures, numbers equal up to float32 summation order (resumed epoch means)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6, abs=1e-9)
    return a == b


def states_equal(a, b, atol=0.0):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return all(torch.allclose(sa[k].float(), sb[k].float(), atol=atol, rtol=0) for k in sa)


def test_resume_after_a_crash_ends_with_the_same_weights(tiny_bio, data, baseline, tmp_path):
    ref_obj, ref, ref_out = baseline
    # 24 windows / batch 4 = 6 batches per epoch, accumulation 2: 3 steps per epoch, 6 in all;
    # checkpoints at step 2, end of epoch 1 (step 3) and step 4 (epoch 2, batch 2); crash at batch 3 of epoch 2
    with pytest.raises(RuntimeError, match="injected crash"):
        run(tiny_bio, data, tmp_path, objective_kw={"crash_at": 9})
    state = orjson.loads((tmp_path / "checkpoints/last/state.json").read_bytes())
    assert (state["epoch"], state["pos"], state["step"]) == (2, 2, 4)
    obj, result = run(tiny_bio, data, tmp_path, resume=True)
    assert obj.calls == 4                                   # only the 4 remaining batches were trained
    assert ref_obj.calls == 12 and ref.steps == result.steps == 6
    assert states_equal(obj.model, ref_obj.model)           # dropout on: RNG states were restored exactly
    best, ref_best = NerModel.load(tmp_path), NerModel.load(ref_out)
    assert states_equal(best, ref_best)
    assert result.best_f1 == ref.best_f1 and same(result.history, ref.history)

    def strip(lines):
        return [{k: v for k, v in line.items() if k != "tokens_per_s"} for line in lines]

    assert same(strip(read_metrics(tmp_path)), strip(read_metrics(ref_out)))   # lines after the checkpoint replaced


def test_resume_with_nothing_to_resume_is_a_training_error(tiny_bio, data, tmp_path):
    with pytest.raises(TrainingError, match="nothing to resume"):
        run(tiny_bio, data, tmp_path, resume=True)


def test_resume_checks_the_run_is_the_same(tiny_bio, data, baseline, tmp_path):
    _, ref, out = baseline
    shutil.copytree(out, tmp_path / "run")
    with pytest.raises(TrainingError, match=r"the run changed \(batch_size 4 -> 2\)"):
        run(tiny_bio, data, tmp_path / "run", make_settings("train.batch_size=2"), resume=True)
    obj, result = run(tiny_bio, data, tmp_path / "run", resume=True)     # finished: nothing left to train
    assert obj.calls == 0 and result.steps == ref.steps and result.best_f1 == ref.best_f1


def test_metrics_summary_and_run_folder(baseline):
    obj, result, out = baseline
    lines = read_metrics(out)
    train_lines = [x for x in lines if x["kind"] == "train"]
    epochs = [x for x in lines if x["kind"] == "epoch"]
    assert [x["step"] for x in train_lines] == [1, 2, 3, 4, 5, 6]
    assert all({"epoch", "lr", "loss", "ce", "tokens_per_s"} <= x.keys() for x in train_lines)
    assert all(math.isfinite(x["loss"]) and x["tokens_per_s"] > 0 for x in train_lines)
    assert [x["epoch"] for x in epochs] == [1, 2]
    assert all(set(x["dev_per_type"]) == {"PER", "LOC", "ORG"} and 0 <= x["dev_f1"] <= 1 for x in epochs)
    summary = orjson.loads((out / "train_summary.json").read_bytes())
    assert summary["best_f1"] == result.best_f1 and summary["epochs_run"] == 2 and not summary["stopped_early"]
    assert summary["dev"]["f1"] == max(x["dev_f1"] for x in epochs)
    assert (out / "settings.yaml").is_file() and (out / "model.safetensors").is_file()
    assert NerModel.load(out).labels == obj.model.labels
    assert not list(out.glob(".*tmp*")) and not list((out / "checkpoints").glob(".*"))


def test_lr_warms_up_then_decays(baseline):
    _, _, out = baseline
    lrs = [x["lr"] for x in read_metrics(out) if x["kind"] == "train"]
    # 6 steps, warm-up ceil(0.2 * 6) = 2: the LR after each step follows lr_factor
    assert lrs == pytest.approx([1e-3 * lr_factor(s, 6, 2) for s in range(1, 7)])
    assert lr_factor(0, 6, 2) < lr_factor(1, 6, 2) < lr_factor(2, 6, 2) == 1.0 > lr_factor(3, 6, 2) > lr_factor(5, 6, 2)
    assert lr_factor(6, 6, 2) == 0.0


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_bio, data, tmp_path):
    settings = make_settings("train.grad_accum=1", "train.log_every=10")
    with pytest.raises(TrainingError, match=r"non-finite loss at step 3 \(epoch 1\): last good checkpoint kept at"):
        run(tiny_bio, data, tmp_path, settings, objective_kw={"nan_at": 3})
    last = tmp_path / "checkpoints/last"
    assert orjson.loads((last / "state.json").read_bytes())["step"] == 2
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(str(last / "model.safetensors")).values())
    assert not (tmp_path / "model.safetensors").exists()          # no "best" model from a broken epoch
    assert not (tmp_path / "train_summary.json").exists()


def test_crash_while_saving_leaves_the_previous_checkpoint(baseline, tmp_path, monkeypatch):
    obj, _, out = baseline
    run_dir = tmp_path / "run"
    shutil.copytree(out, run_dir)
    last = run_dir / "checkpoints/last"
    before = {p.name: p.read_bytes() for p in last.iterdir()}
    model = obj.model
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    args = dict(model=model, extras=[], optimizer=optimizer, scheduler=scheduler, scaler=None,
                rng=[checkpoint.rng_state()], state={"step": 99})

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", boom)               # dies after model.safetensors is written
    with pytest.raises(OSError):
        checkpoint.save_last(run_dir, **args)
    assert {p.name: p.read_bytes() for p in last.iterdir()} == before
    assert checkpoint.find_last(run_dir) == last
    assert [p.name for p in last.parent.iterdir()] == ["last"]   # no temporary folder left
    monkeypatch.undo()

    import nerkd.train.checkpoint as ck

    real_replace = ck.os.replace

    def dies_on_second_rename(a, b):   # last -> .last.old done, new -> last fails
        if str(b).endswith("checkpoints/last"):
            raise OSError("killed between the two renames")
        real_replace(a, b)

    monkeypatch.setattr(ck.os, "replace", dies_on_second_rename)
    with pytest.raises(OSError):
        checkpoint.save_last(run_dir, **args)
    found = checkpoint.find_last(run_dir)                  # the previous one, under its old name
    assert found is not None and found.name == ".last.old"
    assert {p.name: p.read_bytes() for p in found.iterdir()} == before


def test_early_stopping_when_dev_f1_stalls(tiny_bio, data, tmp_path):
    # lr so small that the predictions (all O at init) never change: F1 stays 0, no gain after epoch 1
    settings = make_settings("train.epochs=6", "train.patience=2", "train.lr=1e-9", "train.checkpoint_every=0")
    _, result = run(tiny_bio, data, tmp_path, settings, n_windows=8)
    assert result.stopped_early and result.stop_reason == "early_stopping"
    assert result.epochs_run == 3 and result.best_epoch == 1
    assert orjson.loads((tmp_path / "train_summary.json").read_bytes())["stopped_early"] is True


def test_max_steps_caps_the_run(tiny_bio, data, tmp_path):
    _, result = run(tiny_bio, data, tmp_path, make_settings("train.max_steps=2", "train.checkpoint_every=0"))
    assert result.steps == 2 and result.stop_reason == "max_steps" and result.epochs_run == 1
    assert result.history[-1]["partial"] is True


def test_grad_scaler_only_for_fp16(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert precision_plan("auto", cpu) == ("fp32", False)
    assert precision_plan("fp16", cpu) == ("fp32", False)          # no fp16 autocast on CPU
    assert precision_plan("bf16", cpu) == ("bf16", False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision_plan("auto", cuda) == ("bf16", False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision_plan("auto", cuda) == ("fp16", True)           # older GPU: fp16 + GradScaler
    assert precision_plan("fp16", cuda) == ("fp16", True)
    assert precision_plan("bf16", cuda) == ("bf16", False)
    assert precision_plan("fp32", cuda) == ("fp32", False)
    assert grad_scaler(False, cpu) is None


def test_weight_decay_skips_biases_and_layer_norms(tiny_bio):
    model = NerModel.load(tiny_bio)
    decay, no_decay = param_groups([model], 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(not names[id(p)].endswith("bias") and "LayerNorm" not in names[id(p)] for p in decay["params"])
    assert any("LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_shard_splits_global_batches_and_counts_duplicates():
    batches = [[0, 1, 2, 3], [4, 5, 6], [7]]
    assert shard(batches, DistEnv(0, 1, 0)) == (batches, 0)
    assert shard(batches, DistEnv(0, 2, 0)) == ([[0, 2], [4, 6], [7]], 1)
    assert shard(batches, DistEnv(1, 2, 1)) == ([[1, 3], [5], [7]], 1)   # rank 1 borrows row 7


# -- issue 12: a fresh run inherits nothing, resume checks the whole run, no NUL padding ----------------

def test_a_fresh_run_killed_early_leaves_nothing_to_resume(tiny_bio, data, baseline, tmp_path):
    _, _, out = baseline
    shutil.copytree(out, tmp_path / "run")                              # a finished run's folder
    with pytest.raises(RuntimeError, match="injected crash"):           # a new run, killed before any checkpoint
        run(tiny_bio, data, tmp_path / "run", objective_kw={"crash_at": 1})
    assert checkpoint.find_last(tmp_path / "run") is None and not (tmp_path / "run/train_summary.json").exists()
    with pytest.raises(TrainingError, match="nothing to resume"):       # not the old run's checkpoint
        run(tiny_bio, data, tmp_path / "run", resume=True)


def test_resume_checks_every_setting_and_the_data_content(tiny_bio, data, baseline, tmp_path):
    _, _, out = baseline
    shutil.copytree(out, tmp_path / "run")
    with pytest.raises(TrainingError, match=r"the run changed \(train\.weight_decay 0\.01 -> 0\.5\)"):
        run(tiny_bio, data, tmp_path / "run", make_settings("train.weight_decay=0.5"), resume=True)
    tok, windows, dev = data
    with pytest.raises(TrainingError, match=r"the run changed \(stage test -> other\)"):
        train(CEObjective(NerModel.load(tiny_bio)), tok, windows, dev, make_settings(), tmp_path / "run",
              resume=True, stage="other")
    copy = tmp_path / "train.jsonl"
    shutil.copy(DATA / "train.jsonl", copy)
    # the same data under another path: accepted (finished, nothing left to train); log and save cadence may change
    obj, _ = run(tiny_bio, data, tmp_path / "run", make_settings(f"data.train={copy}", "train.log_every=5",
                                                                 "train.checkpoint_every=0"), resume=True)
    assert obj.calls == 0
    text = copy.read_text(encoding="utf-8")
    copy.write_text(text.replace('"B-PER"', '"B-ORG"', 1), encoding="utf-8")   # same size, other labels
    with pytest.raises(TrainingError, match=r"the run changed \(data\.train \(sha256\) [0-9a-f]{16} -> [0-9a-f]{16}\)"):
        run(tiny_bio, data, tmp_path / "run", make_settings(f"data.train={copy}"), resume=True)


def test_resume_never_pads_metrics_with_nul_bytes(tiny_bio, data, tmp_path, capsys):
    with pytest.raises(RuntimeError, match="injected crash"):
        run(tiny_bio, data, tmp_path, objective_kw={"crash_at": 9})
    metrics = tmp_path / "metrics.jsonl"
    recorded = orjson.loads((tmp_path / "checkpoints/last/state.json").read_bytes())["metrics_bytes"]
    first = metrics.read_bytes().splitlines(keepends=True)[0]
    metrics.write_bytes(first + b'{"kind":"tr')                         # shorter than the checkpoint recorded
    capsys.readouterr()
    run(tiny_bio, data, tmp_path, resume=True)
    assert f"is {recorded - len(first) - 11} bytes shorter than when" in capsys.readouterr().err
    text = metrics.read_bytes()
    assert b"\0" not in text and text.startswith(first)
    assert [orjson.loads(line)["step"] for line in text.splitlines()] == [1, 5, 6, 6]   # the cut line dropped


# -- issue 13: the loop's TrainState is what state.json holds -------------------------------------

def test_state_json_holds_the_train_state(baseline):
    import dataclasses

    from nerkd.train.loop import TrainState

    _, result, out = baseline
    saved = checkpoint.read_state(out / "checkpoints/last")
    assert saved.keys() == {f.name for f in dataclasses.fields(TrainState)} | {"rng"}
    state = TrainState.from_json(saved, out)
    assert (state.epoch, state.pos, state.step, state.finished) == (3, 0, result.steps, True)
    assert state.best_f1 == result.best_f1 and same(state.history, result.history)


def test_an_older_state_json_fails_in_one_line_or_resumes_without_fingerprint(tiny_bio, data, baseline, tmp_path,
                                                                              capsys):
    _, ref, out = baseline
    run_dir = tmp_path / "run"
    shutil.copytree(out, run_dir)
    path = run_dir / "checkpoints/last/state.json"
    saved = orjson.loads(path.read_bytes())
    path.write_bytes(orjson.dumps({k: v for k, v in saved.items() if k not in ("metrics_bytes", "epoch_sums")}))
    with pytest.raises(TrainingError, match=r"state\.json lacks metrics_bytes, epoch_sums \(written by another nerkd "
                                            r"version\); start a new run without --resume$") as err:
        run(tiny_bio, data, run_dir, resume=True)
    assert "\n" not in str(err.value)
    path.write_bytes(orjson.dumps({k: v for k, v in saved.items() if k != "fingerprint"}))   # before issue 12
    capsys.readouterr()
    obj, result = run(tiny_bio, data, run_dir, resume=True)
    assert obj.calls == 0 and result.steps == ref.steps
    assert "predates run fingerprints" in capsys.readouterr().err


def test_a_run_resumed_on_other_ranks_saves_its_own_world_size(tiny_bio, data, tmp_path, capsys):
    with pytest.raises(RuntimeError, match="injected crash"):
        run(tiny_bio, data, tmp_path, objective_kw={"crash_at": 9})
    path = tmp_path / "checkpoints/last/state.json"
    saved = orjson.loads(path.read_bytes())
    path.write_bytes(orjson.dumps({**saved, "world_size": 2, "rng": saved["rng"] * 2}))   # as if saved by 2 ranks
    capsys.readouterr()
    obj, result = run(tiny_bio, data, tmp_path, resume=True)
    assert "saved with 2 ranks: RNG reseeded" in capsys.readouterr().err
    assert obj.calls == 4 and result.steps == 6
    assert orjson.loads(path.read_bytes())["world_size"] == 1   # the checkpoints of this run are its own


def test_an_optimiser_state_that_does_not_fit_fails_in_one_line(tiny_bio, data, baseline, tmp_path):
    # e.g. a checkpoint saved when a layer pruned empty still had a zero-size weight parameter
    _, _, out = baseline
    shutil.copytree(out, tmp_path / "run")
    path = tmp_path / "run/checkpoints/last/train_state.pt"
    blob = torch.load(path, weights_only=True)
    groups = blob["optimizer"]["param_groups"]
    groups[0]["params"].append(max(p for g in groups for p in g["params"]) + 1)
    torch.save(blob, path)
    with pytest.raises(TrainingError, match=r"train_state\.pt: cannot resume from this checkpoint: its optimiser "
                                            r"state does not fit this model's trainable parameters") as err:
        run(tiny_bio, data, tmp_path / "run", resume=True)
    assert "\n" not in str(err.value)


# -- issue 10: resume stays exact with an unlabelled transfer set -----------------------------------------------------

def distill_objective(folder, crash_at=None, cache=False):
    """Distillation of the tiny BIO model into a copy of itself (same tokenizer), counting (and crashing at) the
    calls of both its losses: gold and unlabelled."""
    from nerkd.data.labels import type_mapping
    from nerkd.settings import DistillSettings
    from nerkd.train.kd import DistillObjective

    class Counting(DistillObjective):
        calls = 0

        def _count(self):
            self.calls += 1
            if self.calls == crash_at:
                raise RuntimeError("injected crash")

        def loss(self, batch, epoch):
            self._count()
            return super().loss(batch, epoch)

        def unlabeled_loss(self, batch, epoch, keys=None):
            self._count()
            return super().unlabeled_loss(batch, epoch, keys)

    teacher, student = NerModel.load(folder), NerModel.load(folder)
    settings = DistillSettings(layer_map={"teacher": [1, 2], "student": [1, 2]}, cache_teacher=cache,
                               phases=[{"from_epoch": 1, "weights": [1, 0.5, 0.1, 0]},
                                       {"from_epoch": 2, "weights": [1, 1, 0.2, 0]}])
    return Counting(student, teacher, type_mapping(teacher.labels, student.labels), settings)


def unlabeled_run(folder, data, out, tmp_path, crash_at=None, cache=False, resume=False):
    from nerkd.data.unlabeled import EpochSampler, scan_unlabeled
    from nerkd.train.transfer import TransferSet

    tok, windows, dev = data
    path = tmp_path.parent / "u.txt"
    if not path.exists():
        path.write_text("\n".join((DATA / "unlabeled.txt").read_text(encoding="utf-8").splitlines()[:20]) + "\n",
                        encoding="utf-8")
    # 12 texts per epoch over a set of 20: epoch 2 cycles into the second pass (and the cache is used)
    transfer = TransferSet(EpochSampler(scan_unlabeled(path), seed=42), 12, 32, 8, cache_teacher=cache)
    obj = distill_objective(folder, crash_at, cache)
    result = train(obj, tok, windows, dev, make_settings(), out, stage="test", resume=resume, unlabeled=transfer)
    return obj, result


@pytest.mark.parametrize("cache", [False, True], ids=["on-the-fly", "teacher-cache"])
def test_resume_with_an_unlabelled_set_ends_with_the_same_weights(tiny_bio, data, tmp_path, cache, one_thread):
    ref_obj, ref = unlabeled_run(tiny_bio, data, tmp_path / "ref", tmp_path, cache=cache)
    summary = orjson.loads((tmp_path / "ref/train_summary.json").read_bytes())["unlabeled"]
    u_batches = summary["batches_per_epoch"]
    assert (summary["teacher_cache"] or {}).get("rows_from_cache", 0) > 0 if cache else summary["teacher_cache"] is None
    assert len(u_batches) == 2 and min(u_batches) >= 3          # 12 texts (some split) in batches of 4
    n1 = 6 + u_batches[0]                                        # micro-batches of epoch 1
    assert ref_obj.calls == n1 + 6 + u_batches[1]
    # crash at the 5th micro-batch of epoch 2, after the checkpoint of an even step inside it
    with pytest.raises(RuntimeError, match="injected crash"):
        unlabeled_run(tiny_bio, data, tmp_path / "run", tmp_path, crash_at=n1 + 5, cache=cache)
    state = orjson.loads((tmp_path / "run/checkpoints/last/state.json").read_bytes())
    assert state["epoch"] == 2 and 0 < state["pos"] < 5
    assert state["unlabeled"]["consumed"] == 12 and state["unlabeled"]["texts"] == 20
    obj, result = unlabeled_run(tiny_bio, data, tmp_path / "run", tmp_path, cache=cache, resume=True)
    assert obj.calls == ref_obj.calls - n1 - state["pos"]      # only what was left was trained
    assert result.steps == ref.steps
    assert states_equal(obj.model, ref_obj.model)               # exact: the same batches, teacher outputs and RNG
    assert states_equal(NerModel.load(tmp_path / "run"), NerModel.load(tmp_path / "ref"))
    assert result.best_f1 == ref.best_f1 and same(result.history, ref.history)
    assert {"u_kd", "u_hidden", "u_loss"} <= set(result.history[1])

    def strip(lines):
        return [{k: v for k, v in line.items() if k != "tokens_per_s"} for line in lines]

    assert same(strip(read_metrics(tmp_path / "run")), strip(read_metrics(tmp_path / "ref")))
