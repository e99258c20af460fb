"""Deterministic train/dev/test split of WikiNEuRal-fr for the real-data benchmarks.

Sentence i (0-based, file order) goes to test if i % 10 == 0, to dev if i % 10 == 1, else to train:
10,080 / 1,260 / 1,260 sentences of the 12,600. The data is read from ../shared and written to
bench_work/ (git-ignored): it is CC BY-NC-SA and never copied into the repository.

    python benchmarks/wikineural_split.py [--src ../shared/data/wikineural-fr/val.conllu] [--out bench_work/wikineural]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson

from nerkd.data.readers import read_sentences


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="../shared/data/wikineural-fr/val.conllu")
    ap.add_argument("--out", default="bench_work/wikineural")
    args = ap.parse_args()
    sentences, stats = read_sentences(args.src)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {name: (out / f"{name}.jsonl").open("wb") for name in ("train", "dev", "test")}
    counts = dict.fromkeys(files, 0)
    for i, s in enumerate(sentences):
        name = "test" if i % 10 == 0 else "dev" if i % 10 == 1 else "train"
        files[name].write(orjson.dumps({"tokens": s.tokens, "tags": s.tags}) + b"\n")
        counts[name] += 1
    for fh in files.values():
        fh.close()
    print(f"{stats.sentences} sentences from {args.src} -> {out}: {counts}")


if __name__ == "__main__":
    main()
