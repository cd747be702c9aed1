"""The shape of the code: modules of one job, imports that go one way (static checks, no I/O)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.paths import REPO_ROOT

MAX_MODULE_LINES = 450
PACKAGES = ("citeqa", "ingest", "service", "evals", "cli")  # pyproject's first-party packages


def _modules() -> dict[str, Path]:
    """Every first-party module by dotted name (a package by its ``__init__``)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(test) if test else False


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import, at module level or inside a function (a late import hides a cycle from
    the interpreter, not from this check), except those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if _type_checking_only(node):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def _targets(node: ast.Import | ast.ImportFrom, name: str, modules: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from the importing module's package
            package = name.split(".")[: len(name.split(".")) - node.level + 1]
            if modules[name].name != "__init__.py":
                package = package[:-1]
            base = ".".join([*package, base] if base else package)
        candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
    targets = set()
    for candidate in candidates:
        while candidate and candidate not in modules:
            candidate = candidate.rpartition(".")[0]  # `import a.b.c` loads a.b.c
        if candidate:
            targets.add(candidate)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges = set().union(*(_targets(node, name, modules) for node in _imports(tree)))
        # a module imports its packages' __init__ first: that is not a dependency on them
        graph[name] = {t for t in edges if t != name and not name.startswith(f"{t}.")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_first_party_modules() -> None:
    graph = import_graph()
    assert "service.api.app" in graph and "service.api.chat" in graph["service.api.app"]
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_late_import_cycle() -> None:
    """The check itself can fail: the cycle app <-> chat that a late import once hid."""
    graph = import_graph()
    graph["service.api.chat"] = graph["service.api.chat"] | {"service.api.app"}
    assert ["service.api.app", "service.api.chat"] in cycles(graph)


def test_no_service_module_is_over_450_lines() -> None:
    long = {
        str(path.relative_to(REPO_ROOT)): lines
        for path in sorted((REPO_ROOT / "service").rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"split these by responsibility (at most {MAX_MODULE_LINES} lines)"
