"""Throughput of one distillation training step (tokens/s), on random-weight models (no download).

A step is what ``nerkd distill`` runs per batch: teacher forward (no grad, hidden states), student
forward + backward with the four losses (CE or CRF NLL, KD over the shared IO/BIO type space,
hidden-state cosine, CRF transitions), gradient clipping and AdamW (fused on CUDA). Models are
CamemBERT-shaped token classifiers: an IO teacher (5 labels) and a student built from its layers
with BIO labels (7), both with a CRF unless ``--no-crf``. Batches are built up front and moved to
the device before timing; tokens/s counts real (non-padding) sub-words.

Modes: ``plain`` (128 sentences per batch in file order, padded to the longest), ``bucketed``
(length-bucketed batches of ~``--max-tokens`` padded sub-words, no host sync inside the step),
and with ``--compile`` ``compiled`` (student and teacher encoders under ``torch.compile``, as
``train.compile`` does, on static bucket shapes: widths rounded up to multiples of 32, fixed rows
per width; the first pass over each shape is reported separately as compile time).

With ``--unlabeled``, the bucketed batches are also trained as *unlabelled* batches of ``data.unlabeled``
(same shapes, every label ignored: ``DistillObjective.unlabeled_loss``, KD on the word starts + hidden
states, no CE/CRF), mode ``unlabeled``, and again with the teacher cache (``distill.cache_teacher``),
mode ``cached``: the teacher's outputs for every window are computed once (reported as fill time, the
cache's cost in the first epoch) and every timed step reads them, as epochs 2+ of a run do. The last
line compares ``unlabeled`` with ``bucketed`` (gold) and ``cached`` with ``unlabeled``.

    python benchmarks/distill_throughput.py --preset tiny --device cpu --steps 5
    python benchmarks/distill_throughput.py --preset base --device cuda --precision bf16 --steps 30 --compile
    python benchmarks/distill_throughput.py --preset base --data ../shared/data/wikineural-fr/val.conllu
    python benchmarks/distill_throughput.py --preset minilm --device cpu --unlabeled --steps 10
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import orjson
import torch

from nerkd.data.encode import Window, bucket_batches, collate
from nerkd.data.labels import LabelSpace, type_mapping
from nerkd.device import autocast, resolve_precision
from nerkd.models.ner import NerModel
from nerkd.models.scratch import tiny_config
from nerkd.models.student import default_layers, student_from_teacher
from nerkd.settings import DistillSettings
from nerkd.train.kd import DistillObjective
from nerkd.train.optim import optimizer_step
from nerkd.train.transfer import TeacherCache, cache_dtype

PRESETS = {  # teacher layers, hidden, heads, intermediate, vocab -> student layers
    "base": dict(layers=12, hidden=768, heads=12, inter=3072, vocab=32005, student=10),
    "minilm": dict(layers=6, hidden=384, heads=12, inter=1536, vocab=32005, student=3),
    "tiny": dict(layers=4, hidden=64, heads=4, inter=256, vocab=1000, student=2),
}
IO = LabelSpace(("O", "I-LOC", "I-PER", "I-MISC", "I-ORG"))
BIO = LabelSpace(("O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"))
MAX_LENGTH = 128


def build_objective(preset: dict, crf: bool, seed: int = 0) -> DistillObjective:
    torch.manual_seed(seed)
    cfg = tiny_config(preset["vocab"], list(IO.labels), layers=preset["layers"], hidden=preset["hidden"],
                      heads=preset["heads"], intermediate=preset["inter"], max_positions=512)
    teacher = NerModel.from_config(cfg, crf=crf)
    kept = default_layers(preset["layers"], preset["student"])
    student = student_from_teacher(teacher, kept, BIO, crf=crf)
    pairs = default_layers(preset["student"], min(6, preset["student"]))   # student layers, last one included
    settings = DistillSettings(
        temperature=2.5, layer_map={"teacher": [kept[j - 1] for j in pairs], "student": pairs},
        phases=[{"from_epoch": 1, "weights": {"ce": 1.0, "kd": 1.0, "hidden": 0.2, "crf": 0.2}}])
    return DistillObjective(student, teacher, type_mapping(IO, BIO), settings)


def synthetic_windows(n: int, vocab: int, mean: int, seed: int = 0) -> list[Window]:
    """``n`` sentences of ~``mean`` sub-words (normal, sd mean/3), ~75% of them word starts."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = max(4, min(MAX_LENGTH - 2, round(rng.gauss(mean, mean / 3))))
        ids = [0] + [rng.randrange(5, vocab) for _ in range(k)] + [2]
        labels = [-100] + [(0 if rng.random() < 0.8 else rng.randrange(1, len(BIO))) if rng.random() < 0.75
                           else -100 for _ in range(k)] + [-100]
        labels[1] = labels[1] if labels[1] != -100 else 0
        starts = [j for j, lab in enumerate(labels) if lab != -100]   # word starts: the KD positions of both kinds
        word_index = [-1] * len(ids)
        for n, j in enumerate(starts):
            word_index[j] = n
        out.append(Window(i, ids, word_index, labels))
    return out


