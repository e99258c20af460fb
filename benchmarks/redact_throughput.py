#!/usr/bin/env python
"""``nerkd redact`` vs ``nerkd infer``: notes per second on the same model and texts (issue #24 item 7).

Both commands run as a user runs them (``python -m nerkd``, a new process each time: imports, model load,
reading, tagging, writing), on the same JSONL file of ``--lines`` notes: the hand-written notes
(``data/medsoc_handwritten.jsonl`` and ``data/medsoc_identifiers.jsonl``, their ``text`` only) repeated, in a
temporary folder outside the repository (deleted afterwards). ``redact`` runs with its settings (``--config``,
default ``configs/redact_patterns.yaml``: the rules, file-number patterns, dates shifted, ``redact.bias``),
``infer`` with the same ``--threads``; ``--config`` is given to both.

Runs are interleaved (infer, redact, then redact, infer, ...) so that a machine other jobs share slows both
alike, and the medians are compared. With ``--startup`` (default on) each command also runs on a one-note
file the same number of times: the median of those is the fixed cost (imports, model load), and the net rate
is ``(lines - 1) / (time - fixed)``. Each run's output is checked to hold one line per note.

    python benchmarks/redact_throughput.py --model artifacts/final --lines 2000 --runs 5 --threads 1

Prints one table and, with ``--json FILE``, writes every time measured. Note text never leaves the temporary
folder; nothing of it is printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
NOTES = (REPO / "data" / "medsoc_handwritten.jsonl", REPO / "data" / "medsoc_identifiers.jsonl")
COMMANDS = ("infer", "redact")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model folder, given to both commands")
    p.add_argument("--lines", type=int, default=2000, help="notes in the timed file (the notes repeated)")
    p.add_argument("--runs", type=int, default=5, help="runs of each command (interleaved)")
    p.add_argument("--threads", type=int, default=1, help="--threads of both commands (1 on a shared machine)")
    p.add_argument("--config", default=str(REPO / "configs" / "redact_patterns.yaml"), help="settings file")
    p.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE for both commands")
    p.add_argument("--no-startup", dest="startup", action="store_false", help="skip the one-note runs")
    p.add_argument("--no-verify", action="store_true", help="passed to both commands")
    p.add_argument("--json", type=Path, help="write the times here")
    return p.parse_args(argv)


def write_notes(folder: Path, lines: int) -> tuple[Path, Path]:
    texts = [orjson.loads(line)["text"] for path in NOTES for line in path.read_bytes().splitlines() if line.strip()]
    many, one = folder / "notes.jsonl", folder / "one.jsonl"
    many.write_bytes(b"".join(orjson.dumps({"id": str(i), "text": texts[i % len(texts)]}) + b"\n"
                              for i in range(lines)))
    one.write_bytes(orjson.dumps({"id": "0", "text": texts[0]}) + b"\n")
    return many, one


def command(name: str, args: argparse.Namespace, source: Path, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "nerkd", name, "--model", args.model, "--input", str(source), "--output", str(out),
           "--threads", str(args.threads), "--config", args.config]
    for s in args.sets:
        cmd += ["--set", s]
    return cmd + (["--no-verify"] if args.no_verify else [])


def run_once(name: str, args: argparse.Namespace, source: Path, folder: Path, lines: int) -> float:
    out = folder / f"{name}.out.jsonl"
    out.unlink(missing_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    done = subprocess.run(command(name, args, source, out), env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"nerkd {name} failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    written = out.read_bytes().count(b"\n")
    if written != lines:
        sys.exit(f"nerkd {name} wrote {written} lines for {lines} notes")
    return seconds


def interleaved(args: argparse.Namespace, source: Path, folder: Path, lines: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for r in range(args.runs):
        for name in COMMANDS if r % 2 == 0 else COMMANDS[::-1]:
            times[name].append(run_once(name, args, source, folder, lines))
            print(f"  run {r + 1} {name:6} {lines} notes: {times[name][-1]:.2f} s", file=sys.stderr)
    return times


def report(args: argparse.Namespace, full: dict[str, list[float]], fixed: dict[str, list[float]] | None) -> dict:
    rows = {}
    for name in COMMANDS:
        med = statistics.median(full[name])
        row = {"median_s": med, "notes_per_s": args.lines / med, "times_s": full[name]}
        if fixed:
            f = statistics.median(fixed[name])
            row.update(fixed_s=f, fixed_times_s=fixed[name], net_notes_per_s=(args.lines - 1) / (med - f))
        rows[name] = row
    ratio = rows["redact"]["notes_per_s"] / rows["infer"]["notes_per_s"]
    print(f"\n{'command':8} {'median s':>9} {'notes/s':>8}" + (f" {'fixed s':>8} {'net notes/s':>12}" if fixed else ""))
    for name, row in rows.items():
        line = f"{name:8} {row['median_s']:9.2f} {row['notes_per_s']:8.1f}"
        if fixed:
            line += f" {row['fixed_s']:8.2f} {row['net_notes_per_s']:12.1f}"
        print(line)
    print(f"redact / infer: {ratio:.1%} (end to end)", end="")
    if fixed:
        net = rows["redact"]["net_notes_per_s"] / rows["infer"]["net_notes_per_s"]
        print(f", {net:.1%} (net of the fixed cost)", end="")
        rows["net_ratio"] = net
    print()
    rows["ratio"] = ratio
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.2f}; {args.lines} notes, {args.runs} runs, --threads {args.threads}",
          file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="nerkd-redact-bench-") as tmp:
        folder = Path(tmp)
        many, one = write_notes(folder, args.lines)
        fixed = interleaved(args, one, folder, 1) if args.startup else None
        full = interleaved(args, many, folder, args.lines)
    load = os.getloadavg()[0]
    rows = report(args, full, fixed)
    print(f"load average at the end {load:.2f}")
    if args.json:
        args.json.write_bytes(orjson.dumps({"model": args.model, "lines": args.lines, "threads": args.threads,
                                            "config": args.config, "sets": args.sets, "rows": rows},
                                           option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
