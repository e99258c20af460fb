#!/usr/bin/env python
"""Peak memory of ``nerkd infer`` against input size: streaming keeps it flat.

Builds a small random IO tagger (2 layers, hidden 64: the model is not what is measured) with a
tokenizer trained on the WikiNEuRal-fr sentences, writes inputs of each ``--sizes`` megabytes
(the sentences again and again, with a counter glued to some words so that new words keep
arriving and the sub-word cache must keep filling and emptying), and runs ``nerkd infer -i IN -o
/dev/null`` on each as a subprocess. Reports wall time, words/s and the child's peak RSS
(``ru_maxrss``). A bounded stream has the same peak for 10 MB and for 1 GB.

    python benchmarks/infer_memory.py --sizes 10,100,1000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from infer_vs_pipeline import DEFAULT_DATA, build_random_model  # noqa: E402

from nerkd.data.readers import read_sentences  # noqa: E402
from nerkd.infer import detokenize  # noqa: E402


def write_input(path: Path, texts: list[str], megabytes: int) -> int:
    """About ``megabytes`` MB of lines; every 7th word of every 3rd line gets a fresh number."""
    target, size, lines, k = megabytes * 1_000_000, 0, 0, 0
    with path.open("w", encoding="utf-8") as f:
        while size < target:
            t = texts[lines % len(texts)]
            if lines % 3 == 0:
                words = t.split(" ")
                for i in range(0, len(words), 7):
                    k += 1
                    words[i] = f"{words[i]}{k}"
                t = " ".join(words)
            line = t + "\n"
            f.write(line)
            size += len(line.encode("utf-8"))
            lines += 1
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sizes", default="10,100", help="input sizes in MB")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    sents, _ = read_sentences(args.data, "conll")
    texts = [detokenize(s.tokens) for s in sents]
    work = Path(tempfile.mkdtemp(prefix="nerkd-mem-"))
    model = work / "model"
    build_random_model(Namespace(vocab=8000, layers=2, hidden=64, heads=4, seed=0, entity_rate=0.12), texts, model)
    rows = []
    for mb in (int(x) for x in args.sizes.split(",")):
        src = work / f"in_{mb}mb.txt"
        lines = write_input(src, texts, mb)
        cmd = [sys.executable, "-m", "nerkd", "infer", "--model", str(model), "--device", "cpu",
               "--threads", str(args.threads), "-i", str(src), "-o", os.devnull]
        log = work / "stderr.txt"
        t0 = time.perf_counter()
        with log.open("w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)   # this child's own peak RSS
        wall = time.perf_counter() - t0
        rc = os.waitstatus_to_exitcode(status)
        stderr = log.read_text()
        summary = [x.strip() for x in stderr.splitlines() if "words/s" in x]
        rows.append((mb, lines, rc, wall, usage.ru_maxrss, summary[-1] if summary else stderr[-300:]))
        src.unlink()
        print(f"  {mb} MB: rc {rc}, {wall:.0f} s, peak RSS {usage.ru_maxrss / 1024:.0f} MiB", file=sys.stderr,
              flush=True)
    print("\n| input | lines | exit | wall s | peak RSS of `nerkd infer` | its summary line |")
    print("|---:|---:|---:|---:|---:|---|")
    for mb, lines, rc, wall, peak, summ in rows:
        print(f"| {mb} MB | {lines:,} | {rc} | {wall:.0f} | {peak / 1024:.0f} MiB | {summ} |")


if __name__ == "__main__":
    main()