def file_windows(path: str, vocab: int, tokenizer_ref: str | None) -> list[Window]:
    """Real sentences: tokenised with ``tokenizer_ref`` or a Unigram tokenizer trained on the file."""
    from nerkd.data.dataset import read_split, tag_ids
    from nerkd.data.encode import encode
    from nerkd.settings import DataSettings

    split = read_split("bench", path, DataSettings())
    if tokenizer_ref:
        from nerkd.models.ner import load_tokenizer

        tok = load_tokenizer(tokenizer_ref)
    else:
        from nerkd.models.scratch import train_tokenizer

        tok = train_tokenizer([" ".join(s.tokens) for s in split.sentences], min(vocab, 8000))
    space = LabelSpace.build([t for t in BIO.types], "BIO")
    known = set(space.types)
    for s in split.sentences:   # types outside PER/LOC/ORG (e.g. MISC) count as O here
        s.tags = [t if t == "O" or t.split("-", 1)[1] in known else "O" for t in s.tags]
    windows = encode(tok, [s.tokens for s in split.sentences], tag_ids(split, space), MAX_LENGTH, 16)
    if max(max(w.input_ids) for w in windows) >= vocab:
        raise SystemExit(f"tokenizer ids exceed the preset's vocab ({vocab})")
    return windows


