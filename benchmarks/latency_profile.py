"""Issue #21, item 1: where a batch-1 call of ``nerkd infer`` spends its time, stage by stage.

Loads each model as ``nerkd infer`` does (:func:`nerkd.infer.load_engine`, the default ``infer`` settings: on
torch, the traced encoder of ``infer.jit``; ``--no-jit``: eager) with ``data.max_length`` 128, and tags the
hand-written notes one at a time (batch 1), ROUNDS times; every stage of the engine's path is timed by wrapping
the function that does it (the engine's own code runs unchanged):

* ``split``      French word split (``split_words``)
* ``tokenise``   sub-words and windows (``encode``)
* ``tensors``    batching and padding into tensors (``bucket_batches``, ``collate``)
* ``forward``    the model (torch module, or the ONNX Runtime session)
* ``decode``     tags and entity spans (``_finish`` less what is timed above)
* ``json``       the output line (``result_line``, as ``nerkd infer`` writes it)
* ``other``      the rest of ``predict`` (index bookkeeping, the scatter of word logits)

Then, for torch models, the forward alone per op (``torch.profiler``, self CPU time, top OPS ops) and the forward
under the variants worth trying at batch 1 (attention implementation, grad mode, TorchScript trace), each timed on
the same notes, interleaved; with ``--serve``, ``nerkd serve``'s ``POST /v1/entities`` per note against the
engine's own call. Medians in ms per note; the table is Markdown (for BENCHMARKS.md).

    OMP_NUM_THREADS=1 python benchmarks/latency_profile.py --model teacher=bench_work/domain/teacher \\
        --model student=bench_work/domain/student [--model student_onnx=bench_work/domain/student_onnx]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import orjson
import torch

import nerkd.infer.engine as eng
from nerkd.data.docs import Doc
from nerkd.infer import load_engine
from nerkd.infer.io import result_line
from nerkd.settings import InferSettings

STAGES = ("split", "tokenise", "tensors", "forward", "decode", "json", "other")


class Clock:
    """Seconds spent inside wrapped functions, per stage, for the current note."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)

    def wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.spent[stage] += time.perf_counter() - start
        return timed


@contextlib.contextmanager
def instrumented(engine, clock: Clock):
    """Wrap the engine module's stage functions and the engine's model and ``_finish`` (undone after)."""
    saved = {n: getattr(eng, n) for n in ("split_words", "encode", "collate", "bucket_batches")}
    model_call, finish, traced = engine.model, engine._finish, engine.traced
    eng.split_words = clock.wrap("split", saved["split_words"])
    eng.encode = clock.wrap("tokenise", saved["encode"])
    eng.collate = clock.wrap("tensors", saved["collate"])
    eng.bucket_batches = clock.wrap("tensors", saved["bucket_batches"])
    engine.model = _Forward(model_call, clock)
    if traced is not None:   # infer.jit: the trace is the forward
        engine.traced = _Forward(traced, clock)
    engine._finish = clock.wrap("decode", finish)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(eng, n, f)
        engine.model, engine._finish, engine.traced = model_call, finish, traced


class _Forward:
    """The model, its call timed as ``forward`` (attributes passed through)."""

    def __init__(self, model, clock: Clock):
        self._model, self._clock = model, clock

    def __call__(self, *a, **k):
        return self._clock.wrap("forward", self._model)(*a, **k)

    def __getattr__(self, name):
        return getattr(self._model, name)


def stage_times(engine, texts: list[str], rounds: int) -> dict[str, float]:
    """Median ms per note of each stage (and ``total``) over ``rounds`` batch-1 passes over ``texts``."""
    per: dict[str, list[float]] = defaultdict(list)
    for t in texts[:5]:
        engine.predict([t])
    for _ in range(rounds):
        for i, t in enumerate(texts):
            clock = Clock()
            with instrumented(engine, clock):
                start = time.perf_counter()
                ents = engine.predict([t])[0]
                mid = time.perf_counter()
                result_line(Doc(str(i), t), ents)
                end = time.perf_counter()
            clock.spent["json"] = end - mid
            total = end - start
            clock.spent["other"] = total - sum(v for k, v in clock.spent.items() if k != "other")
            for s in STAGES:
                per[s].append(clock.spent.get(s, 0.0) * 1000)
            per["total"].append(total * 1000)
    return {k: statistics.median(v) for k, v in per.items()}


def serve_times(engine, texts: list[str], rounds: int) -> dict[str, float]:
    """Median ms per note of ``POST /v1/entities`` (one note per request, one client: no micro-batch wait) on
    ``nerkd serve``'s app in this process (Starlette's TestClient: no socket), beside the engine's own
    ``predict`` on the same note, interleaved: what the HTTP layer, validation and JSON add."""
    from fastapi.testclient import TestClient

    from nerkd.serve.app import create_app
    from nerkd.settings import ServeSettings

    app = create_app(lambda: engine, ServeSettings())
    times: dict[str, list[float]] = defaultdict(list)
    with TestClient(app) as client:
        while client.get("/health").status_code != 200:
            time.sleep(0.05)
        for t in texts[:5]:
            client.post("/v1/entities", json={"text": t})
        for _ in range(rounds):
            for t in texts:
                start = time.perf_counter()
                res = client.post("/v1/entities", json={"text": t})
                times["request"].append((time.perf_counter() - start) * 1000)
                assert res.status_code == 200, res.status_code
                start = time.perf_counter()
                engine.predict([t])
                times["predict"].append((time.perf_counter() - start) * 1000)
    out = {k: statistics.median(v) for k, v in times.items()}
    out["added"] = statistics.median(a - b for a, b in zip(times["request"], times["predict"], strict=True))
    return out


