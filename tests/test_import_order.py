"""The house's layering, read from the code's own imports: a break fails here, by name.

The packages stand in floors, each importing only those below it (model at the bottom,
bas_deploy, the console script over every command, at the top: it may import every package
and none imports it). A project import inside a function is refused everywhere: it is
how an upward arrow or a circle hides (heavy third-party toolchains stay lazy). Module-level
imports between project modules must form no circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# bottom first
FLOORS = ("model", "runtimes", "segmentation", "converters", "device_bench", "bas_deploy")
# A command that moved up a floor keeps its old module path as a forwarder: that module may
# import the command, and nothing else (test_a_forwarder_only_forwards).
FORWARDERS = {"runtimes.segment": "segmentation.cli", "runtimes.node": "segmentation.node"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in FLOORS
        for path in sorted((ROOT / package).rglob("*.py"))
    }


SOURCES = _sources()


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> Iterator[str]:
    """The project modules an import statement names (a package's ``__init__`` for a name
    that is not a submodule)."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".")
            is_package = SOURCES[module].name == "__init__.py"
            package = package if is_package else package[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
    for target in targets:
        while target and target not in SOURCES:
            target = target.rpartition(".")[0]
        if target and target.split(".")[0] in FLOORS:
            yield target
            if not isinstance(node, ast.Import) and target != node.module:
                break


def _imports(module: str) -> Iterator[tuple[int, bool, str]]:
    """(line, inside a function or class, imported project module) of every import."""
    tree = ast.parse(SOURCES[module].read_text(), str(SOURCES[module]))

    def walk(node: ast.AST, nested: bool) -> Iterator[tuple[int, bool, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                for target in set(_resolve(module, child)):
                    if target != module:
                        yield child.lineno, nested, target
            inner = nested or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
            )
            yield from walk(child, inner)

    yield from walk(tree, False)


def _floor(module: str) -> int:
    return FLOORS.index(module.split(".")[0])


def test_every_package_imports_only_those_below_it() -> None:
    upward = [
        f"{SOURCES[module].relative_to(ROOT)}:{line} imports {target}"
        for module in SOURCES
        for line, _, target in _imports(module)
        if _floor(target) > _floor(module) and FORWARDERS.get(module) != target
    ]
    assert not upward, "imports that run back up:\n" + "\n".join(upward)


@pytest.mark.parametrize("module", sorted(FORWARDERS))
def test_a_forwarder_only_forwards(module: str) -> None:
    """Its docstring, the one import of the command, and the ``__main__`` guard calling it."""
    tree = ast.parse(SOURCES[module].read_text())
    kinds = [type(node).__name__ for node in tree.body]
    assert kinds == ["Expr", "ImportFrom", "If"], kinds
    imported = tree.body[1]
    assert isinstance(imported, ast.ImportFrom)
    assert (imported.module, [a.name for a in imported.names]) == (FORWARDERS[module], ["main"])
    assert ast.unparse(tree.body[2]) == "if __name__ == '__main__':\n    main()"


def test_no_project_import_hides_inside_a_function() -> None:
    hidden = [
        f"{SOURCES[module].relative_to(ROOT)}:{line} imports {target} inside a function"
        for module in SOURCES
        for line, nested, target in _imports(module)
        if nested
    ]
    assert not hidden, "\n".join(hidden)


def _graph() -> dict[str, set[str]]:
    return {
        module: {target for _, nested, target in _imports(module) if not nested}
        for module in SOURCES
    }


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

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
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_two_modules_import_each_other_even_through_others() -> None:
    circles = _circles(_graph())
    assert not circles, "circles of imports:\n" + "\n".join(" <-> ".join(c) for c in circles)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ],
)
def test_the_circle_finder_finds_a_circle_of_three(
    graph: dict[str, set[str]], expected: list[list[str]]
) -> None:
    assert _circles(graph) == expected


def test_the_reader_sees_an_upward_and_a_hidden_import(tmp_path: Path) -> None:
    """The checks above pass only if the reader sees imports at all: a real file of each kind."""
    module = "model.probe_for_layer_test"
    SOURCES[module] = tmp_path / "probe_for_layer_test.py"
    SOURCES[module].write_text(
        "from runtimes.session import Session\n"
        "def f():\n    from . import atomic\n    import device_bench.cli\n"
    )
    try:
        found = sorted(_imports(module))
    finally:
        del SOURCES[module]
    assert found == [
        (1, False, "runtimes.session"),
        (3, True, "model.atomic"),
        (4, True, "device_bench.cli"),
    ]
