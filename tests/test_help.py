"""Help pages: no type on flags, paragraphs that wrap cleanly, examples runnable after the quickstart,
and no torch imported to print them (issue #12, items 12 and 13)."""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys

import pytest
import typer

from nerkd.cli.app import app
from nerkd.project import STAGE_DIRS
from tests.helpers import REPO

COMMANDS = list(typer.main.get_command(app).commands)

# What exists in the quickstart's project once `nox -s quickstart` has run (noxfile.py): the repository's
# data and configs, the teacher built with --output artifacts/teacher, each stage's default output folder,
# infer's and redact's --output, bench's and report's default outputs.
QUICKSTART_FILES = ["configs/quickstart.yaml", "data/train.jsonl", "data/dev.jsonl", "data/test.jsonl",
                    "data/texts.txt", "data/label2id.json"]
QUICKSTART_PATHS = {*QUICKSTART_FILES, *(f"artifacts/{d}" for d in STAGE_DIRS.values()),
                    "artifacts/entities.jsonl", "artifacts/redacted.jsonl", "artifacts/bench.json", "artifacts/report"}
OUTPUT_OPTIONS = {"--output", "-o", "--json", "--mapping", ">"}


def _help(runner, monkeypatch, args: list[str], columns: int) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    res = runner.invoke(app, [*args, "--help"])
    assert res.exit_code == 0, res.output
    return res.output


def _examples(text: str) -> list[str]:
    """The example commands under each 'Example...:' header, backslash continuations joined."""
    commands, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if not re.fullmatch(r"\s*Example( \([^)]*\))?:\s*", line):
            continue
        current = ""
        for row in lines[i + 1:]:
            if not row.strip():
                break
            current += " " + row.strip()
            if current.endswith("\\"):
                current = current[:-1]
            else:
                commands.append(current.strip())
                current = ""
        assert not current, f"unfinished continuation after {line!r}"
    return commands


def _paragraphs(text: str) -> list[list[str]]:
    """The prose of a help page: between the Usage line and the first panel, blank-line separated."""
    lines = text.splitlines()
    start = next(i for i, x in enumerate(lines) if x.strip().startswith("Usage:")) + 1
    end = next(i for i, x in enumerate(lines) if x.lstrip().startswith("╭"))
    paragraphs, current = [], []
    for line in lines[start:end]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    return paragraphs


def test_commands_are_the_nine():
    assert COMMANDS == ["validate", "distill", "prune", "finetune", "infer", "redact", "select", "bench", "report",
                        "export", "serve"]


@pytest.mark.parametrize("args", [[], *([c] for c in COMMANDS)])
def test_flags_show_no_type(runner, monkeypatch, args):
    text = _help(runner, monkeypatch, args, 120)
    assert "<bool>" not in text
    help_row = next(x for x in text.splitlines() if "--help" in x)
    assert re.search(r"--help\s+-h\s+Show this message", help_row), help_row


def test_lr_bound_is_strict(runner, monkeypatch):
    text = _help(runner, monkeypatch, ["finetune"], 120)
    row = next(x for x in text.splitlines() if "--lr" in x and "Peak learning rate" in x)
    assert "0<x<1" in row and "x>=0" not in row, row
    for bad in ("0", "1", "-0.1"):
        res = runner.invoke(app, ["finetune", "--lr", bad])
        assert res.exit_code == 2 and "0<x<1" in res.output, res.output


@pytest.mark.parametrize("command", COMMANDS)
def test_example_runs_in_the_quickstart_project(runner, monkeypatch, command):
    """Each example names only inputs the quickstart leaves, and writes only new paths beside them."""
    for name in QUICKSTART_FILES:
        assert (REPO / name).is_file(), name
    assert "configs/quickstart.yaml" in (REPO / "noxfile.py").read_text(encoding="utf-8")
    text = _help(runner, monkeypatch, [command], 80)       # as wide as a default terminal: nothing wraps
    examples = _examples(text)
    assert examples, f"no example in nerkd {command} --help"
    for example in examples:
        tokens = shlex.split(example.replace("<", " < ").replace(">", " > "))
        assert tokens[:2] == ["nerkd", command], example
        for prev, token in zip(tokens, tokens[1:], strict=False):
            if prev in ("--set", "-s") or ("/" not in token and not re.search(r"\.(jsonl|json|txt|yaml)$", token)):
                continue
            path = token.rstrip("/")
            if prev in OUTPUT_OPTIONS:
                parent = path.rpartition("/")[0]
                assert path not in QUICKSTART_PATHS, f"{example}: overwrites the quickstart's {path}"
                assert parent in ("", "artifacts"), f"{example}: writes into {parent}/, which may not exist"
            else:
                assert path in QUICKSTART_PATHS, f"{example}: {path} does not exist after the quickstart"


