#!/usr/bin/env python
"""Spark scaling of ``nerkd.spark.tag_notes``: words/s of local[1] against local[2], and of local[1] against
``nerkd infer`` with one thread, on the same notes and model (issue #23).

Notes (>= 20,000): the sample notes of ``data/`` (train/dev/test sentences, ``texts.txt``, ``unlabeled.txt``,
``medsoc_handwritten.jsonl``), the WikiNEuRal-fr validation sentences (``--wikineural``: real French text from
Wikipedia, not clinical; CC BY-NC-SA 4.0, read where it lies, never copied), and, to pass ``--notes``, notes made
of two WikiNEuRal sentences (sentence i and sentence i + n/2: new texts from the same sentences). Written once to
``--work`` as Parquet (``note_id``, ``note_text``) and as JSONL for ``nerkd infer``.

Model: ``--model DIR``, else a tiny CamemBERT built here (``nerkd.models.scratch.build_tiny_model``: 2 layers,
hidden 64, the tests' shape, untrained): the per-word model cost is small, so Spark's own costs weigh the most
(the worst case for the overhead ratio).

Each round runs, in turn: ``nerkd infer --threads 1`` on the JSONL (its own words/s over the tagging loop, and
the command's wall time), then one Spark session per master, each in its own process: session start, a warm-up
job (256 notes written as Parquet: the Python workers start and load the model, the JVM compiles the job's code),
then the timed job, ``tag_notes`` over every note
written as Parquet (read, Arrow batches, the model, the write), one torch thread per task (``spark.task.cpus``
1). words/s = the notes' words (``split_words``, as the engine counts them) / wall seconds. Medians over
``--repeats`` rounds, with min-max, and the load average (``/proc/loadavg``) around each run. On a machine shared
with other jobs wall time measures the share of the cores a run got, so words per CPU second are shown too:
``nerkd infer``'s CPU time less that of the same command on one note (start, imports, model load), and for Spark
the CPU time of the JVM and all its Python processes during the job; "CPUs used" = CPU seconds / wall seconds
(what the run got of the machine: local[2] can only scale where it gets two). The Spark output is checked against
``nerkd infer``'s (the same entities, note for note). The ratios are also given round by round (runs of one
round are minutes apart, so they share more of the machine's state than runs of different rounds).

    python benchmarks/spark_scaling.py --wikineural ../shared/data/wikineural-fr/val.conllu --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by process ``root`` and all its descendants (the JVM, Spark's Python daemon and
    workers), children that ended included (``cutime``/``cstime``)."""
    stats = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(proc.name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += [p for p, (parent, _) in stats.items() if parent == pid and p not in tree]
    return sum(stats[p][1] for p in tree if p in stats) / os.sysconf("SC_CLK_TCK")


def wikineural(path: Path) -> list[str]:
    from nerkd.infer.io import detokenize

    texts, tokens = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].isdigit():
            tokens.append(parts[1])
        elif tokens:
            texts.append(detokenize(tokens))
            tokens = []
    if tokens:
        texts.append(detokenize(tokens))
    return texts


def sample_notes() -> list[str]:
    from nerkd.infer.io import file_texts, gold_texts

    data = REPO / "data"
    texts = [t for name in ("train.jsonl", "dev.jsonl", "test.jsonl") for t in gold_texts(data / name, "auto", 10**6)]
    for name in ("texts.txt", "unlabeled.txt", "medsoc_handwritten.jsonl"):
        texts += file_texts(data / name, 10**6)
    return texts


