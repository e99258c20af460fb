from __future__ import annotations

import shutil

import pytest

from nerkd.cli.app import app
from tests.helpers import BAD_INPUTS, DATA, REPO

COMMANDS = ("validate", "distill", "prune", "finetune", "infer", "redact", "select", "bench", "report", "export",
            "serve")


def test_help_lists_every_command(runner):
    """The registered commands, not words of the app's help sentence ("distil, prune, fine-tune...")."""
    import re

    import typer

    assert list(typer.main.get_command(app).commands) == list(COMMANDS)
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    listed = [m.group(1) for line in res.output.splitlines() if (m := re.match(r"│ (\w+) {2,}\S", line))]
    assert listed == list(COMMANDS), res.output


def test_every_command_has_help_with_example(runner):
    for cmd in COMMANDS:
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0, cmd
        assert "Example" in res.output and f"nerkd {cmd}" in res.output, cmd


def test_version(runner):
    from nerkd import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def _project(in_tmp, teacher):
    shutil.copytree(DATA, in_tmp / "data")
    shutil.copytree(REPO / "configs", in_tmp / "configs")
    (in_tmp / "artifacts").mkdir()
    shutil.copytree(teacher, in_tmp / "artifacts" / "teacher")
    return in_tmp


def test_validate_quickstart_ready(runner, in_tmp, tiny_io_teacher):
    _project(in_tmp, tiny_io_teacher)
    res = runner.invoke(app, ["validate", "--config", "configs/quickstart.yaml",
                              "--set", "distill.layer_map.teacher=[2,4]"])
    assert res.exit_code == 0, res.output
    assert "nerkd validate" in res.output and "ready" in res.output
    assert "I-MISC" in res.output          # the mapping table shows the teacher-only type
    assert "folded into O" in res.output


def test_validate_offline_hub_teacher_one_line(runner, in_tmp, tiny_io_teacher):
    _project(in_tmp, tiny_io_teacher)
    res = runner.invoke(app, ["validate", "--config", "configs/kd_camembert.yaml"])
    assert res.exit_code == 1
    assert "Jean-Baptiste/camembert-ner" in res.output
    assert "cannot reach the Hugging Face hub" in res.output
    assert "Traceback" not in res.output


def test_validate_bad_data_fails_with_line(runner, in_tmp, tiny_io_teacher):
    _project(in_tmp, tiny_io_teacher)
    (in_tmp / "data" / "dev.jsonl").write_text('{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a"]\n')
    res = runner.invoke(app, ["validate", "--config", "configs/quickstart.yaml"])
    assert res.exit_code == 1
    assert "dev.jsonl:2: invalid JSON" in res.output.replace("\n", "")


def test_settings_typo_is_one_line_exit_1(runner, in_tmp):
    (in_tmp / "c.yaml").write_text("train:\n  lrr: 0.1\n")
    res = runner.invoke(app, ["validate", "--config", "c.yaml"])
    assert res.exit_code == 1
    assert "c.yaml: setting train.lrr: unknown key" in res.output
    assert "Traceback" not in res.output


def test_missing_config_file(runner, in_tmp):
    res = runner.invoke(app, ["validate", "--config", "nope.yaml"])
    assert res.exit_code == 1 and "config file not found" in res.output


def test_debug_keeps_traceback(runner, in_tmp, monkeypatch):
    (in_tmp / "c.yaml").write_text("train:\n  lrr: 0.1\n")
    monkeypatch.setenv("NERKD_DEBUG", "1")
    res = runner.invoke(app, ["validate", "--config", "c.yaml"])
    assert res.exit_code != 0 and res.exception is not None
    assert type(res.exception).__name__ == "SettingsError"


@pytest.mark.parametrize(("name", "content", "line", "message"), BAD_INPUTS + [("empty.jsonl", "", None, "empty file")])
def test_bad_data_is_one_line_exit_1(runner, in_tmp, tiny_io_teacher, name, content, line, message):
    """Every bad input of the data layer ends a command with one line naming file:line, exit 1."""
    p = in_tmp / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = in_tmp / "student"
    res = runner.invoke(app, ["distill", "--set", f"teacher.model={tiny_io_teacher}", "--set", f"data.train={p}",
                              "--set", "student.num_layers=2", "--set", "distill.layer_map.teacher=[2,4]",
                              "--set", "distill.layer_map.student=[1,2]", "--output", str(out)])
    assert res.exit_code == 1
    where = f"{p}:{line}: " if line is not None else f"{p}: "
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert lines[-1].startswith(f"error: {where}") and message in lines[-1], res.output
    assert "Traceback" not in res.output
    assert not out.exists()          # nothing written for a run that could not start


_WIDE_OUTPUT = """
from rich.table import Table
from nerkd.ui import log, out, warn
table = Table(title="scores")
table.add_column("model")
table.add_column("f1", justify="right")
table.add_row("teacher_" + "x" * 150, "0.876543")
out.print(table)
log("word " * 60 + "END")
warn("note " * 60 + "END")
"""


def _narrow_tty():
    """A pseudo-terminal 40 columns wide (rich takes its width from whichever std stream is a terminal)."""
    try:
        import fcntl
        import pty
        import struct
        import termios
    except ImportError:  # not POSIX
        return None, None
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
    return master, slave


def test_output_off_a_terminal_is_never_cut_or_wrapped(tmp_path):
    """stdout and stderr to files, COLUMNS unset (and stdin a narrow terminal): whole tables, one-line logs."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")}
    master, slave = _narrow_tty()
    try:
        with (tmp_path / "out.txt").open("wb") as o, (tmp_path / "err.txt").open("wb") as e:
            subprocess.run([sys.executable, "-c", _WIDE_OUTPUT], stdout=o, stderr=e, env=env, check=True,
                           stdin=slave if slave is not None else subprocess.DEVNULL, cwd=REPO, timeout=60)
    finally:
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
    out = (tmp_path / "out.txt").read_text(encoding="utf-8")
    err = (tmp_path / "err.txt").read_text(encoding="utf-8").splitlines()
    assert "teacher_" + "x" * 150 in out and "0.876543" in out and "…" not in out, out
    assert err == [("word " * 60 + "END").strip(), "warning: " + ("note " * 60 + "END").strip()], err


def test_infer_output_says_where_it_wrote(runner, in_tmp, tiny_bio):
    (in_tmp / "in.txt").write_text("Mme Lefèvre à Lyon\n\nLe SSIAD de Lyon\n", encoding="utf-8")
    res = runner.invoke(app, ["infer", "--model", str(tiny_bio), "-i", "in.txt", "-o", "out/entities.jsonl"])
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    assert "infer: wrote 3 lines to out/entities.jsonl" in res.stderr.splitlines()
    assert len((in_tmp / "out/entities.jsonl").read_bytes().splitlines()) == 3
