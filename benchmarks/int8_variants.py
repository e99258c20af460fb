#!/usr/bin/env python
"""int8 variants of one trained model: how close to fp32 (entities, F1) and how fast, torch and ONNX Runtime.

Each row is ``nerkd infer``'s engine end to end (:meth:`nerkd.infer.Engine.run`: words, windows, batches,
decoding, JSONL) over the same sentences, at ``--threads`` threads:

* ``torch fp32`` (the reference), ``torch int8`` (``nerkd infer --int8``: one scale per weight tensor),
  ``torch int8 per-channel`` (torch's ``per_channel_dynamic_qconfig``);
* ONNX Runtime int8 of the fp32 export (``nerkd export --format onnx``), quantised by
  ``onnxruntime.quantization.quantize_dynamic``: ``per-tensor``, ``per-channel`` (what ``nerkd export --int8``
  writes), ``per-channel, reduce_range``, and ``per-channel`` with some MatMuls left in fp32 (the classifier,
  the feed-forward output projections, the first or the last layer);
* with ``--calibration FILE`` (unlabelled notes, one per line; issue #21 item 3), static int8 of the fp32 export
  (``onnxruntime.quantization.quantize_static``, QDQ, weights per channel, activations calibrated on the first
  ``--calibrate`` notes, each encoded as ``nerkd infer`` encodes it, padded to ``data.max_length``: Percentile
  and Entropy calibration stack the activations of every feed, so they need one shape): MinMax, Percentile and
  Entropy calibration,
  the MatMuls only or every op ORT quantises.

With ``--gold NAME=FILE`` (char-span JSONL, repeatable) each row also gets its exact-span entity F1 on that file
and the share of torch fp32's F1 it keeps; choose a variant on a dev file, never on an evaluation file.

Agreement: entities (sentence, start, end, label) equal to torch fp32's, as |A∩B| / |A∪B| and as the share of
fp32's entities kept (|A∩B| / |A|). Speed: words/s, median of ``--repeats`` runs after a warm-up, the rows one
after another (not interleaved: compare the ratios of one run on a quiet machine).

    python benchmarks/int8_variants.py --model bench_work/few/kd_all --test-split --sentences 1260
    python benchmarks/int8_variants.py --model bench_work/domain/final --data data/medsoc_unlabeled.txt \
        --sentences 400 --calibration data/medsoc_unlabeled.txt --gold dev=bench_work/domain/dev_gold.jsonl \
        --gold handwritten=data/medsoc_handwritten.jsonl
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from minilm_student import read_conllu  # noqa: E402


def run_once(engine, data: bytes) -> tuple[float, set]:
    """Words/s of ``nerkd infer``'s engine over ``data`` and its entities."""
    import orjson

    from nerkd.infer.io import read_docs

    sink = io.BytesIO()
    start = time.perf_counter()
    stats = engine.run(read_docs(io.BytesIO(data), "bench", "text"), sink.write)
    seconds = time.perf_counter() - start
    return stats.words / seconds, {(i, e["start"], e["end"], e["label"])
                                   for i, line in enumerate(sink.getvalue().splitlines())
                                   for e in orjson.loads(line)["entities"]}


def onnx_variants(fp32: Path) -> dict[str, dict]:
    """``quantize_dynamic`` keyword arguments of each ONNX row."""
    import onnx

    nodes = [n.name for n in onnx.load(str(fp32 / "model.onnx")).graph.node if n.op_type in ("MatMul", "Gemm")]
    layers = sorted({n.split("layer.")[1].split("/")[0] for n in nodes if "layer." in n}, key=int)
    classifier = [n for n in nodes if "classifier" in n]
    ffn_out = [n for n in nodes if n.endswith("output/dense/MatMul") and "attention" not in n]
    first = [n for n in nodes if f"layer.{layers[0]}/" in n]
    last = [n for n in nodes if f"layer.{layers[-1]}/" in n]
    return {
        "onnx int8 per-tensor": {},
        "onnx int8 per-channel (nerkd export --int8)": {"per_channel": True},
        "onnx int8 per-channel, reduce_range": {"per_channel": True, "reduce_range": True},
        "onnx int8 per-channel, classifier fp32": {"per_channel": True, "nodes_to_exclude": classifier},
        "onnx int8 per-channel, FFN outputs fp32": {"per_channel": True, "nodes_to_exclude": ffn_out},
        "onnx int8 per-channel, first layer fp32": {"per_channel": True, "nodes_to_exclude": first},
        "onnx int8 per-channel, last layer + classifier fp32": {"per_channel": True,
                                                                "nodes_to_exclude": last + classifier},
    }