def encoded(engine, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each note's batch-1 input tensors, as the engine builds them."""
    out = []
    for t in texts:
        words = [w for w, _, _ in eng.split_words(t)]
        windows = eng.encode(engine.tokenizer, [words], None, engine.max_length, engine.stride, cache=engine.pieces)
        batch = eng.collate(windows[:1], engine.pad_id)
        out.append((batch["input_ids"], batch["attention_mask"]))
    return out


def per_op(model, inputs, top: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        for ids, mask in inputs[:5]:
            model(ids, mask)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for ids, mask in inputs:
                model(ids, mask)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    n = len(inputs)
    lines = ["| op | calls per note | self CPU ms per note | share |", "|---|---:|---:|---:|"]
    for e in rows:
        lines.append(f"| `{e.key}` | {e.count / n:.0f} | {e.self_cpu_time_total / 1000 / n:.3f} | "
                     f"{100 * e.self_cpu_time_total / total:.1f}% |")
    return "\n".join(lines)


def variants(engine, inputs) -> dict[str, Callable]:
    """Forward callables worth comparing at batch 1 (same weights)."""
    model = engine.model
    enc = model.encoder_model
    out: dict[str, Callable] = {}

    def as_loaded(ids, mask):
        with torch.inference_mode():
            return model(ids, mask).logits
    out[f"eager (inference_mode, {enc.config._attn_implementation} attention)"] = as_loaded
    if engine.traced is not None:
        def traced(ids, mask):
            with torch.inference_mode():
                return engine.traced(ids, mask)
        out["TorchScript trace (infer.jit, the default)"] = traced

    def no_grad(ids, mask):
        with torch.no_grad():
            return model(ids, mask).logits
    out["no_grad"] = no_grad

    def with_attn(impl):
        def run(ids, mask):
            old = enc.config._attn_implementation
            enc.set_attn_implementation(impl)
            try:
                with torch.inference_mode():
                    return model(ids, mask).logits
            finally:
                enc.set_attn_implementation(old)
        return run
    for impl in ("eager", "sdpa"):
        out[f"{impl} attention"] = with_attn(impl)
    try:
        ids, mask = inputs[0]
        with torch.no_grad():
            traced = torch.jit.trace(enc, (ids, mask), strict=False, check_trace=False)
            frozen = torch.jit.freeze(traced.eval())
            optimised = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))

        def run(graph):
            def call(ids, mask):
                with torch.inference_mode():
                    r = graph(ids, mask)
                    return r["logits"] if isinstance(r, dict) else r[0]
            return call
        out["TorchScript trace + freeze"] = run(frozen)
        out["TorchScript trace + optimize_for_inference (oneDNN)"] = run(optimised)
    except Exception as e:  # noqa: BLE001 - a variant that cannot be built is said, not fatal
        out[f"TorchScript trace failed: {type(e).__name__}"] = None
    return out


def time_variants(fns: dict[str, Callable | None], inputs, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = defaultdict(list)
    live = {k: f for k, f in fns.items() if f is not None}
    for f in live.values():
        for ids, mask in inputs[:5]:
            f(ids, mask)
    for _ in range(rounds):
        for ids, mask in inputs:
            for k, f in live.items():   # interleaved: every variant on the same note in turn
                start = time.perf_counter()
                f(ids, mask)
                times[k].append((time.perf_counter() - start) * 1000)
    return {k: statistics.median(times[k]) if k in times else float("nan") for k in fns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="NAME=FOLDER (torch or ONNX export)")
    ap.add_argument("--data", default="data/medsoc_handwritten.jsonl")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ops", type=int, default=12)
    ap.add_argument("--backend", default="auto", help="as infer.backend (auto: ONNX for an export folder)")
    ap.add_argument("--no-jit", action="store_true", help="infer.jit off (the eager torch forward)")
    ap.add_argument("--serve", action="store_true", help="also time nerkd serve's POST /v1/entities per note")
    args = ap.parse_args()
    texts = [orjson.loads(x)["text"] for x in open(args.data, "rb") if x.strip()]
    print(f"{len(texts)} notes of {args.data}, batch 1, {args.rounds} rounds, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); medians, ms per note\n")
    rows, details = [], []
    for spec in args.model:
        name, ref = spec.split("=", 1)
        engine = load_engine(ref, InferSettings(backend=args.backend, jit=not args.no_jit), max_length=128, stride=32)
        st = stage_times(engine, texts, args.rounds)
        rows.append((name, engine.backend, st))
        if args.serve:
            sv = serve_times(engine, texts, args.rounds)
            details.append(f"### {name}: nerkd serve, one note per request (ms, median)\n\n"
                           "| POST /v1/entities | engine predict | added by the server (paired) |\n|---:|---:|---:|\n"
                           f"| {sv['request']:.2f} | {sv['predict']:.2f} | {sv['added']:.2f} |")
        if engine.backend == "torch":
            inputs = encoded(engine, texts)
            details.append(f"### {name}: forward per op (torch.profiler, self CPU time)\n\n"
                           + per_op(engine.model, inputs, args.ops))
            v = time_variants(variants(engine, inputs), inputs, args.rounds)
            details.append(f"### {name}: the forward alone, variants (ms per note, median)\n\n"
                           "| variant | forward ms |\n|---|---:|\n"
                           + "\n".join(f"| {k} | {x:.2f} |" for k, x in v.items()))
    print("| model | runtime | " + " | ".join(STAGES) + " | total |")
    print("|---|---|" + "---:|" * (len(STAGES) + 1))
    for name, backend, st in rows:
        print(f"| {name} | {backend} | " + " | ".join(f"{st[s]:.2f}" for s in STAGES) + f" | {st['total']:.2f} |")
    print("\n(stage medians do not add up to the total's median)\n")
    print("\n\n".join(details))


if __name__ == "__main__":
    main()
