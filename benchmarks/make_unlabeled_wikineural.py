"""Few-label data for the WikiNEuRal-fr proof (issue #10 item 5a): 500 gold train sentences and the rest as raw text.

The split is the one of ``benchmarks/wikineural_split.py`` (and BENCHMARKS.md): sentence i (0-based, file order)
goes to test if i % 10 == 0, to dev if i % 10 == 1, else to train (10,080 / 1,260 / 1,260 of 12,600). Of the train
sentences, in order, the first ``--gold`` (500) are written with their tags to ``train<gold>.jsonl``; the others
(~9,580) lose their tags, are detokenised with :func:`nerkd.infer.io.detokenize` (elisions glued, no space before
``, .``) and written one per line to ``unlabeled.txt``, to be read through ``data.unlabeled``. The script then
scans that file as ``distill`` will (:func:`nerkd.data.unlabeled.summarize_unlabeled`, dev and test as the leak
filter) and prints what the transfer set holds and what it drops. Files go to the git-ignored ``bench_work/``:
the data is CC BY-NC-SA and never copied into the repository.

    python benchmarks/make_unlabeled_wikineural.py [--src ../shared/data/wikineural-fr/val.conllu]
        [--out bench_work/wikineural] [--gold 500]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson

from nerkd.data.readers import read_sentences
from nerkd.data.unlabeled import summarize_unlabeled
from nerkd.infer.io import detokenize
from nerkd.io import atomic_write


def split_of(i: int) -> str:
    """The deterministic split of BENCHMARKS.md (same rule as benchmarks/wikineural_split.py)."""
    return "test" if i % 10 == 0 else "dev" if i % 10 == 1 else "train"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="../shared/data/wikineural-fr/val.conllu")
    ap.add_argument("--out", default="bench_work/wikineural")
    ap.add_argument("--gold", type=int, default=500, help="train sentences kept with their tags (the first ones)")
    args = ap.parse_args()
    sentences, _ = read_sentences(args.src)
    splits: dict[str, list] = {"train": [], "dev": [], "test": []}
    for i, s in enumerate(sentences):
        splits[split_of(i)].append(s)
    gold, rest = splits["train"][: args.gold], splits["train"][args.gold:]
    out = Path(args.out)
    gold_path = out / f"train{args.gold}.jsonl"
    raw_path = out / "unlabeled.txt"
    atomic_write(gold_path, lambda p: p.write_bytes(
        b"".join(orjson.dumps({"tokens": s.tokens, "tags": s.tags}) + b"\n" for s in gold)))
    atomic_write(raw_path, lambda p: p.write_bytes(
        b"".join(detokenize(s.tokens).encode("utf-8") + b"\n" for s in rest)))
    print(f"{len(sentences)} sentences from {args.src}: train {len(splits['train'])}, dev {len(splits['dev'])}, "
          f"test {len(splits['test'])}")
    print(f"{gold_path}: {len(gold)} gold train sentences (tokens + tags)")
    print(f"{raw_path}: {len(rest)} train sentences as raw text (tags dropped, detokenised)")
    summary = summarize_unlabeled(raw_path, {n: [s.tokens for s in splits[n]] for n in ("dev", "test")})
    print(f"as data.unlabeled: {summary.describe()}")


if __name__ == "__main__":
    main()
