#!/usr/bin/env python
"""Why ``nerkd infer --compile`` freezes the weights on CPU: eager vs ``torch.compile`` with and
without inductor's freezing, on six fixed batches of a random CamemBERT-base-shaped encoder.

Each mode runs in its own process (a fresh dynamo cache) and times the six batches (32 x 16 ... 48
sub-words, 10 x 51) three times, twice, against eager in the same process; it also prints the
compilation time and the largest logit difference from eager.

    python benchmarks/cpu_compile.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MODES = ("no compile", "compile", "compile + options={'freezing': True}", "compile + freezing (what nerkd does)")


def one(mode: int, threads: int) -> None:
    import torch

    from nerkd.models.ner import NerModel
    from nerkd.models.scratch import tiny_config

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = tiny_config(28000, ["O", "I-LOC", "I-PER", "I-MISC", "I-ORG"], layers=12, hidden=768, heads=12,
                      intermediate=3072, max_positions=512)
    enc = NerModel.from_config(cfg).eval().encoder_model
    shapes = [(32, n) for n in (16, 24, 32, 40, 48)] + [(10, 51)]
    xs = [(torch.randint(5, 28000, s), torch.ones(s, dtype=torch.long)) for s in shapes]

    def timed(f) -> float:
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            for x, a in xs:
                f(x, a)
            runs.append(time.perf_counter() - t)
        return statistics.median(runs)

    with torch.inference_mode():
        def eager(x, a):
            return enc(input_ids=x, attention_mask=a).logits

        compiled, secs, diff = eager, 0.0, 0.0
        if mode:
            if mode == 2:
                c = torch.compile(enc, dynamic=True, options={"freezing": True})
            else:
                if mode == 3:
                    import torch._inductor.config as inductor_config

                    inductor_config.freezing = True
                c = torch.compile(enc, dynamic=True)
            t = time.perf_counter()
            for x, a in xs:
                c(input_ids=x, attention_mask=a)
            secs = time.perf_counter() - t

            def compiled(x, a):
                return c(input_ids=x, attention_mask=a).logits

            diff = max((compiled(x, a) - eager(x, a)).abs().max().item() for x, a in xs)
        pairs = [(timed(eager), timed(compiled)) for _ in range(2)]
    print(f"| {MODES[mode]} | {secs:.1f} | " + " / ".join(f"{e:.2f}" for e, _ in pairs) + " | "
          + " / ".join(f"{c:.2f}" for _, c in pairs) + f" | {statistics.fmean(e / c for e, c in pairs):.2f} | "
          f"{diff:.1e} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mode", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode is not None:
        one(args.mode, args.threads)
        return
    print("| mode | compile s | eager s (2 runs) | this mode s (2 runs) | eager / this | max logit diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in range(1, len(MODES)):
        subprocess.run([sys.executable, __file__, "--mode", str(mode), "--threads", str(args.threads)], check=True,
                       stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
