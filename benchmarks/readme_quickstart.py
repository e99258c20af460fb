#!/usr/bin/env python3
"""Regenerate the README's quickstart table and ``docs/*.png`` from one run of the quickstart chain.

    python benchmarks/readme_quickstart.py          # or: nox -s readme

Runs the chain of ``nox -s quickstart`` (the same ``nerkd`` commands, checked by
tests/test_readme.py) with this interpreter's nerkd, offline, in a new temporary project holding a
copy of ``configs/quickstart.yaml`` and ``data/``. Then it

* copies the run's ``artifacts/report/report.md`` to ``docs/quickstart-report.md`` and its plots
  (``pareto.png``, ``heads_*.png``) to ``docs/``, removing the plots of the previous run;
* writes ``docs/quickstart-run.json``: date, machine, load average, CPU time (user + sys of every
  nerkd process, from ``getrusage(RUSAGE_CHILDREN)``) and wall time, per step and in total;
* rewrites the README between ``<!-- quickstart-table:start -->`` and ``<!-- quickstart-table:end -->``
  with :func:`render_block` of those two files, and nothing else of the README.

The table is therefore always one real run's, and tests/test_readme.py fails when the README block
differs from what :func:`render_block` makes of the committed ``docs/`` files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- quickstart-table:start -->"
END = "<!-- quickstart-table:end -->"
DOCS_REPORT = "quickstart-report.md"
DOCS_RUN = "quickstart-run.json"
CONFIG = ["--config", "configs/quickstart.yaml"]
# The quickstart chain, as `nox -s quickstart` runs it (noxfile.py; tests/test_readme.py checks they agree).
STEPS: list[list[str]] = [
    ["finetune", "--base", "scratch", "--epochs", "10", "--lr", "2e-3", "--output", "artifacts/teacher", *CONFIG],
    ["validate", *CONFIG],
    ["distill", *CONFIG],
    ["prune", "--rate", "0.25"],
    ["finetune"],
    ["infer", "--input", "data/texts.txt", "--output", "artifacts/entities.jsonl"],
    ["redact", "--input", "data/texts.txt", "--output", "artifacts/redacted.jsonl"],
    ["bench"],
    ["report"],
]
# README column <- (report.md section, column of its table); a column the report lacks is left out.
COLUMNS = [
    ("all P", "entity", "all P"), ("all R", "entity", "all R"), ("**all F1**", "entity", "all F1"),
    ("parameters", "size", "parameters"), ("batch-1 p50 (ms)", "size", "latency p50 (ms)"),
    ("p50 min–max (ms)", "size", "p50 min–max (ms)"), ("words/s", "size", "words/s"),
    ("words/s min–max", "size", "words/s min–max"), ("latency ×", "size", "speed-up (latency)"),
    ("throughput ×", "size", "speed-up (throughput)"),
]
SECTIONS = {"entity": "Entity scores", "size": "Size and speed"}


# -- pure functions (tested) ---------------------------------------------------------------------

def md_section(md: str, title: str) -> str:
    """The text of ``## title...`` up to the next ``## `` heading ('' when absent)."""
    m = re.search(rf"^## {re.escape(title)}.*$", md, flags=re.M)
    if not m:
        return ""
    rest = md[m.end():]
    nxt = re.search(r"^## ", rest, flags=re.M)
    return rest[: nxt.start()] if nxt else rest


def md_table(text: str) -> tuple[list[str], list[list[str]]]:
    """The first Markdown table of ``text``: headers and rows of cells."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    if len(lines) < 2:
        raise ValueError("no Markdown table found")
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return cells[0], cells[2:]


def readme_table(report_md: str) -> str:
    """The README table: per-type and overall entity scores, then size and speed, one row per model."""
    tables = {key: md_table(md_section(report_md, title)) if md_section(report_md, title) else ([], [])
              for key, title in SECTIONS.items()}
    ent_headers, ent_rows = tables["entity"]
    if not ent_rows:
        raise ValueError("report.md has no entity score table")
    types = [h[: -len(" F1")] for h in ent_headers[1:] if h.endswith(" F1") and h != "all F1"]
    columns = [(f"{t} F1", "entity", f"{t} F1") for t in types] + COLUMNS
    rows_of = {key: {r[0]: dict(zip(headers, r, strict=False)) for r in rows}
               for key, (headers, rows) in tables.items()}
    present = [c for c in columns if c[2] in tables[c[1]][0]]
    lines = ["| model | " + " | ".join(c[0] for c in present) + " |",
             "|---|" + "---:|" * len(present)]
    for row in ent_rows:
        name = row[0]
        cells = []
        for header, key, source in present:
            value = rows_of[key].get(name, {}).get(source, "-")
            cells.append(f"**{value}**" if header.startswith("**") else value)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_warnings(report_md: str) -> list[str]:
    """The report's warnings (``**Warning: ...**`` lines of its size and speed section)."""
    return [m.group(1) for m in re.finditer(r"^\*\*Warning: (.*)\*\*$", md_section(report_md, "Size and speed"),
                                            flags=re.M)]


def report_plots(report_md: str) -> list[tuple[str, str]]:
    """``(title, file name)`` of the report's plots, in its order."""
    return re.findall(r"^!\[(.*)\]\(([^)/]+\.png)\)$", md_section(report_md, "Plots"), flags=re.M)


