"""Issue #20, item 4: the domain teacher's training and dev files, made the same way on every run.

The domain teacher learns from the 400 generated notes of ``data/train.jsonl`` plus the freely written gold of
``data/medsoc_gold.jsonl``; DEV notes of that gold (drawn with SEED, kept in file order) are held out as the dev
split that picks the best epoch of every run of the domain chain. ``data/medsoc_handwritten.jsonl`` is never read
here: it stays evaluation-only, and no recipe is chosen on it (issue #20, item 5).

Writes two char-span JSONL files (``text`` + ``entities``: the generated notes' words joined by one space, their
spans computed on that text) and prints the counts.

    python benchmarks/domain_gold_split.py --out bench_work/domain     # train_gold.jsonl, dev_gold.jsonl
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import orjson

from nerkd.data.schemes import spans_of


def from_tokens(row: dict) -> dict:
    """A tokens/tags row as text + char spans (words joined by one space)."""
    starts, pos = [], 0
    for tok in row["tokens"]:
        starts.append(pos)
        pos += len(tok) + 1
    text = " ".join(row["tokens"])
    ents = [{"start": starts[a], "end": starts[b - 1] + len(row["tokens"][b - 1]), "label": lab}
            for lab, a, b in spans_of(row["tags"])]
    return {"text": text, "entities": ents}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generated", default="data/train.jsonl")
    ap.add_argument("--gold", default="data/medsoc_gold.jsonl")
    ap.add_argument("--dev", type=int, default=100, help="gold notes held out as the dev split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_work/domain")
    args = ap.parse_args()
    read = lambda p: [orjson.loads(x) for x in Path(p).read_bytes().splitlines() if x.strip()]  # noqa: E731
    generated = [from_tokens(r) for r in read(args.generated)]
    gold = read(args.gold)
    dev_ids = set(random.Random(args.seed).sample(range(len(gold)), args.dev))
    dev = [g for i, g in enumerate(gold) if i in dev_ids]
    train = generated + [g for i, g in enumerate(gold) if i not in dev_ids]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train_gold.jsonl", train), ("dev_gold.jsonl", dev)):
        (out / name).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    print(f"{out}/train_gold.jsonl: {len(generated)} generated + {len(gold) - len(dev)} gold notes; "
          f"{out}/dev_gold.jsonl: {len(dev)} gold notes (seed {args.seed})")


if __name__ == "__main__":
    main()