def make_notes(work: Path, conllu: Path, n: int) -> tuple[Path, Path, dict]:
    """``(notes.parquet, notes.jsonl, what they hold)`` in ``work`` (made once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nerkd.data.words import split_words

    parquet, jsonl, info = work / "notes.parquet", work / "notes.jsonl", work / "notes.json"
    if parquet.is_file() and info.is_file():
        return parquet, jsonl, json.loads(info.read_text())
    samples, wiki = sample_notes(), wikineural(conllu)
    half = len(wiki) // 2
    pairs = [f"{wiki[i]} {wiki[i + half]}" for i in range(max(0, n - len(samples) - len(wiki)))]
    texts = (samples + wiki + pairs)[:n]   # fewer than all: a quick trial run
    pq.write_table(pa.table({"note_id": pa.array(range(1, len(texts) + 1), pa.int64()), "note_text": texts}),
                   parquet, row_group_size=4096)
    jsonl.write_bytes(b"".join(json.dumps({"id": i, "text": t}, ensure_ascii=False).encode() + b"\n"
                               for i, t in enumerate(texts, start=1)))
    what = {"notes": len(texts), "sample": len(samples), "wikineural": len(wiki), "pairs": len(pairs),
            "words": sum(len(split_words(t)) for t in texts), "chars": sum(len(t) for t in texts)}
    info.write_text(json.dumps(what))
    return parquet, jsonl, what


def tiny_model(work: Path) -> Path:
    from nerkd.models.scratch import build_tiny_model

    folder = work / "tiny"
    if (folder / "config.json").is_file():
        return folder
    labels = [lab for lab, _ in sorted(json.loads((REPO / "data/label2id.json").read_text()).items(),
                                       key=lambda kv: kv[1])]
    return build_tiny_model(folder, sample_notes(), labels, layers=2, hidden=64, heads=4, vocab_size=800, seed=0)


def run_infer(model: Path, jsonl: Path, work: Path, name: str = "infer.jsonl") -> dict:
    """``nerkd infer --threads 1`` in a child process: wall seconds, its loop's seconds, its CPU seconds."""
    import resource

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    out = work / name
    before, start, cpu0 = load(), time.perf_counter(), cpu()
    res = subprocess.run([sys.executable, "-m", "nerkd", "infer", "-m", str(model), "-i", str(jsonl), "-o", str(out),
                          "--threads", "1", "--no-progress"], capture_output=True, text=True, env=_env())
    wall, used = time.perf_counter() - start, cpu() - cpu0
    if res.returncode:
        raise SystemExit(res.stderr)
    line = next(x for x in res.stderr.splitlines() if "words/s" in x)
    loop = float(line.split(" in ")[1].split(" s:")[0])
    return {"wall": wall, "loop": loop, "cpu": used, "load": (before, load())}


