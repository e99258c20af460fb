"""The README's quickstart table is generated (benchmarks/readme_quickstart.py), never edited by hand (issue #12,
item 15). Pure functions only: nothing here reruns the chain."""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import pytest

from tests.helpers import REPO


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("readme_quickstart", REPO / "benchmarks" / "readme_quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REPORT_MD = """# nerkd report

Created 2026-01-01T00:00:00+00:00.

Data: data/test.jsonl: 80 sentences, 1544 words, scheme BIO; gold entities: LOC 50, PER 40.

## Entity scores (P / R / F1, %)

| model | LOC P | LOC R | LOC F1 | PER P | PER R | PER F1 | all P | all R | all F1 |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| teacher | 50.0 | 60.0 | 54.5 | 70.0 | 70.0 | 70.0 | 60.0 | 65.0 | 62.4 |
| final | 40.0 | 50.0 | 44.4 | 60.0 | 70.0 | 64.6 | 50.0 | 60.0 | 54.5 |

## Size and speed

**Warning: artifacts/bench.json: machine under load while timing: load average up to 5.1 on 2 cores**

Speed: medians over 5 blocks in which the models took turns; min–max: the spread over those blocks.

| model | parameters | x fewer params | weights on disk | x smaller on disk | latency p50 (ms) | p50 min–max (ms) | \
latency p95 (ms) | words/s | words/s min–max | speed-up (latency) | speed-up (throughput) | peak mem (MB) |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| teacher | 951.4 k | 1.00x | 3.6 MiB | 1.00x | 2.8 | 2.6–3.5 | 4.0 | 12,389 | 11,000–13,000 | 1.00x | 1.00x | 9.0 |
| final | 521.9 k | 1.82x | 2.0 MiB | 1.80x | 1.9 | 1.8–2.4 | 2.5 | 19,961 | 18,000–21,000 | 1.47x | 1.61x | 5.0 |

## Plots

![F1 vs latency (Pareto front)](pareto.png)

*F1 vs latency (Pareto front)*

![final: head importance (normalised, 80 sentences); x = pruned (3)](heads_1_final.png)

*final: head importance*

## Notes

- something

## How to read this report

- P = precision
""".replace("\\\n", "")

RUN = {"date": "2026-01-02", "machine": {"cpu": "Test CPU", "cores": 2, "torch": "2.13.0", "threads": 2},
       "note": None, "steps": [], "cpu_minutes": 7.25, "wall_minutes": 5.5, "load_avg_1min": [0.4, 3.5, 1.0]}


def test_table_from_report_md(gen):
    assert gen.readme_table(REPORT_MD).splitlines() == [
        "| model | LOC F1 | PER F1 | all P | all R | **all F1** | parameters | batch-1 p50 (ms) | p50 min–max (ms) "
        "| words/s | words/s min–max | latency × | throughput × |",
        "|---|" + "---:|" * 12,
        "| teacher | 54.5 | 70.0 | 60.0 | 65.0 | **62.4** | 951.4 k | 2.8 | 2.6–3.5 | 12,389 | 11,000–13,000 | 1.00x "
        "| 1.00x |",
        "| final | 44.4 | 64.6 | 50.0 | 60.0 | **54.5** | 521.9 k | 1.9 | 1.8–2.4 | 19,961 | 18,000–21,000 | 1.47x "
        "| 1.61x |",
    ]


def test_table_without_bench_columns(gen):
    md = REPORT_MD.split("## Size and speed")[0] + "## Size and speed\n\n| model | parameters |\n|---|---:|\n" \
        "| teacher | 1.0 M |\n| final | 0.5 M |\n"
    assert gen.readme_table(md).splitlines()[2] == "| teacher | 54.5 | 70.0 | 60.0 | 65.0 | **62.4** | 1.0 M |"


def test_block_carries_warnings_plots_and_timing(gen):
    block = gen.render_block(REPORT_MD, RUN)
    assert block.startswith(gen.START) and block.endswith(gen.END)
    assert gen.readme_table(REPORT_MD) in block
    assert "**Warning (nerkd bench):** artifacts/bench.json: machine under load" in block
    assert "![F1 vs latency (Pareto front)](docs/pareto.png)" in block
    assert "![final: head importance (normalised, 80 sentences); x = pruned (3)](docs/heads_1_final.png)" in block
    line = gen.run_line(RUN)
    assert "2026-01-02" in line and "Test CPU, 2 cores" in line and "**7.2 CPU-minutes**" in line
    assert "0.4 to 3.5 on 2 cores" in line and "noisy" in line and "a loaded machine takes longer" in line
    quiet = {**RUN, "load_avg_1min": [0.1, 0.5]}
    assert "noisy" not in gen.run_line(quiet)
    assert gen.run_line({**quiet, "note": "other jobs ran too"}).endswith("on 2 cores: other jobs ran too.")


def test_replace_block_touches_only_the_block(gen):
    readme = f"intro\n{gen.START}\nold table\n{gen.END}\noutro\n"
    new = gen.replace_block(readme, f"{gen.START}\nnew\n{gen.END}")
    assert new == f"intro\n{gen.START}\nnew\n{gen.END}\noutro\n"
    assert gen.replace_block(new, f"{gen.START}\nnew\n{gen.END}") == new
    for bad in ("no markers", f"{gen.END}\n{gen.START}", f"{gen.START}{gen.START}{gen.END}"):
        with pytest.raises(ValueError, match="once each"):
            gen.replace_block(bad, "x")


def test_readme_block_is_the_generated_one(gen):
    """The committed README block is exactly what the generator makes of the committed run (docs/)."""
    report_md = (REPO / "docs" / gen.DOCS_REPORT).read_text(encoding="utf-8")
    run = json.loads((REPO / "docs" / gen.DOCS_RUN).read_text(encoding="utf-8"))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert gen.current_block(readme) == gen.render_block(report_md, run)
    for _, name in gen.report_plots(report_md):
        assert (REPO / "docs" / name).is_file(), name
    assert "/tmp/" not in report_md and "/work/" not in report_md


def test_steps_are_the_nox_quickstart(gen, monkeypatch):
    """The generator runs the chain of `nox -s quickstart` (noxfile.py run against a stand-in nox)."""
    fake = types.ModuleType("nox")
    fake.options = types.SimpleNamespace()
    fake.session = lambda func=None, **kw: func if func else (lambda f: f)
    fake.Session = object
    monkeypatch.setitem(sys.modules, "nox", fake)
    spec = importlib.util.spec_from_file_location("noxfile_under_test", REPO / "noxfile.py")
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)
    runs = []
    session = types.SimpleNamespace(install=lambda *a, **k: None, run=lambda *a, **k: runs.append(list(a)),
                                    posargs=[])
    noxfile.quickstart(session)
    assert [r[1:] for r in runs if r[0] == "nerkd"] == gen.STEPS
    runs.clear()
    noxfile.readme(session)
    assert runs == [["python", "benchmarks/readme_quickstart.py"]]