@pytest.mark.parametrize("columns", [80, 200])
@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_prose_wraps_only_where_lines_are_full(runner, monkeypatch, command, columns):
    """Docstrings are reflowed: a line of a paragraph ends early only at the paragraph's end.

    The broken case was 'for finetune.epochs' / 'epochs at finetune.lr' on two lines.
    """
    text = _help(runner, monkeypatch, [command] if command else [], columns)
    for para in _paragraphs(text):
        if para[0].startswith("Example"):
            continue
        for line, nxt in zip(para, para[1:], strict=False):
            assert len(line) + 1 + len(nxt.split()[0]) > columns - 4, f"short line {line!r} before {nxt!r}"
    if command == "finetune" and columns == 200:
        assert "model for finetune.epochs epochs at finetune.lr" in text


def test_help_imports_no_torch():
    """Building every help page in a fresh interpreter imports neither torch nor transformers."""
    script = (
        "import sys\n"
        "import typer\n"
        "from typer.testing import CliRunner\n"
        "from nerkd.cli.app import app\n"
        "runner = CliRunner()\n"
        "for args in ([], *([c] for c in typer.main.get_command(app).commands)):\n"
        "    res = runner.invoke(app, [*args, '--help'])\n"
        "    assert res.exit_code == 0 and 'Usage' in res.output, (args, res.output)\n"
        "heavy = [m for m in ('torch', 'transformers', 'tokenizers', 'safetensors', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    res = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_console_script_help_imports_no_torch():
    """The real entry point (python -m nerkd distill --help), as -X importtime lists every module it loads."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    res = subprocess.run([sys.executable, "-m", "nerkd", "distill", "--help"], cwd=REPO, capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0 and "Usage" in res.stdout, res.stderr
    modules = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert "nerkd.cli.app" in modules
    assert not {m for m in modules if m.split(".")[0] in ("torch", "transformers")}


@pytest.mark.parametrize("command", COMMANDS)
def test_pip_extras_survive_rich_markup(runner, monkeypatch, command):
    """rich reads ``[onnx]`` as a markup tag and drops it: the help said ``pip install 'nerkd'``."""
    monkeypatch.setenv("COLUMNS", "200")
    res = runner.invoke(app, [command, "--help"])
    assert res.exit_code == 0, res.output
    assert "pip install 'nerkd'" not in res.output


@functools.cache
def _piped_help() -> dict[str, str]:
    """Every help page as a pipe gets it (stdout not a terminal, no COLUMNS or TERMINAL_WIDTH), one process."""
    script = (
        "import typer\n"
        "from nerkd.cli.app import app\n"
        "group = typer.main.get_command(app)\n"
        "for args in ([], *([c] for c in group.commands)):\n"
        "    print('=== ' + ' '.join(args), flush=True)\n"
        "    group.main([*args, '--help'], prog_name='nerkd', standalone_mode=False)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TERMINAL_WIDTH")}
    res = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    pages = re.split(r"^=== ?(.*)\n", res.stdout, flags=re.M)[1:]
    return dict(zip(pages[::2], pages[1::2], strict=True))


def test_piped_help_is_wide_and_cuts_no_word():
    """Off a terminal, rich squeezed help into 80 columns: infer's descriptions got ~20 and lost words
    ('finetune/prune/dis…'); repeatable options showed <list[str]>, bounded numbers <int range>."""
    pages = _piped_help()
    assert set(pages) == {"", *COMMANDS}
    for command, text in pages.items():
        lines = text.splitlines()
        width = len(next(x for x in lines if x.startswith("╭")))
        assert width >= 100, (command, width)
        assert all(len(x) <= width for x in lines), command
        assert "…" not in text, command
        assert "<list[" not in text and " range>" not in text and "<bool>" not in text, command
    assert "finetune/prune/distill" in pages["infer"]
    assert re.search(r"--sentences\s+-n\s+<int> \[x>=1\]", pages["bench"])


def test_brackets_in_help_are_text_and_onnx_rows_named_alike():
    """rich took bench's '[onnx]' for markup: the help said (row '<name> '), and infer's 'label []'; report named
    the same row '<name> (onnx)'."""
    pages = _piped_help()
    assert "(row '<name> ')" not in pages["bench"]
    assert "row '<name> (onnx)'" in pages["bench"] and "row '<name> (onnx)'" in pages["report"]
    assert "label [[start," in pages["infer"] and "type]])" in pages["infer"]


def test_infer_format_is_the_output_format(runner):
    pages = _piped_help()
    assert re.search(r"--format\s+<jsonl\|labelstudio\|doccano>\s", pages["infer"])
    assert re.search(r"--input-format\s+<auto\|text\|jsonl>\s", pages["infer"])
    res = runner.invoke(app, ["infer", "--format", "text"])
    assert res.exit_code == 2 and "text is a choice of --input-format: --input-format text" in res.output
