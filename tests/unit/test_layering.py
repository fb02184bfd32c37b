"""The layers, read from the source: who may import whom (no upward imports, also between
brand_signals' rooms), no import circles between modules, product code importing nothing from
benchmarks/ (research included), and every product package installed and saying what it holds.
Run as a script, it prints the import graph by module and by package and room
(`python tests/unit/test_layering.py`)."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
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
# brand_signals' rooms stand under its top-level modules (scanner, catalog, decide, registry, ...):
# a room imports the rooms listed here and, of the top level, only the records; images also takes
# decide.combine (the noisy-OR that joins a logo's head and geometric evidence).
ROOMS = {
    "brand_signals.text": {"brand_signals.records"},
    "brand_signals.feedback": {"brand_signals.records"},
    "brand_signals.images": {"brand_signals.text", "brand_signals.records", "brand_signals.decide"},
}
# a module path or plug-in entry written as a string ("benchmarks.research.logos:LearnedHead")
MODULE_STRING = re.compile(r"benchmarks(\.\w+)+(:\w+)?")


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
                    deps.add(name)      # research or not: no product module may import it
                    continue
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    deps.add(name)
        out[mod] = deps
    return out


def _package(mod: str) -> str:
    return mod.split(".", 1)[0]


def _room(mod: str) -> str:
    """brand_signals.text.wordmarks -> brand_signals.text; brand_signals.records stays itself."""
    return ".".join(mod.split(".")[:2])


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
    wrong = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps
                   if _package(d) in ALLOWED and _package(d) != _package(m) and _package(d) not in ALLOWED[_package(m)]
                   and d not in ALLOWED_MODULES.get(_package(m), ()))
    assert wrong == []


def test_rooms_import_no_module_above_them():
    wrong = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() if _room(m) in ROOMS for d in deps
                   if _package(d) == "brand_signals" and _room(d) not in (_room(m), "brand_signals")
                   and _room(d) not in ROOMS[_room(m)])
    assert wrong == []


def test_no_import_circles():
    assert _cycles(GRAPH) == []


def test_product_code_imports_no_research_module_and_no_benchmark():
    wrong = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps if _package(d) == "benchmarks")
    assert wrong == []


def test_product_code_names_no_benchmark_module_to_load():
    """Imports by name (importlib, plug-in entries like ZEROSCAN_SIGNALS' `module:Class`) too."""
    wrong = []
    for mod, f in modules().items():
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and MODULE_STRING.fullmatch(n.value.strip()):
                wrong.append(f"{mod}:{n.lineno}: {n.value!r}")
    assert wrong == []


def test_a_research_import_is_seen_wherever_it_stands(tmp_path):
    """What the checks above read: a lazy import inside a function counts, and so does a string
    naming a research plug-in."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from benchmarks.research.logos import LearnedHead\n"
                 "SOURCES = ('wordmarks', 'benchmarks.research.logos:LearnedHead')\n")
    assert {_package(d) for d in imports({"brand_signals.m": f})["brand_signals.m"]} == {"benchmarks"}
    assert MODULE_STRING.fullmatch("benchmarks.research.logos:LearnedHead")
    assert not MODULE_STRING.fullmatch("benchmarks/eval_logos_offline.py measures it")


def test_every_product_package_is_installed_and_says_what_it_holds():
    """pyproject's package list is exactly the product's folders (a new room is installed,
    research is not), and each folder's __init__.py opens with a docstring."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    found = {".".join(i.parent.relative_to(ROOT).parts) for pkg in PRODUCT for i in (ROOT / pkg).rglob("__init__.py")}
    assert listed == found
    silent = sorted(p for p in found if not ast.get_docstring(ast.parse((ROOT / p.replace(".", "/") / "__init__.py").read_text())))
    assert silent == []


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