def gold_f1(engine, gold: tuple[list[str], list[set]]) -> float:
    """Exact-span entity F1 (start, end, label) of ``engine`` on char-span gold texts."""
    texts, truth = gold
    pred = [{(e["start"], e["end"], e["label"]) for e in ents} for ents in engine.predict(texts)]
    tp = sum(len(p & t) for p, t in zip(pred, truth, strict=True))
    n_pred, n_true = sum(map(len, pred)), sum(map(len, truth))
    return 2 * tp / (n_pred + n_true) if n_pred + n_true else 0.0


def read_gold(path: Path) -> tuple[list[str], list[set]]:
    import orjson

    rows = [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]
    return [r["text"] for r in rows], [{(e["start"], e["end"], e["label"]) for e in r["entities"]} for r in rows]


def calibration_feeds(model: Path, path: Path, n: int) -> list[dict]:
    """ONNX inputs of the first ``n`` notes of ``path``, one note per feed, encoded as ``nerkd infer`` does."""
    import numpy as np

    import nerkd.infer.engine as eng
    from nerkd.infer import Engine

    engine = Engine.load(model, device="cpu", jit=False)
    notes = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()][:n]
    feeds = []
    for note in notes:
        words = [w for w, _, _ in eng.split_words(note)]
        for window in eng.encode(engine.tokenizer, [words], None, engine.max_length, engine.stride,
                                 cache=engine.pieces):
            batch = eng.collate([window], engine.pad_id, pad_to=engine.max_length)  # one shape: the histogram
            feeds.append({"input_ids": batch["input_ids"].numpy().astype(np.int64),   # calibrators stack them
                          "attention_mask": batch["attention_mask"].numpy().astype(np.int64)})
    return feeds


