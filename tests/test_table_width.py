"""Tables off a terminal fit 100 columns by wrapping their cells; a word (a path) is never cut (#22 item 21)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys

from rich.table import Table

from nerkd.ui import TABLE_WIDTH, _Console
from tests.helpers import DATA

LONG = "data/annotations-service-social-2026/relecture-2/dev-relu.jsonl"


def test_a_piped_table_fits_and_keeps_its_words(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    buffer = io.StringIO()
    console = _Console(file=buffer, highlight=False)
    assert not console.is_terminal
    table = Table(title=f"dev: {LONG}", title_justify="left")
    for name in ("check", "status", "detail"):
        table.add_column(name)
    table.add_row("data dev", "ok", f"{LONG}: 80 sentences, 1519 tokens, " + "a long explanation " * 12)
    table.add_row("device", "warn", "cpu " * 60)
    console.print(table)
    lines = buffer.getvalue().splitlines()
    assert max(len(x) for x in lines) == TABLE_WIDTH
    assert sum(LONG in x for x in lines) == 2             # in the title and in its cell, whole
    # a table narrower than the limit keeps its width; its title's path is not broken
    buffer.seek(0), buffer.truncate()
    small = Table(title=f"dev: {LONG}")
    small.add_column("tag")
    small.add_row("B-PER")
    console.print(small)
    assert any(LONG in x for x in buffer.getvalue().splitlines())


def test_piped_validate_fits_100_columns_and_names_paths_whole(tmp_path, tiny_bio):
    """The summary table was ~200 columns wide in a pipe, and a tag table's title broke its path in two."""
    folder = "notes-du-service-social-relues-en-2026/campagne-deux"   # relative: the path as the user gave it
    (tmp_path / folder).mkdir(parents=True)
    for name in ("train", "dev"):
        shutil.copy(DATA / f"{name}.jsonl", tmp_path / folder / f"{name}-relu.jsonl")
    dev = f"{folder}/dev-relu.jsonl"
    sets = [f"data.train={folder}/train-relu.jsonl", f"data.dev={dev}", f"data.label2id={DATA / 'label2id.json'}",
            f"teacher.model={tiny_bio}", "student.num_layers=1", "distill.layer_map.teacher=[2]",
            "distill.layer_map.student=[1]", "train.device=cpu"]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TERMINAL_WIDTH")}
    res = subprocess.run([sys.executable, "-m", "nerkd", "validate", *(x for s in sets for x in ("--set", s))],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert max(len(x) for x in lines) <= 100
    assert f"dev: {dev}" in lines                                     # the tag table's title: one line, whole
    assert any(dev in x for x in lines if x.startswith("│"))          # and whole in the summary's cell