def run_line(run: dict) -> str:
    """Where, when and how long: the line above the table."""
    m = run["machine"]
    load = run["load_avg_1min"]
    loaded = max(load) > m["cores"]
    return (f"Generated on {run['date']} by `python benchmarks/readme_quickstart.py` (one run of the chain above, "
            f"offline, seeded) on {m['cpu']}, {m['cores']} cores, torch {m['torch']}. The chain took "
            f"**{run['cpu_minutes']:.1f} CPU-minutes** (user + sys of every nerkd process; "
            f"{run['wall_minutes']:.1f} minutes of wall-clock time), besides installing torch and nerkd; "
            f"a loaded machine takes longer. Load average during the run: {min(load):.1f} to {max(load):.1f} "
            f"on {m['cores']} cores" + (
                f": {run['note']}" if run.get("note") else
                ": other jobs shared the machine, so the timings are noisy" if loaded else "") + ".")


def render_block(report_md: str, run: dict) -> str:
    """Everything between the README markers, markers included."""
    parts = [START, f"<!-- generated by benchmarks/readme_quickstart.py from docs/{DOCS_REPORT} and "
             f"docs/{DOCS_RUN}: do not edit by hand -->", "",
             "What the quickstart's report looks like (`artifacts/report/report.md`, "
             f"[full copy](docs/{DOCS_REPORT})): toy models of ~1M parameters trained for seconds, so the numbers "
             "only show the mechanics. Speed columns are medians over interleaved timing blocks; min–max is their "
             "spread.", "", run_line(run), "", readme_table(report_md), ""]
    for warning in report_warnings(report_md):
        parts += [f"**Warning (nerkd bench):** {warning}", ""]
    for title, name in report_plots(report_md):
        parts.append(f"![{title}](docs/{name})")
    parts.append(END)
    return "\n".join(parts)


def replace_block(readme: str, block: str) -> str:
    """``readme`` with the text between (and including) the markers replaced by ``block``."""
    if readme.count(START) != 1 or readme.count(END) != 1 or readme.index(START) > readme.index(END):
        raise ValueError(f"README must hold {START} then {END}, once each")
    return readme[: readme.index(START)] + block + readme[readme.index(END) + len(END):]


def current_block(readme: str) -> str:
    return readme[readme.index(START): readme.index(END) + len(END)]


# -- the run ---------------------------------------------------------------------------------------

def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _load() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return 0.0


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run_chain(project: Path, log) -> dict:
    """Run STEPS in ``project``; per-step and total CPU and wall time, load samples."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("NERKD_CONFIG", None)  # the chain's own config only
    steps, load = [], [_load()]
    cpu0, wall0 = _cpu_seconds(), time.monotonic()
    for args in STEPS:
        cpu, wall = _cpu_seconds(), time.monotonic()
        print("+ nerkd " + " ".join(args), file=log, flush=True)
        subprocess.run([sys.executable, "-m", "nerkd", *args], cwd=project, env=env, check=True)
        steps.append({"command": "nerkd " + " ".join(args), "cpu_s": round(_cpu_seconds() - cpu, 1),
                      "wall_s": round(time.monotonic() - wall, 1)})
        load.append(_load())
    return {"steps": steps, "cpu_minutes": round((_cpu_seconds() - cpu0) / 60, 2),
            "wall_minutes": round((time.monotonic() - wall0) / 60, 2), "load_avg_1min": load}


def machine(project: Path) -> dict:
    bench = json.loads((project / "artifacts" / "bench.json").read_text(encoding="utf-8"))
    m = bench.get("machine", {})
    return {"cpu": m.get("cpu", "unknown CPU"), "cores": _cores(), "torch": m.get("torch", "?"),
            "threads": m.get("threads")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs")
    ap.add_argument("--keep", type=Path, help="run in this (new) folder and keep it, instead of a temporary one")
    ap.add_argument("--note", help="a remark on the machine for the README line (default: from the load average)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nerkd-quickstart-") as tmp:
        project = args.keep or Path(tmp) / "project"
        project.mkdir(parents=True, exist_ok=False)
        (project / "configs").mkdir()
        shutil.copy2(ROOT / "configs" / "quickstart.yaml", project / "configs" / "quickstart.yaml")
        shutil.copytree(ROOT / "data", project / "data")
        date = dt.datetime.now(dt.timezone.utc).date().isoformat()
        chain = run_chain(project, sys.stderr)
        run = {"date": date, "machine": machine(project), "note": args.note, **chain}
        report = project / "artifacts" / "report"
        # paths in the report's notes are relative to the project, as in a user's own run
        report_md = (report / "report.md").read_text(encoding="utf-8").replace(f"{project.resolve()}/", "")
        args.docs.mkdir(parents=True, exist_ok=True)
        for old in [args.docs / "pareto.png", *args.docs.glob("heads_*.png")]:
            old.unlink(missing_ok=True)
        for _, name in report_plots(report_md):
            shutil.copy2(report / name, args.docs / name)
        (args.docs / DOCS_REPORT).write_text(report_md, encoding="utf-8")
        (args.docs / DOCS_RUN).write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    readme = args.readme.read_text(encoding="utf-8")
    args.readme.write_text(replace_block(readme, render_block(report_md, run)), encoding="utf-8")
    print(f"quickstart: {run['cpu_minutes']:.1f} CPU-minutes, {run['wall_minutes']:.1f} min wall; "
          f"wrote {args.readme}, {args.docs / DOCS_REPORT}, {args.docs / DOCS_RUN} and the plots", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
