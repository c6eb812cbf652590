"""The package's import graph: no module of xmcfit/ imports itself back through others.

Read from the source (ast), so it counts every import a module can make: at the top, inside functions,
under TYPE_CHECKING, and importlib.import_module("xmcfit....") with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import xmcfit

PACKAGE_DIR = Path(xmcfit.__file__).resolve().parent


def _module_files() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """xmcfit modules that module `name` imports: `from pkg import sub` names the submodule, `from pkg
    import thing` the package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found |= {full} if full in modules else ({base} if base in modules else set())
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and node.args[0].value in modules):
            found.add(node.args[0].value)
    return found - {name}


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path start -> ... -> start through the graph, or None (depth-first search)."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(graph[node]):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def test_the_package_has_no_import_cycle():
    modules = _module_files()
    graph = {name: _imported(name, path, modules) for name, path in modules.items()}
    cycles = [" -> ".join(c) for c in (_cycle_from(name, graph) for name in sorted(graph)) if c]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_import_graph_sees_lazy_imports():
    modules = _module_files()
    dispatch = "xmcfit.sparse.dispatch"
    assert "xmcfit.sparse.triton_backend" in _imported(dispatch, modules[dispatch], modules)
