"""Issue #22 items 6-12 (errors and faults): each known fault is one line, exit 1, naming the file,
setting or option at fault; the server drains before it stops and keeps request details out of its log.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson

from nerkd.cli.app import app


def one_error(res, *needles: str) -> str:
    """The single ``error:`` line of a failed command: exit 1, no traceback, the last line of stderr."""
    assert res.exit_code == 1, res.output
    lines = res.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def copy_model(src: Path, dst: Path, **config) -> Path:
    """A copy of the model folder ``src`` with ``config`` set in its config.json."""
    shutil.copytree(src, dst)
    raw = orjson.loads((dst / "config.json").read_bytes())
    raw.update(config)
    (dst / "config.json").write_bytes(orjson.dumps(raw))
    return dst


# -- item 6: a config.json field of the wrong type ------------------------------------------------
def test_wrong_typed_config_field_is_one_line_naming_file_and_field(runner, tiny_bio, in_tmp):
    bad = copy_model(tiny_bio, in_tmp / "bad", num_hidden_layers="x")
    (in_tmp / "t.txt").write_text("Jean habite à Paris.\n", encoding="utf-8")
    res = runner.invoke(app, ["infer", "--device", "cpu", "--model", str(bad), "--input", "t.txt"])
    one_error(res, str(bad / "config.json"), "num_hidden_layers", "expected int")
    assert len(res.stderr.splitlines()) <= 3, res.stderr        # was an 84-line traceback


def test_wrong_typed_config_field_through_the_library(tiny_bio, tmp_path):
    from nerkd.errors import ModelLoadError
    from nerkd.models.ner import NerModel

    bad = copy_model(tiny_bio, tmp_path / "bad", hidden_size=[64])
    try:
        NerModel.load(bad)
    except ModelLoadError as e:
        assert str(e).startswith(f"{bad / 'config.json'}: field hidden_size:"), e
    else:
        raise AssertionError("loaded a config with a wrong-typed field")
