"""The house rules of sw/trigkit, checked on the source (sw/docs/architecture.md): data flows one
way between the rooms, no import circles, no private names across modules, small modules and
functions, and the supported firmware ops declared once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "sw" / "trigkit"
#: room -> rooms it may import (besides itself and trigkit.__version__)
ALLOWED = {
    "core": set(),
    "learn": {"core"},
    "l0": {"core", "learn"},
    "offline": {"core", "learn"},
    "firmware": {"core", "learn"},
    "evaluate": {"core", "learn", "l0", "offline"},
    "pipeline": {"core", "learn", "l0", "offline", "evaluate", "firmware"},
    "cli": {"core", "pipeline"},
}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) of every trigkit import, resolved to absolute."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == "trigkit":
                out.append((mod, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names
                    if a.name.split(".")[0] == "trigkit"]
    return out


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _resolve(mod: str, names: list[str], modules: dict[str, Path]) -> list[str]:
    """Modules an import statement depends on (``from pkg import submodule`` included)."""
    deps = [mod] if mod in modules else []
    deps += [f"{mod}.{n}" for n in names if f"{mod}.{n}" in modules]
    return deps


def test_rooms_import_only_what_they_may():
    modules = _modules()
    bad = []
    for name, path in modules.items():
        room = _room(name)
        if room not in ALLOWED:
            continue
        for mod, names, line in _imports(name, path):
            for dep in _resolve(mod, names, modules) or [mod]:
                other = _room(dep)
                if other and other != room and other not in ALLOWED[room]:
                    bad.append(f"{path.relative_to(PKG)}:{line} imports {dep}")
    assert not bad, "arrows against the flow of data:\n" + "\n".join(bad)


def test_no_import_circle():
    modules = _modules()
    graph = {name: {d for mod, names, _ in _imports(name, path)
                    for d in _resolve(mod, names, modules) if d != name}
             for name, path in modules.items()}
    # a package imports its own submodules to re-export them: that is not a circle
    graph = {n: {d for d in deps if not d.startswith(n + ".")} for n, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(d):]
                                                                       + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_no_private_name_crosses_modules():
    modules = _modules()
    bad = [f"{path.relative_to(PKG)}:{line} imports {n} from {mod}"
           for name, path in modules.items() for mod, names, line in _imports(name, path)
           for n in names if n.startswith("_") and n != "__version__"]
    assert not bad, "\n".join(bad)


def test_modules_and_functions_stay_small():
    too_long = []
    for name, path in _modules().items():
        text = path.read_text()
        tree = ast.parse(text)
        doc = ast.get_docstring(tree) or ""
        if len(text.splitlines()) > MAX_MODULE_LINES and "Longer than" not in doc:
            too_long.append(f"{name}: {len(text.splitlines())} lines (state the reason in the "
                            "module docstring: 'Longer than ...')")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {n} lines")
    assert not too_long, "\n".join(too_long)


@pytest.mark.parametrize("module", ["reference", "hls_precision", "trace"])
def test_every_path_implements_the_declared_ops(module):
    """Each integer path checks its handlers against trigkit.firmware.ops at import: importing
    it is the test, and a handler table without a declared op (or the other way) fails."""
    import importlib

    from trigkit.firmware import ops

    mod = importlib.import_module(f"trigkit.firmware.{module}")
    tables = [v for v in vars(mod).values() if isinstance(v, dict) and set(v) == set(ops.OPS)]
    assert tables, f"trigkit.firmware.{module} has no handler table for {sorted(ops.OPS)}"