def static_batches(windows: list[Window], max_tokens: int, pad_id: int) -> list[tuple[dict, int]]:
    """Buckets padded to fixed shapes: width a multiple of 32, ``max_tokens // width`` rows (filler
    rows hold one attended pad token, so no row is fully masked; they are not counted as tokens)."""
    groups: dict[int, list[Window]] = {}
    for w in windows:
        groups.setdefault(-(-len(w) // 32) * 32, []).append(w)
    out = []
    for width, ws in sorted(groups.items()):
        rows = max(1, max_tokens // width)
        for i in range(0, len(ws), rows):
            chunk = ws[i : i + rows]
            filler = [Window(-1, [pad_id], [-1], [-100])] * (rows - len(chunk))
            out.append((collate(chunk + filler, pad_id, pad_to=width), sum(len(w) for w in chunk)))
    return out


def make_batches(mode: str, windows: list[Window], batch_size: int, max_tokens: int,
                 pad_id: int) -> list[tuple[dict, int]]:
    """``(batch, real sub-words)`` pairs for ``mode``."""
    if mode == "plain":
        groups = [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
        return [(collate(g, pad_id), sum(len(w) for w in g)) for g in groups]
    if mode in ("bucketed", "unlabeled", "cached"):   # the same batches; unlabelled: every label ignored
        if mode != "bucketed":
            windows = [Window(w.sent, w.input_ids, w.word_index, [-100] * len(w)) for w in windows]
        idx = bucket_batches([len(w) for w in windows], 1 << 30, max_tokens, shuffle=True, seed=0)
        return [(collate([windows[i] for i in b], pad_id, pad_to=8), sum(len(windows[i]) for i in b)) for b in idx]
    return static_batches(windows, max_tokens, pad_id)


class StepTimer:
    """Per-step wall times: CUDA events (read once at the end) or ``perf_counter`` on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.marks.append(ev)
        else:
            self.marks.append(time.perf_counter())

    def seconds(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) / 1000 for a, b in zip(self.marks, self.marks[1:], strict=False)]
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


def run_mode(mode: str, objective: DistillObjective, batches: list[tuple[dict, int]], args, device,
             precision) -> dict:
    model, extras = objective.model, objective.trainable_extras()
    params = [p for m in (model, *extras) for p in m.parameters() if p.requires_grad]
    fused = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.AdamW(params, lr=1e-5, **fused)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    if mode == "compiled":   # as `nerkd distill --set train.compile=true`: both encoders compiled, losses eager
        objective.forward_model = torch.compile(model, dynamic=False)
        objective.teacher_forward = torch.compile(objective.teacher, dynamic=False)
    else:
        objective.forward_model, objective.teacher_forward = model, objective.teacher
    real = [n for _, n in batches]
    keys = [[(int(s), 0) for s in b["sent"]] for b, _ in batches]   # one window per sentence: (ordinal, rank 0)
    batches = [{k: v.to(device, non_blocking=True) for k, v in b.items()} for b, _ in batches]
    unlabeled = mode in ("unlabeled", "cached")
    fill_s = fill_cache(objective, batches, device, precision) if mode == "cached" else None

    def step(i):
        with autocast(device, precision):
            if unlabeled:
                total, _ = objective.unlabeled_loss(batches[i], 1, keys[i])
            else:
                total, _ = objective.loss(batches[i], 1)
        (scaler.scale(total) if scaler is not None else total).backward()
        optimizer_step(opt, scaler, params, 1.0)   # the loop's own step

    model.train()
    compile_s = None
    if mode == "compiled":   # one pass over every distinct shape = compilation
        shapes = {}
        for i, b in enumerate(batches):
            shapes.setdefault(tuple(b["input_ids"].shape), i)
        t0 = time.perf_counter()
        for i in shapes.values():
            step(i)
        if device.type == "cuda":
            torch.cuda.synchronize()
        compile_s = time.perf_counter() - t0
    order = [i % len(batches) for i in range(args.warmup + args.steps)]
    for i in order[: args.warmup]:
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    timer = StepTimer(device)
    timer.mark()
    for i in order[args.warmup :]:
        step(i)
        timer.mark()
    secs = timer.seconds()
    toks = [real[i] for i in order[args.warmup :]]
    per_step = [t / s for t, s in zip(toks, secs, strict=True)]
    shapes = [tuple(batches[i]["input_ids"].shape) for i in order[args.warmup :]]
    return {
        "mode": mode, "tokens_per_s": round(statistics.median(per_step), 1),
        "tokens_per_s_mean": round(sum(toks) / sum(secs), 1), "step_ms": round(1000 * statistics.median(secs), 2),
        "tokens_per_step": round(statistics.mean(toks), 1),
        "padding": round(1 - sum(toks) / sum(r * c for r, c in shapes), 3),
        "batches": len(batches), "compile_s": None if compile_s is None else round(compile_s, 2),
        "peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
        "cache": None if fill_s is None else {"fill_s": round(fill_s, 2), "mib": round(objective.teacher_cache.bytes
                                                                                        / 2**20, 1)},
    }


def fill_cache(objective: DistillObjective, batches: list[dict], device, precision: str) -> float:
    """The teacher cache of every window of ``batches`` (as ``nerkd.train.transfer.fill_cache`` builds it
    before epoch 1); returns the seconds it took."""
    cache = TeacherCache(cache_dtype(precision))
    t0 = time.perf_counter()
    for b in batches:
        with torch.no_grad(), autocast(device, precision):
            logits, hidden = objective.teacher_targets(b["input_ids"], b["attention_mask"])
        stacked = torch.stack(hidden)
        lengths = b["attention_mask"].sum(1).tolist()
        for row, (sent, n) in enumerate(zip(b["sent"].tolist(), lengths, strict=True)):
            cache.add((sent, 0), logits[row, :n], stacked[:, row, :n])
    if device.type == "cuda":
        torch.cuda.synchronize()
    objective.teacher_cache = cache
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per mode")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--sentences", type=int, default=2048, help="synthetic sentences in the pool")
    ap.add_argument("--mean-len", type=int, default=40, help="mean sub-words per synthetic sentence")
    ap.add_argument("--data", help="real sentences (jsonl/conll/spans) instead of synthetic ones")
    ap.add_argument("--tokenizer", help="tokenizer folder for --data (default: Unigram trained on the file)")
    ap.add_argument("--batch-size", type=int, default=128, help="sentences per batch in plain mode")
    ap.add_argument("--max-tokens", type=int, default=16384, help="padded sub-words per bucketed batch")
    ap.add_argument("--modes", default="plain,bucketed")
    ap.add_argument("--compile", action="store_true", help="also run the compiled mode")
    ap.add_argument("--no-crf", action="store_true", help="no CRFs: plain CE and no CRF-transition loss")
    ap.add_argument("--unlabeled", action="store_true",
                    help="also the bucketed batches as unlabelled batches, without and with the teacher cache")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    preset = PRESETS[args.preset]
    objective = build_objective(preset, crf=not args.no_crf).to(device)
    if args.data:
        windows = file_windows(args.data, preset["vocab"], args.tokenizer)
    else:
        windows = synthetic_windows(args.sentences, preset["vocab"], args.mean_len)
    modes = [m for m in args.modes.split(",") if m] + (["compiled"] if args.compile else [])
    if args.unlabeled:
        modes = [m for m in modes if m not in ("bucketed", "unlabeled", "cached")] + ["bucketed", "unlabeled", "cached"]
    s, t = objective.model, objective.teacher
    print(f"# preset {args.preset}: teacher {t.num_layers}L/{t.hidden_size}h ({t.num_parameters() / 1e6:.1f}M) -> "
          f"student {s.num_layers}L ({s.num_parameters() / 1e6:.1f}M); {args.device} {precision}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; {len(windows)} sentences, "
          f"mean {statistics.mean(len(w) for w in windows):.1f} sub-words; losses ce"
          f"{'(crf nll)' if objective.use_crf else ''}+kd+hidden{'+crf' if objective.use_crf else ''}", flush=True)
    results = []
    for mode in modes:
        batches = make_batches(mode, windows, args.batch_size, args.max_tokens, 1)
        results.append(run_mode(mode, objective, batches, args, device, precision))
        objective.teacher_cache = None
        r = results[-1]
        print(f"{mode:>9}: {r['tokens_per_s']:>10,.0f} tok/s (median)  {r['step_ms']:>9.1f} ms/step  "
              f"{r['tokens_per_step']:>8.0f} tok/step  padding {100 * r['padding']:4.1f}%"
              + (f"  compile {r['compile_s']:.1f} s" if r["compile_s"] is not None else "")
              + (f"  cache filled in {r['cache']['fill_s']:.1f} s, {r['cache']['mib']:.0f} MiB" if r["cache"] else "")
              + (f"  peak {r['peak_mem_mb']:.0f} MiB" if r["peak_mem_mb"] is not None else ""), flush=True)
    by_mode = {r["mode"]: r for r in results}
    if args.unlabeled:
        gold, unl, cached = (by_mode[m]["tokens_per_s"] for m in ("bucketed", "unlabeled", "cached"))
        epoch_s = sum(len(w) for w in windows) / unl   # one uncached pass over the pool
        fill_s = by_mode["cached"]["cache"]["fill_s"]
        print(f"# unlabelled vs gold batches: {unl / gold:.2f}x (target 0.90-1.10); cached vs uncached unlabelled "
              f"(epochs 2+): {cached / unl:.2f}x (target >= 1.30); cache fill {fill_s:.1f} s = "
              f"{fill_s / epoch_s:.0%} of one uncached epoch over the pool", flush=True)
    print(orjson.dumps({"bench": "distill_throughput", "preset": args.preset, "device": args.device,
                        "precision": precision, "steps": args.steps, "warmup": args.warmup,
                        "threads": torch.get_num_threads(), "torch": torch.__version__,
                        "crf": objective.use_crf, "data": args.data or "synthetic", "results": results}).decode())


if __name__ == "__main__":
    main()
