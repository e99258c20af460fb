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


# -- import cycles (issue #22 item 18) ---------------------------------------------------------------

def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every import statement, at any depth (inside functions too), except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(root) -> dict[str, set[str]]:
    """nerkd module -> the nerkd modules it imports (``from P import m`` of a module m: an edge to P.m)."""
    files = {}
    for path in sorted((root / "nerkd").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    known = set(files)

    def nearest(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            edges |= {t for t in map(nearest, targets) if t and t != module}
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or None."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_import_graph_sees_function_level_imports():
    graph = import_graph(REPO)
    assert "nerkd.data.sentences" in graph["nerkd.data.annotators"]
    assert "nerkd.stages.infer" in graph["nerkd.stages.report"]        # imported inside a function
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    """No two nerkd modules import each other, directly or through others, not even inside a function
    (only ``if TYPE_CHECKING:`` hints may): each module can be read after the ones it imports."""
    cycle = find_cycle(import_graph(REPO))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
