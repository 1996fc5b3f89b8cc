"""The package's shape: a public API in ``__init__``, private modules, no import cycles."""

import ast
import pathlib

import skinfomax

PACKAGE = pathlib.Path(skinfomax.__file__).parent
DOCS = PACKAGE.parent / "docs"


def test_every_public_name_is_exported_and_documented():
    api = (DOCS / "api.rst").read_text()
    documented = {line.strip() for line in api.splitlines() if line.startswith("   ")}
    for name in skinfomax.__all__:
        assert getattr(skinfomax, name) is not None
        assert name in documented, f"{name} is exported but not on the API page"
    # ...and nothing else public is documented.
    names = {n for n in documented if n.isidentifier()}
    assert names <= set(skinfomax.__all__)


def test_implementation_modules_are_private():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert [m for m in modules if not m.startswith("_")] == []
    # One idea a module: the engine, its evaluation and its CUDA-graph runner are apart.
    assert len(modules) <= 18


def _imports(path):
    """The package modules ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module)
            else:
                found.update(alias.name for alias in node.names)
    return found


def test_no_import_cycles():
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("_*.py")}
    done, path = set(), []

    def visit(module):
        assert module not in path, " -> ".join([*path[path.index(module):], module])
        if module in done:
            return
        path.append(module)
        for other in graph.get(module, ()):
            visit(other)
        path.pop()
        done.add(module)

    for module in graph:
        visit(module)
    assert "_transformer" in graph["_diagnostics"]  # the walk sees real edges