def static_variants() -> dict[str, dict]:
    """``quantize_static`` keyword arguments of each static row (QDQ, per-channel weights)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    base = {"quant_format": QuantFormat.QDQ, "per_channel": True, "weight_type": QuantType.QInt8,
            "activation_type": QuantType.QUInt8}
    return {
        "onnx static int8, MinMax, MatMul only": {**base, "calibrate_method": CalibrationMethod.MinMax,
                                                  "op_types_to_quantize": ["MatMul"]},
        "onnx static int8, Percentile 99.99, MatMul only": {
            **base, "calibrate_method": CalibrationMethod.Percentile, "op_types_to_quantize": ["MatMul"],
            "extra_options": {"CalibPercentile": 99.99}},
        "onnx static int8, Entropy, MatMul only": {**base, "calibrate_method": CalibrationMethod.Entropy,
                                                   "op_types_to_quantize": ["MatMul"]},
        "onnx static int8, MinMax, all ops": {**base, "calibrate_method": CalibrationMethod.MinMax},
    }


def quantize_static_into(fp32: Path, folder: Path, feeds: list[dict], options: dict) -> None:
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    from nerkd.export.onnx_graph import quiet

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    with quiet():
        quantize_static(str(fp32 / "model.onnx"), str(folder / "model.onnx"), Reader(), **options)


def torch_int8(model: Path, per_channel: bool):
    import warnings

    import torch
    from torch import nn

    from nerkd.infer import Engine

    engine = Engine.load(model, device="cpu", int8=not per_channel)
    if per_channel:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            enc = engine.model.encoder_model
            spec = {name: per_channel_dynamic_qconfig for name, mod in enc.named_modules()
                    if isinstance(mod, nn.Linear) and mod.weight.numel() > 0}
            engine.model.encoder_model = quantize_dynamic(enc, spec, dtype=torch.qint8, inplace=True)
    return engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="a trained nerkd model folder (torch)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/wikineural-fr/val.conllu")
    ap.add_argument("--sentences", type=int, default=1260)
    ap.add_argument("--test-split", action="store_true", help="only sentences 0, 10, 20, ... (BENCHMARKS' test split)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/nerkd_int8_variants"))
    ap.add_argument("--calibration", type=Path, help="unlabelled notes for static int8 (one per line)")
    ap.add_argument("--calibrate", type=int, default=200, help="notes of --calibration used")
    ap.add_argument("--gold", action="append", default=[], help="NAME=FILE: char-span JSONL scored per row")
    ap.add_argument("--static-only", action="store_true", help="only torch fp32 and the static rows")
    args = ap.parse_args()
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from nerkd.export import export_onnx
    from nerkd.export.onnx_graph import quiet
    from nerkd.infer import Engine

    torch.set_num_threads(args.threads)
    if args.data.suffix == ".txt":
        texts = [x for x in args.data.read_text(encoding="utf-8").splitlines() if x.strip()][:args.sentences]
    else:
        texts = (read_conllu(args.data, 10 ** 9)[::10][:args.sentences] if args.test_split
                 else read_conllu(args.data, args.sentences))
    golds = {spec.split("=", 1)[0]: read_gold(Path(spec.split("=", 1)[1])) for spec in args.gold}
    data = "".join(t + "\n" for t in texts).encode()
    fp32 = args.work / "onnx_fp32"
    export_onnx(args.model, fp32, texts=texts[:200], overwrite=True, threads=args.threads)
    engines = {"torch fp32": lambda: Engine.load(args.model, device="cpu"),
               "torch int8 (nerkd infer --int8)": lambda: torch_int8(args.model, per_channel=False),
               "torch int8 per-channel": lambda: torch_int8(args.model, per_channel=True)}
    if args.static_only:
        engines = {"torch fp32": engines["torch fp32"]}
    for name, options in ({} if args.static_only else onnx_variants(fp32)).items():
        folder = args.work / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(fp32, folder)
        with quiet():
            quantize_dynamic(str(fp32 / "model.onnx"), str(folder / "model.onnx"), weight_type=QuantType.QInt8,
                             **options)
        engines[name] = lambda folder=folder: Engine.load(folder, backend="onnx", verify=False)  # edited copies
    if args.calibration:
        feeds = calibration_feeds(args.model, args.calibration, args.calibrate)
        for name, options in static_variants().items():
            folder = args.work / name.replace(" ", "_").replace(",", "").replace(".", "")
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(fp32, folder)
            try:
                quantize_static_into(fp32, folder, feeds, options)
            except Exception as e:  # noqa: BLE001 - a variant ORT cannot make is a row that says so
                print(f"# {name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}", flush=True)
                continue
            engines[name] = lambda folder=folder: Engine.load(folder, backend="onnx", verify=False)  # edited copies
    print(f"# {args.model}: {len(texts)} sentences{' of the test split' if args.test_split else ''}, "
          f"{args.threads} thread(s), torch {torch.__version__}, onnxruntime {onnxruntime.__version__}", flush=True)
    f1_cols = "".join(f" F1 {g} | % of fp32 |" for g in golds)
    print("| runtime | words/s | x torch fp32 | entities | = fp32 (|A∩B|/|A∪B|) | fp32 entities kept |" + f1_cols)
    print("|---|---:|---:|---:|---:|---:|" + "---:|---:|" * len(golds))
    reference, base, ref_f1 = None, None, {}
    for name, make in engines.items():
        engine = make()
        run_once(engine, data)
        runs = [run_once(engine, data) for _ in range(args.repeats)]
        speed, got = statistics.median(r[0] for r in runs), runs[0][1]
        reference, base = (got, speed) if reference is None else (reference, base)
        f1 = {g: gold_f1(engine, gold) for g, gold in golds.items()}
        ref_f1 = ref_f1 or f1
        cells = "".join(f" {100 * f1[g]:.2f} | {100 * f1[g] / ref_f1[g] if ref_f1[g] else 0:.2f}% |" for g in golds)
        print(f"| {name} | {speed:,.0f} | {speed / base:.2f}x | {len(got):,} | "
              f"{100 * len(got & reference) / max(1, len(got | reference)):.2f}% | "
              f"{100 * len(got & reference) / max(1, len(reference)):.2f}% |" + cells, flush=True)


if __name__ == "__main__":
    main()
