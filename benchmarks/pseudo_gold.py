"""The crude baseline of issue #10 (5b): a teacher's hard predictions on unlabelled notes, used as gold.

Reads the gold training file and ``nerkd infer``'s JSONL output over the unlabelled notes (``text`` +
``entities``: the char-span format nerkd's readers take), both through :func:`nerkd.data.readers.read_sentences`
(so the pseudo-labelled notes are split into words as every char-span file is), and writes one ``tokens``/``tags``
JSONL holding the gold sentences followed by the pseudo-labelled ones. Prints how many of each, and how many
pseudo-labelled notes had no entity (kept: "no entity" is a prediction too).

    python benchmarks/pseudo_gold.py --gold data/train.jsonl --pred bench_work/domain/pseudo.jsonl \
        --out bench_work/domain/gold_plus_pseudo.jsonl
"""

from __future__ import annotations

import argparse

import orjson

from nerkd.data.readers import read_sentences
from nerkd.io import atomic_write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gold", required=True)
    ap.add_argument("--pred", required=True, help="nerkd infer JSONL over the unlabelled notes")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    gold, _ = read_sentences(args.gold)
    pseudo, _ = read_sentences(args.pred, fmt="spans")
    empty = sum(all(t == "O" for t in s.tags) for s in pseudo)
    lines = [orjson.dumps({"tokens": s.tokens, "tags": s.tags}) + b"\n" for s in [*gold, *pseudo]]
    atomic_write(args.out, lambda p: p.write_bytes(b"".join(lines)))
    print(f"{args.out}: {len(gold)} gold + {len(pseudo)} pseudo-labelled sentences "
          f"({empty} of them with no predicted entity)")


if __name__ == "__main__":
    main()
