"""Time the head-importance pass of ``nerkd prune`` (Michel et al. gradient importance) on CPU.

Default: 1,000 sentences of WikiNEuRal-fr validation data and a MiniLM-shaped student (BERT config,
6 layers, hidden 384, 12 heads, intermediate 1536) with random weights and a Unigram tokenizer
trained on those sentences (no download). ``--model DIR`` times a real nerkd/HF token classifier
with its own tokenizer instead. Target: < 60 s on a 2-core CPU.

    python benchmarks/prune_importance.py ../shared/data/wikineural-fr/val.conllu --layers 6

Prints the seconds and one JSON line (orjson) on stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402
import torch  # noqa: E402


def minilm_student(tokenizer, labels: list[str], layers: int):
    from transformers import BertConfig

    from nerkd.models.ner import NerModel

    config = BertConfig(vocab_size=len(tokenizer), hidden_size=384, num_hidden_layers=layers, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=514, pad_token_id=tokenizer.pad_token_id,
                        id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)})
    torch.manual_seed(0)
    return NerModel.from_config(config).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default="../shared/data/wikineural-fr/val.conllu")
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=6, help="layers of the random MiniLM-shaped student")
    ap.add_argument("--model", default=None, help="a real model folder instead of the random student")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from nerkd.data.dataset import read_split
    from nerkd.data.labels import LabelSpace
    from nerkd.data.schemes import entity_types
    from nerkd.models import quiet_transformers
    from nerkd.prune.importance import compute_importance
    from nerkd.settings import load_settings
    from nerkd.stages.prune import make_batches

    quiet_transformers()
    settings = load_settings(None, [f"data.dev={args.data}", f"data.limit={args.sentences}",
                                    f"data.max_length={args.max_length}", f"train.batch_size={args.batch_size}"])
    split = read_split("dev", args.data, settings.data)
    if args.model:
        from nerkd.models.ner import NerModel, load_tokenizer

        model, tokenizer = NerModel.load(args.model), load_tokenizer(args.model)
        name = args.model
    else:
        from nerkd.models.scratch import train_tokenizer

        tokenizer = train_tokenizer([" ".join(s.tokens) for s in split.sentences], vocab_size=8000)
        space = LabelSpace.build(entity_types(t for s in split.sentences for t in s.tags), "BIO")
        model = minilm_student(tokenizer, list(space.labels), args.layers)
        name = f"random MiniLM-shaped BERT ({args.layers}x384, 12 heads)"

    t0 = time.perf_counter()
    batches = make_batches(split, tokenizer, model, settings)
    t_encode = time.perf_counter() - t0
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    words = sum(len(s.tokens) for s in split.sentences)

    load_before = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    imp = compute_importance(model, batches)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0

    print(f"{name}: head importance over {len(split.sentences)} sentences ({split.encoded.windows} windows, "
          f"{tokens} tokens) in {seconds:.1f} s wall, {cpu_seconds:.1f} s CPU (encode {t_encode:.1f} s), "
          f"target < 60 s; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
          f"(other processes on the machine slow it down)", file=sys.stderr)
    print(f"{seconds:.2f} s")
    sys.stdout.buffer.write(orjson.dumps({
        "bench": "prune_importance", "model": name, "layers": model.num_layers, "heads": sum(model.heads),
        "params": model.num_parameters(), "sentences": len(split.sentences), "words": words,
        "windows": split.encoded.windows, "tokens": tokens, "batch_size": args.batch_size,
        "seconds": round(seconds, 3), "cpu_seconds": round(cpu_seconds, 3), "encode_seconds": round(t_encode, 3),
        "sentences_per_s": round(len(split.sentences) / seconds, 1), "target_s": 60, "ok": seconds < 60,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "scored_windows": imp.windows, "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }) + b"\n")


if __name__ == "__main__":
    main()
