"""DDP: two gloo processes on CPU end with the same weights as one process on the same global batch."""

from __future__ import annotations

import os
import random
import socket

import orjson
import pytest
import torch

from nerkd.data.encode import Window

SETS = ["train.batch_size=8", "train.epochs=2", "train.lr=1e-3", "train.patience=0", "train.log_every=2",
        "train.warmup_ratio=0.25", "train.device=cpu", "train.seed=3"]


def synthetic(num_labels: int, vocab: int, n: int, seed: int, length: int = 16) -> list[Window]:
    """Windows of one length with every inner position labelled: each rank's half of a batch has
    as many labelled tokens as the other, so the mean of per-rank means is the global mean."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ids = [0] + [rng.randrange(5, vocab) for _ in range(length - 2)] + [2]
        labels = [-100] + [rng.randrange(num_labels) for _ in range(length - 2)] + [-100]
        out.append(Window(i, ids, [-1] + list(range(length - 2)) + [-1], labels))
    return out


def train_once(model_dir: str, out: str) -> None:
    """One training run (a single process, or one rank under a torchrun-like environment)."""
    from nerkd.models.ner import NerModel, load_tokenizer
    from nerkd.settings import load_settings
    from nerkd.train import CEObjective, DevSet, train

    model = NerModel.load(model_dir)
    for m in model.modules():          # dropout off: ranks and the single run draw different masks
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    tok = load_tokenizer(model_dir)
    windows = synthetic(model.num_labels, model.config.vocab_size, 16, seed=0)
    dev_windows = synthetic(model.num_labels, model.config.vocab_size, 4, seed=1)
    gold = [[model.labels.labels[t] for t in w.labels if t != -100] for w in dev_windows]
    dev = DevSet(dev_windows, gold, [len(g) for g in gold])
    train(CEObjective(model), tok, windows, dev, load_settings(None, SETS), out, stage="ddp")


def _rank(rank: int, world: int, port: int, model_dir: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), NERKD_NO_PROGRESS="1", HF_HUB_OFFLINE="1")
    torch.set_num_threads(1)
    train_once(model_dir, out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_and_compare(model_dir, tmp_path, monkeypatch) -> None:
    """Train once in one process and once on two gloo ranks; both must end with the same weights."""
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    single, multi = tmp_path / "single", tmp_path / "ddp"
    train_once(str(model_dir), str(single))
    mp.spawn(_rank, args=(2, free_port(), str(model_dir), str(multi)), nprocs=2, join=True)

    a = load_file(str(single / "checkpoints/last/model.safetensors"))
    b = load_file(str(multi / "checkpoints/last/model.safetensors"))
    start = load_file(str(model_dir / "model.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("crf.") for k in a)
    moved = [k for k in start if not torch.equal(start[k], a["encoder_model." + k])]
    assert len(moved) > len(start) // 2                                    # training did change the weights
    worst = max((a[k] - b[k]).abs().max().item() for k in a if a[k].numel())
    assert worst < 1e-5, f"largest weight difference {worst:.2e}"          # encoder via DDP, CRF via all-reduce

    sa = orjson.loads((single / "train_summary.json").read_bytes())
    sb = orjson.loads((multi / "train_summary.json").read_bytes())
    assert sb["world_size"] == 2 and sb["duplicated_rows"] == 0 and sb["steps"] == sa["steps"] == 4
    assert sb["best_f1"] == pytest.approx(sa["best_f1"])
    la = [x["loss"] for x in map(orjson.loads, (single / "metrics.jsonl").read_bytes().splitlines())]
    lb = [x["loss"] for x in map(orjson.loads, (multi / "metrics.jsonl").read_bytes().splitlines())]
    assert lb == pytest.approx(la, rel=1e-5)                               # losses gathered over both ranks


def test_two_gloo_ranks_match_one_process(tiny_crf, tmp_path, monkeypatch):
    spawn_and_compare(tiny_crf, tmp_path, monkeypatch)


def test_a_layer_pruned_empty_trains_under_ddp(tiny_crf, tmp_path, monkeypatch):
    """A layer that lost every head has no zero-size parameter (DDP would wait for its gradient
    forever) and needs no private DDP call: two ranks still match one process."""
    from nerkd.models.ner import NerModel, load_tokenizer
    from nerkd.prune.apply import remove_heads

    model = NerModel.load(tiny_crf)
    remove_heads(model, [(1, h) for h in range(4)])
    assert model.heads == [4, 0] and all(p.numel() for p in model.parameters())
    model.save(tmp_path / "pruned", tokenizer=load_tokenizer(tiny_crf))
    spawn_and_compare(tmp_path / "pruned", tmp_path, monkeypatch)


def _fill_rank(rank: int, world: int, port: int, teacher_dir: str, notes: str, out: str) -> None:
    """One rank (or, with ``world`` 1, the single process) fills a teacher cache; writes it and its rows run."""
    from safetensors.torch import save_file

    from nerkd.train import ddp
    from nerkd.train.transfer import TeacherCache, fill_cache
    from tests.test_distill_unlabeled import objective, transfer

    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                          LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    env = ddp.detect()
    _, started = ddp.setup(env, "cpu")
    obj = objective(teacher_dir, crf=False, layers=(2, 4), student_layers=(2, 4))
    rows = []

    def compute(ids, att):
        rows.append(ids.shape[0])
        return obj.teacher_targets(ids, att)

    from nerkd.models.ner import load_tokenizer

    cache = TeacherCache(torch.float16)
    fill_cache(cache, transfer(notes), load_tokenizer(teacher_dir), compute, torch.device("cpu"), "fp32", 4, None,
               None, env)
    tensors = {f"{a}_{b}_{part}": t for (a, b), pair in cache.store.items() for part, t in zip("lh", pair, strict=True)}
    tensors["rows_run"] = torch.tensor([sum(rows)])
    save_file(tensors, str(os.path.join(out, f"cache_{world}_{rank}.safetensors")))
    if started:
        ddp.teardown()


def test_teacher_cache_fill_is_shared_by_the_ranks(tiny_io_teacher, tmp_path, monkeypatch):
    """Under DDP each rank runs the teacher on its share of the windows only, and every rank ends with the
    cache a single process fills (same keys, same fp16 values)."""
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    from tests.test_distill_unlabeled import NOTES, write_lines

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    notes = write_lines(tmp_path / "u.txt", NOTES[:20])
    _fill_rank(0, 1, 0, str(tiny_io_teacher), str(notes), str(tmp_path))
    mp.spawn(_fill_rank, args=(2, free_port(), str(tiny_io_teacher), str(notes), str(tmp_path)), nprocs=2, join=True)
    single = load_file(str(tmp_path / "cache_1_0.safetensors"))
    ranks = [load_file(str(tmp_path / f"cache_2_{r}.safetensors")) for r in range(2)]
    total = int(single.pop("rows_run"))
    shares = [int(r.pop("rows_run")) for r in ranks]
    assert len(single) > 20 and sum(shares) == total and all(0 < s < total for s in shares), (total, shares)
    for cache in ranks:
        assert cache.keys() == single.keys()
        assert all(torch.equal(cache[k], single[k]) for k in single)
