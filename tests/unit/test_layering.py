"""The layers, read from the source: who may import whom (no upward imports), no import
circles between modules, and product code importing no research module. Run as a script, it
prints the package-level import graph (`python tests/unit/test_layering.py`)."""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("brand_signals", "models", "connectors", "pipelines", "zeroscan")
# package -> the packages it may import (besides itself); zeroscan is the top (CLI, API, portal)
ALLOWED = {
    "models": set(),
    "brand_signals": {"models"},
    "connectors": {"brand_signals", "models"},
    "pipelines": {"brand_signals", "models", "connectors"},
    "zeroscan": {"brand_signals", "models", "connectors", "pipelines"},
}
# and single modules beyond that: the job's entry point reads the one configuration
ALLOWED_MODULES = {"pipelines": {"zeroscan.settings"}}
# research and training code: off in the job, used by benchmarks only (and exempt from the layers)
RESEARCH = ("models.logo_head", "models.train_logo_head", "brand_signals.logos")


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PRODUCT:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> product modules it imports (at any depth of the file, lazy imports too)."""
    out: dict[str, set[str]] = {}
    for mod, f in mods.items():
        deps = set()
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = []
            if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                names = [n.module] + [f"{n.module}.{a.name}" for a in n.names]
            elif isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            for name in names:
                if name.split(".", 1)[0] == "benchmarks":
                    deps.add("benchmarks")
                    continue
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    deps.add(name)
        out[mod] = deps
    return out


def _package(mod: str) -> str:
    return mod.split(".", 1)[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


GRAPH = imports(modules())


def test_no_upward_imports():
    wrong = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() if not m.startswith(RESEARCH) for d in deps
                   if _package(d) != _package(m) and _package(d) not in ALLOWED[_package(m)] and d != "benchmarks"
                   and d not in ALLOWED_MODULES.get(_package(m), ()))
    assert wrong == []


def test_no_import_circles():
    assert _cycles(GRAPH) == []


def test_product_code_imports_no_research_module_and_no_benchmark():
    wrong = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() if not m.startswith(RESEARCH)
                   for d in deps if d.startswith(RESEARCH) or d == "benchmarks")
    assert wrong == []


if __name__ == "__main__":
    edges: dict[str, set[str]] = defaultdict(set)
    for m, deps in sorted(GRAPH.items()):
        print(f"{m}: {', '.join(sorted(deps)) or '-'}")
    for m, deps in GRAPH.items():
        for d in deps:
            a, b = ".".join(m.split(".")[:2]), ".".join(d.split(".")[:2])
            if a != b:
                edges[a].add(b)
    print("\n# by package (and brand_signals' rooms)")
    for a in sorted(edges):
        print(f"{a} -> {', '.join(sorted(edges[a]))}")
    print("\ncircles:", _cycles(GRAPH) or "none")
