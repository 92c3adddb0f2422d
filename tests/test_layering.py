"""The package's layers: no import cycle between its modules, function-level imports included, and device code
(backends/) never reaches up into the build, prediction, validation, offline flows or the CLI (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "latency_lut"
UPPER = ("latency_lut.build", "latency_lut.predict", "latency_lut.validate", "latency_lut.extend",
         "latency_lut.networks", "latency_lut.offline", "latency_lut.cli", "latency_lut.farm", "latency_lut.search",
         "latency_lut.decompose", "latency_lut.dnas", "latency_lut.interop")


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        name = ".".join(p.relative_to(PKG.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, dict[str, int]]:
    """Every latency_lut module each module imports, anywhere in it (top level or inside a function)."""

    def resolve(name: str) -> str:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    out: dict[str, dict[str, int]] = {}
    for m, p in mods.items():
        found: dict[str, int] = {}
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("latency_lut"):
                for a in n.names:
                    full = f"{n.module}.{a.name}"
                    found.setdefault(full if full in mods else resolve(n.module), n.lineno)
            elif isinstance(n, ast.Import):
                for a in n.names:
                    if a.name.startswith("latency_lut"):
                        found.setdefault(resolve(a.name), n.lineno)
        # a package's __init__ re-exporting its own submodules is not a dependency on a layer
        out[m] = {t: line for t, line in found.items() if t != m and t != "latency_lut" and not t.startswith(m + ".")}
    return out


def _cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in graph.get(m, {}):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (c := visit(t)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_no_import_cycle_even_through_function_level_imports():
    graph = _imports(_modules())
    assert len(graph) > 60  # the walk found the package
    assert "latency_lut.decompose.torch_fx" in graph["latency_lut.predict"]  # a function-level import counts
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1}}) is None


def test_device_code_does_not_import_upper_layers():
    graph = _imports(_modules())
    bad = [f"{m} imports {t} (line {line})" for m, ts in graph.items() if m.startswith("latency_lut.backends")
           for t, line in ts.items() if t.startswith(UPPER)]
    assert not bad, bad


def test_only_the_cli_imports_click():
    users = [m for m, p in _modules().items() if not m.startswith("latency_lut.cli")
             and any(isinstance(n, (ast.Import, ast.ImportFrom)) and "click" in
                     ([a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""])
                     for n in ast.walk(ast.parse(p.read_text())))]
    assert not users, users
