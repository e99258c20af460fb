"""House rules that code review alone let slip (issues #11 and #22), checked over the whole package: every
function of nerkd/ stays under 60 lines; a CLI flag used by more than one command is spelled once, in
nerkd/cli/common.py; model names, default model lists and engine loading are decided in one place each; no
import cycle among nerkd modules."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from tests.helpers import REPO

MAX_LINES = 60
# Functions allowed over MAX_LINES while someone splits them, each with the issue item that removes it: none now.
LONG_ALLOWED: dict[str, str] = {}


def _sources(root: Path, folder: str = "nerkd"):
    for path in sorted((root / folder).rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def long_functions(root: Path) -> dict[str, int]:
    """``path:name:line`` -> lines (decorators included) of every function of nerkd/ over MAX_LINES."""
    out = {}
    for path, tree in _sources(root):
        for f in _functions(tree):
            n = f.end_lineno - min([f.lineno, *(d.lineno for d in f.decorator_list)]) + 1
            if n > MAX_LINES:
                out[f"{path.relative_to(root)}:{f.name}:{f.lineno}"] = n
    return out


def test_functions_are_short():
    long = {k: n for k, n in long_functions(REPO).items() if k.rsplit(":", 2)[0] not in LONG_ALLOWED}
    assert not long, f"functions over {MAX_LINES} lines: {long}"


def option_flags(path: Path) -> dict[str, int]:
    """Flags (``--model``, ``-m``; ``--int8/--no-int8`` gives both) spelled in a module's ``typer.Option(...)``
    calls -> the line of the first."""
    flags: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        func = node.func if isinstance(node, ast.Call) else None
        if getattr(func, "attr", getattr(func, "id", None)) != "Option":
            continue
        for arg in node.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("-"):
                for flag in arg.value.split("/"):
                    flags.setdefault(flag.strip(), node.lineno)
    return flags


def respelled_flags(root: Path) -> list[str]:
    """Flags a command module spells itself although nerkd/cli/common.py defines them, or although another
    command module spells them too (then common.py must define them, once)."""
    cli = root / "nerkd" / "cli"
    common = option_flags(cli / "common.py")
    modules = {p: option_flags(p) for p in sorted(cli.glob("*.py")) if p.name != "common.py"}
    uses = Counter(flag for flags in modules.values() for flag in flags)
    return [f"{p.relative_to(root)}:{line}: {flag} " + ("(defined in common.py)" if flag in common else
                                                        f"(spelled in {uses[flag]} command modules)")
            for p, flags in modules.items() for flag, line in flags.items() if flag in common or uses[flag] > 1]


def test_option_flags_are_read():
    flags = option_flags(REPO / "nerkd" / "cli" / "common.py")
    assert {"--model", "-m", "--overwrite", "--int8", "--no-int8", "--config", "-c"} <= set(flags)


def test_shared_options_are_spelled_once():
    """Every nerkd/cli/*.py: a flag shared between commands comes from an alias or factory of common.py."""
    found = respelled_flags(REPO)
    assert not found, "flags spelled outside nerkd/cli/common.py:\n" + "\n".join(found)


def definitions(root: Path, name: str) -> list[str]:
    """``path:line`` of every function called ``name`` in nerkd/ (methods included)."""
    return [f"{path.relative_to(root)}:{f.lineno}" for path, tree in _sources(root) for f in _functions(tree)
            if f.name == name]


def test_one_default_model_list_and_one_engine_loader():
    """bench and report take the same default models under the same names (nerkd/project.py), and every
    command loads an engine from its settings the same way (nerkd/infer: load_engine)."""
    def files(name: str) -> list[str]:
        return [where.rsplit(":", 1)[0] for where in definitions(REPO, name)]

    assert files("default_models") == ["nerkd/project.py"], definitions(REPO, "default_models")
    assert files("parse_models") == ["nerkd/project.py"], definitions(REPO, "parse_models")
    assert files("load_engine") == ["nerkd/infer/__init__.py"], definitions(REPO, "load_engine")


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
    assert "nerkd.stages.bench" in graph["nerkd.cli.bench"]        # imported inside a function
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    """No two nerkd modules import each other, directly or through others, not even inside a function
    (only ``if TYPE_CHECKING:`` hints may): each module can be read after the ones it imports."""
    cycle = find_cycle(import_graph(REPO))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