def run_spark(master: str, model: Path, parquet: Path, work: Path) -> dict:
    """One Spark session in a fresh process (this script with ``--one``)."""
    res = subprocess.run([sys.executable, __file__, "--one", master, "--model", str(model), "--input", str(parquet),
                          "--work", str(work)], capture_output=True, text=True, env=_env())
    if res.returncode:
        raise SystemExit(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def one(master: str, model: Path, parquet: Path, work: Path) -> None:
    """Inside the child process: session, warm-up, timed job; one JSON line on stdout."""
    from nerkd.spark import partitions_for, spark_session, tag_notes

    start = time.perf_counter()
    spark = spark_session(master, batch_rows=512, conf={"spark.ui.enabled": "false"})
    started = time.perf_counter() - start
    notes = spark.read.parquet(str(parquet))
    t = time.perf_counter()
    tag_notes(notes.limit(256), model, partitions=partitions_for(notes)).write.mode("overwrite").parquet(
        str(work / "warm.parquet"))   # the same code paths as the timed job: the JVM compiles them here
    warm = time.perf_counter() - t
    out = work / f"spark_{''.join(c for c in master if c.isalnum())}.parquet"
    jvm = spark.sparkContext._gateway.proc.pid
    before, t, cpu0 = load(), time.perf_counter(), tree_cpu(jvm)
    tag_notes(notes, model, partitions=partitions_for(notes)).write.mode("overwrite").parquet(str(out))
    job, cpu = time.perf_counter() - t, tree_cpu(jvm) - cpu0
    result = {"master": master, "start": started, "warm": warm, "job": job, "cpu": cpu, "load": (before, load()),
              "partitions": partitions_for(notes) or notes.rdd.getNumPartitions(), "output": str(out)}
    spark.stop()
    print(json.dumps(result))


def same_entities(jsonl_out: Path, spark_out: str) -> tuple[bool, int]:
    """Whether the Spark rows equal ``nerkd infer``'s entities, note for note; and how many entities."""
    import pyarrow.parquet as pq

    ref = {}
    for line in jsonl_out.read_bytes().splitlines():
        obj = json.loads(line)
        ref[obj["id"]] = [(e["start"], e["end"], e["label"], e["text"], e["score"]) for e in obj["entities"]]
    got: dict = {}
    for r in pq.read_table(spark_out).to_pylist():
        got.setdefault(r["note_id"], []).append((r["start_char"], r["end_char"], r["label"], r["text"], r["score"]))
    got = {k: sorted(v) for k, v in got.items()}
    return all(got.get(k, []) == sorted(v) for k, v in ref.items()) and set(got) <= set(ref), sum(map(len,
                                                                                                   ref.values()))


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYSPARK_PYTHON": sys.executable, "NERKD_NO_PROGRESS": "1"}


def med(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wikineural", type=Path, default=REPO.parent / "shared/data/wikineural-fr/val.conllu")
    ap.add_argument("--notes", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--masters", default="local[1],local[2]")
    ap.add_argument("--work", type=Path, default=Path("/tmp/spark_scaling"))
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.one:
        return one(args.one, args.model, args.input, args.work)
    parquet, jsonl, what = make_notes(args.work, args.wikineural, args.notes)
    model = args.model or tiny_model(args.work)
    masters = args.masters.split(",")
    print(f"# {what['notes']} notes ({what['sample']} sample, {what['wikineural']} WikiNEuRal sentences, "
          f"{what['pairs']} pairs of them), {what['words']:,} words; model {model}; {os.cpu_count()} CPUs; "
          f"load {load():.2f}", flush=True)
    one_note = args.work / "one.jsonl"
    one_note.write_bytes(jsonl.read_bytes().split(b"\n", 1)[0] + b"\n")
    runs: dict[str, list[dict]] = {"infer": [], **{m: [] for m in masters}}
    for r in range(args.repeats):
        runs["infer"].append(run_infer(model, jsonl, args.work))
        runs["infer"][-1]["start_cpu"] = run_infer(model, one_note, args.work, "one.out.jsonl")["cpu"]
        for m in masters:
            runs[m].append(run_spark(m, model, parquet, args.work))
        print(f"# round {r + 1}: " + json.dumps({k: v[-1] for k, v in runs.items()}), flush=True)
    report(runs, what["words"], masters, jsonl, args.work)


def report(runs: dict, words: int, masters: list[str], jsonl: Path, work: Path) -> None:
    """The table (Markdown) and the two ratios, by wall clock and by CPU time."""
    infer = runs["infer"]
    wall = {"infer loop": [words / x["loop"] for x in infer], "infer command": [words / x["wall"] for x in infer]}
    cpu = {"infer loop": [words / (x["cpu"] - x["start_cpu"]) for x in infer],
           "infer command": [words / x["cpu"] for x in infer]}
    print("\n| run | words/s, wall (median, min–max) | words per CPU s (median) | wall s | CPUs used | "
          "load avg before–after |")
    print("|---|---:|---:|---:|---:|---|")
    loads = lambda xs: ", ".join(f"{a:.1f}–{b:.1f}" for a, b in (x["load"] for x in xs))  # noqa: E731
    print(f"| nerkd infer --threads 1, tagging loop | {med(wall['infer loop'])} | "
          f"{statistics.median(cpu['infer loop']):,.0f} | {statistics.median(x['loop'] for x in infer):.1f} | | "
          f"{loads(infer)} |")
    print(f"| nerkd infer --threads 1, whole command | {med(wall['infer command'])} | "
          f"{statistics.median(cpu['infer command']):,.0f} | {statistics.median(x['wall'] for x in infer):.1f} | "
          f"{statistics.median(x['cpu'] / x['wall'] for x in infer):.2f} | |")
    for m in masters:
        xs = runs[m]
        wall[m], cpu[m] = [words / x["job"] for x in xs], [words / x["cpu"] for x in xs]
        print(f"| Spark {m} job ({xs[0]['partitions']} partitions; session start "
              f"{statistics.median(x['start'] for x in xs):.1f} s, warm-up "
              f"{statistics.median(x['warm'] for x in xs):.1f} s) | {med(wall[m])} | "
              f"{statistics.median(cpu[m]):,.0f} | "
              f"{statistics.median(x['job'] for x in xs):.1f} | "
              f"{statistics.median(x['cpu'] / x['job'] for x in xs):.2f} | {loads(xs)} |")
    w = {k: statistics.median(v) for k, v in wall.items()}
    c = {k: statistics.median(v) for k, v in cpu.items()}
    one_, two = masters[:2]
    print(f"\n{two} / {one_} (wall): {w[two] / w[one_]:.2f}x (target >= 1.7x); CPU per word: "
          f"{c[two] / c[one_]:.2f}x")
    print(f"{one_} / nerkd infer loop: wall {w[one_] / w['infer loop']:.0%}, CPU {c[one_] / c['infer loop']:.0%}; "
          f"/ whole command: wall {w[one_] / w['infer command']:.0%} (target >= 85%)")
    pair = lambda a, b: [x / y for x, y in zip(a, b, strict=True)]  # noqa: E731 - the same round's runs
    for label, ratios in ((f"{two} / {one_}", pair(wall[two], wall[one_])),
                          (f"{one_} / infer loop", pair(wall[one_], wall["infer loop"])),
                          (f"{one_} / infer command", pair(wall[one_], wall["infer command"]))):
        print(f"per round, wall: {label}: median {statistics.median(ratios):.2f} "
              f"({', '.join(f'{r:.2f}' for r in ratios)})")
    for m in masters:
        ok, n = same_entities(work / "infer.jsonl", runs[m][-1]["output"])
        print(f"Spark {m} output = nerkd infer's ({n:,} entities): {ok}")
    (work / "results.json").write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
