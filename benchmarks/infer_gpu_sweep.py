#!/usr/bin/env python
"""Where the time of ``nerkd infer`` goes on a GPU, and which batch settings are fastest.

Same model and sentences as ``infer_vs_pipeline.py`` (random CamemBERT-base-shaped IO tagger,
WikiNEuRal-fr sentences). In one run:

* the transformers pipeline (simple aggregation), batch 64: the reference rate;
* the plain forward on the pipeline's raw-text ids in ``--precision`` (weights cast), no
  tokenising, no decoding: the bound set by the model alone;
* nerkd's engine in ``--precision`` for every batch size x chunk size x overlap on/off;
* the engine's stages timed apart (words -> sub-words -> batches, forward, decoding);
* ``nerkd infer`` end to end as a user runs it (a subprocess, file in, JSONL out, model loading
  included) on ``--cli-repeat`` copies of the sentences.

Each rate is the median of ``--repeat`` timed passes after one warm-up pass.

    python benchmarks/infer_gpu_sweep.py --data ../shared/data/wikineural-fr/val.conllu --device cuda
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import orjson  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from infer_vs_pipeline import DEFAULT_DATA, build_random_model  # noqa: E402

from nerkd.data.encode import bucket_batches, collate, encode  # noqa: E402
from nerkd.data.readers import read_sentences  # noqa: E402
from nerkd.data.words import split_words  # noqa: E402
from nerkd.device import DTYPES  # noqa: E402
from nerkd.infer import Engine, detokenize  # noqa: E402
from nerkd.infer.engine import _Chunk  # noqa: E402
from nerkd.models.ner import NerModel, load_tokenizer  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeat: int, device: torch.device) -> float:
    """Median seconds of ``repeat`` calls after one warm-up call."""
    fn()
    sync(device)
    secs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        secs.append(time.perf_counter() - t0)
    return statistics.median(secs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--batch-sizes", default="64,128,256,512")
    ap.add_argument("--chunk-sizes", default="512,2048")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cli-repeat", type=int, default=10, help="copies of the sentences fed to `nerkd infer`")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--entity-rate", type=float, default=0.12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = torch.device(args.device)
    sents, _ = read_sentences(args.data, "conll")
    all_texts = [detokenize(s.tokens) for s in sents]
    texts = all_texts[: args.sentences]
    n_words = sum(len(split_words(t)) for t in texts)
    work = Path(tempfile.mkdtemp(prefix="nerkd-sweep-"))
    folder = work / "base"
    build_random_model(args, all_texts, folder)
    tokenizer = load_tokenizer(folder)
    rows: list[dict] = []

    def add(name: str, seconds: float, words: int = n_words, **extra) -> None:
        rows.append({"system": name, "words_per_s": round(words / seconds), "seconds": round(seconds, 4), **extra})
        print(f"  {name}: {words / seconds:,.0f} words/s", file=sys.stderr, flush=True)

    # reference: the pipeline, batch 64
    from transformers import pipeline

    model = NerModel.load(folder).to(device).eval()
    pipe = pipeline("token-classification", model=model.encoder_model, tokenizer=tokenizer,
                    aggregation_strategy="simple", device=device)
    add("pipeline (simple), batch 64, fp32", timed(lambda: pipe(texts, batch_size=64), args.repeat, device))

    # bound: plain forward on raw-text ids, weights cast
    ids = sorted((tokenizer(t)["input_ids"] for t in texts), key=len)
    if args.precision != "fp32" and device.type == "cuda":
        model.encoder_model.to(DTYPES[args.precision])
    for bs in (64, 256):
        batches = []
        for k in range(0, len(ids), bs):
            rows_ = ids[k: k + bs]
            w = max(map(len, rows_))
            batches.append((torch.tensor([r + [tokenizer.pad_token_id] * (w - len(r)) for r in rows_], device=device),
                            torch.tensor([[1] * len(r) + [0] * (w - len(r)) for r in rows_], device=device)))

        @torch.inference_mode()
        def forward_only(batches=batches):
            for x, m in batches:
                model(x, m).logits.argmax(-1)

        add(f"plain forward {args.precision}, batch {bs} (ids ready on the GPU)",
            timed(forward_only, args.repeat, device))
    model.cpu()

    # nerkd engine sweep
    best = None
    for bs, chunk, overlap in itertools.product([int(x) for x in args.batch_sizes.split(",")],
                                                [int(x) for x in args.chunk_sizes.split(",")], (True, False)):
        engine = Engine.load(folder, device=args.device, precision=args.precision, batch_size=bs, chunk_size=chunk,
                             overlap=overlap, max_length=512, stride=128, max_tokens=0)
        sec = timed(lambda engine=engine: engine.predict(texts), args.repeat, device)
        add(f"nerkd {args.precision}, batch {bs}, chunk {chunk}, overlap {'on' if overlap else 'off'}", sec,
            batch=bs, chunk=chunk, overlap=overlap)
        if best is None or sec < best[0]:
            best = (sec, bs, chunk, overlap)
        del engine

    # stages of the default engine (as `nerkd infer` builds it)
    engine = Engine.load(folder, device=args.device, precision=args.precision, max_length=512, stride=128)
    engine.predict(texts)
    word_lists = [[w for w, _, _ in split_words(t)] for t in texts]
    stages = {
        "split into words": timed(lambda: [split_words(t) for t in texts], args.repeat, device),
        "words -> sub-word windows (cached pieces)": timed(
            lambda: encode(engine.tokenizer, word_lists, None, engine.max_length, engine.stride,
                           cache=engine.pieces), args.repeat, device),
    }
    windows = encode(engine.tokenizer, word_lists, None, engine.max_length, engine.stride, cache=engine.pieces)
    order = bucket_batches([len(w) for w in windows], engine.batch_size, engine.max_tokens)
    stages["windows -> padded batches (collate)"] = timed(
        lambda: [collate([windows[i] for i in idx], engine.pad_id) for idx in order], args.repeat, device)
    batches = [collate([windows[i] for i in idx], engine.pad_id) for idx in order]

    @torch.inference_mode()
    def fwd():
        for b in batches:
            engine.model(b["input_ids"].to(device), b["attention_mask"].to(device)).logits.argmax(-1)

    stages[f"forward only, batch {engine.batch_size} (host->device copies included)"] = timed(fwd, args.repeat, device)
    chunk = _Chunk(texts, [split_words(t) for t in texts], engine._launch_scores(word_lists))
    stages["decoding + entity spans (logits ready)"] = timed(lambda: engine._finish(chunk), args.repeat, device)
    stages["whole engine.predict"] = timed(lambda: engine.predict(texts), args.repeat, device)
    for k, v in stages.items():
        print(f"  stage {k}: {v * 1000:.1f} ms = {n_words / v:,.0f} words/s", file=sys.stderr, flush=True)

    # nerkd infer, end to end, as a user runs it
    src = work / "in.txt"
    src.write_text("\n".join(texts * args.cli_repeat) + "\n", encoding="utf-8")
    cli = {}
    for extra in ([], ["--batch-size", "64"]):
        cmd = [sys.executable, "-m", "nerkd", "infer", "--model", str(folder), "--device", args.device,
               "--precision", args.precision, "-i", str(src), "-o", str(work / "out.jsonl"), *extra]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        lines = (work / "out.jsonl").read_bytes().count(b"\n") if res.returncode == 0 else 0
        summary = [x for x in res.stderr.splitlines() if "words/s" in x]
        name = "nerkd infer CLI" + (f" {' '.join(extra)}" if extra else " (defaults)")
        cli[name] = {"rc": res.returncode, "wall_s": round(wall, 2), "lines": lines,
                     "words": n_words * args.cli_repeat, "words_per_s_wall": round(n_words * args.cli_repeat / wall),
                     "own_summary": summary[-1].strip() if summary else res.stderr[-300:]}
        print(f"  {name}: {cli[name]}", file=sys.stderr, flush=True)

    ref = rows[0]["words_per_s"]
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"\n{dev_name}, torch {torch.__version__}, {len(texts)} sentences, {n_words} words, median of {args.repeat}")
    print("\n| system | words/s | x pipeline batch 64 |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['system']} | {r['words_per_s']:,} | {r['words_per_s'] / ref:.2f} |")
    print("\n| stage (default engine) | ms | words/s |\n|---|---:|---:|")
    for k, v in stages.items():
        print(f"| {k} | {v * 1000:.1f} | {n_words / v:,.0f} |")
    print("\n| end to end (`nerkd infer -i file -o file`, process start and model load included) | lines | wall s "
          "| words/s (wall) | x pipeline batch 64 | its own summary line |\n|---|---:|---:|---:|---:|---|")
    for k, v in cli.items():
        print(f"| {k} | {v['lines']} | {v['wall_s']} | {v['words_per_s_wall']:,} | {v['words_per_s_wall'] / ref:.2f} "
              f"| {v['own_summary']} |")
    if args.json:
        args.json.write_bytes(orjson.dumps({"device": dev_name, "torch": torch.__version__, "words": n_words,
                                            "rows": rows, "stages": stages, "cli": cli, "best": best},
                                           option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
