"""House rules that code review alone let slip (issue #11): functions stay under ~60 lines in the serve and
export modules, and a CLI option shared between commands is spelled once, in nerkd/cli/common.py."""

from __future__ import annotations

import ast

import pytest

from tests.helpers import REPO

MAX_LINES = 60
SHORT = ["nerkd/serve/*.py", "nerkd/export/onnx*.py", "nerkd/cli/serve.py", "nerkd/cli/export.py"]
# flags defined by the shared aliases and factories of nerkd/cli/common.py, per command module that must use them
SHARED = {
    "nerkd/cli/serve.py": ['"--model"', '"--backend"', '"--threads"', '"--int8/--no-int8"'],
    "nerkd/cli/export.py": ['"--model"', '"--output"', '"--overwrite"', '"--input"', '"--int8/--no-int8"'],
    "nerkd/cli/infer.py": ['"--int8/--no-int8"'],
}


def _lengths(path) -> dict[str, int]:
    """Lines per function (decorators included), keyed ``name:line``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    return {f"{f.name}:{f.lineno}": f.end_lineno - min([f.lineno, *(d.lineno for d in f.decorator_list)]) + 1
            for f in functions}


@pytest.mark.parametrize("pattern", SHORT)
def test_functions_are_short(pattern):
    paths = sorted(REPO.glob(pattern))
    assert paths, pattern
    long = {f"{p.relative_to(REPO)}:{name}": n for p in paths for name, n in _lengths(p).items() if n > MAX_LINES}
    assert not long, f"functions over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("module", sorted(SHARED))
def test_shared_options_are_spelled_once(module):
    common = (REPO / "nerkd/cli/common.py").read_text(encoding="utf-8")
    source = (REPO / module).read_text(encoding="utf-8")
    for flag in SHARED[module]:
        assert flag in common, f"{flag} is not defined in nerkd/cli/common.py"
        assert flag not in source, f"{module} spells {flag} itself: use the alias or factory of nerkd/cli/common.py"
