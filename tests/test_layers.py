"""The package layout: imports only go down the layers, no import cycle, light ``__init__`` files.

Every module of ``mfoml`` is parsed (its AST, so function-level imports count too) and every
import of an ``mfoml`` module becomes an edge of the module graph. The layers
(docs/architecture.md) are, from the bottom:

    base      mfoml (the package), mfoml._lazy, mfoml.io, mfoml.logs, mfoml.tracking,
              mfoml.layer_measures
    core      mfoml.data, mfoml.wavelets, mfoml.collapse, mfoml.analysis
    models    mfoml.nets, mfoml.tabular, mfoml.plots, mfoml.dynamics, mfoml.similarity
    config    mfoml.config

A module may import its own subpackage and any lower layer, never a higher layer nor another
subpackage of its own layer (those stay independent of each other).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

MFOML = Path(__file__).resolve().parents[1] / "workflow" / "scripts" / "mfoml"

LAYERS = {
    "base": 0,
    "data": 1,
    "wavelets": 1,
    "collapse": 1,
    "analysis": 1,
    "nets": 2,
    "tabular": 2,
    "plots": 2,
    "dynamics": 2,
    "similarity": 2,
    "config": 3,
}
BASE = {
    "mfoml",
    "mfoml._lazy",
    "mfoml.io",
    "mfoml.layer_measures",
    "mfoml.logs",
    "mfoml.tracking",
    "mfoml.warm",
    "mfoml.warm_server",
    "mfoml.warm_child",
    "mfoml.warm_launch",
    "mfoml.warm_proc",
}
HEAVY = ("torch", "torchvision", "sklearn", "pandas", "matplotlib", "scipy", "seaborn")


def module_name(path: Path) -> str:
    rel = path.relative_to(MFOML.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(MFOML.rglob("*.py"))}


def unit(name: str) -> str:
    """The subpackage of a module (``"base"`` for the base modules)."""
    if name in BASE:
        return "base"
    sub = name.split(".")[1]
    if sub not in LAYERS:
        raise AssertionError(
            f"{name}: subpackage {sub!r} has no layer; add it to tests/test_layers.py and "
            "docs/architecture.md"
        )
    return sub


def resolve(module: str, name: str | None) -> str | None:
    """The mfoml module that ``from module import name`` (or ``import module``) loads."""
    if name is not None and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    return module if module in MODULES else None


def edges(name: str) -> set[str]:
    """The mfoml modules imported by module ``name`` (anywhere in its code)."""
    path = MODULES[name]
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mfoml":
                    out.add(resolve(alias.name, None))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".")
                if not is_pkg:
                    base = base[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "mfoml":
                continue
            for alias in node.names:
                out.add(resolve(mod, alias.name))
    out.discard(None)
    out.discard(name)
    return out  # type: ignore[return-value]


GRAPH = {name: edges(name) for name in MODULES}


def test_every_module_has_a_layer() -> None:
    assert "mfoml.data.store" in MODULES and "mfoml.config" in MODULES  # the walk found them
    for name in MODULES:
        unit(name)


def test_imports_only_go_down_the_layers() -> None:
    bad = []
    for src, targets in GRAPH.items():
        for dst in targets:
            a, b = unit(src), unit(dst)
            if a == b:
                continue
            if LAYERS[b] >= LAYERS[a]:
                bad.append(f"{src} ({a}, layer {LAYERS[a]}) imports {dst} ({b}, layer {LAYERS[b]})")
    assert not bad, "imports that do not go down the layers:\n  " + "\n  ".join(sorted(bad))


def test_no_relative_imports() -> None:
    rel = [
        f"{name}:{node.lineno}"
        for name, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert not rel, f"relative imports (use absolute mfoml.* imports): {rel}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or ``None``."""
    color = dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if color.get(nxt, 2) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if color.get(nxt) == 0:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        color[node] = 2
        return None

    for node in sorted(graph):
        if color[node] == 0:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_and_layer_check_catch_violations() -> None:
    """The checks above can fail: a planted cycle and an upward import are reported."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert LAYERS[unit("mfoml.data.store")] < LAYERS[unit("mfoml.nets.models")]
    # the real graph has the edges the layout is built on
    assert "mfoml.collapse.accumulators" in GRAPH["mfoml.nets.losses"]
    assert "mfoml.data.store" in GRAPH["mfoml.data.catalog"]
    store_deps = {unit(d) for d in GRAPH["mfoml.data.store"]}
    assert store_deps <= {"base"}, store_deps  # the store is a leaf of mfoml.data


@pytest.mark.parametrize(
    "modules",
    [
        ["mfoml", "mfoml.data", "mfoml.nets", "mfoml.wavelets", "mfoml.collapse"],
        ["mfoml.analysis", "mfoml.tabular", "mfoml.plots", "mfoml.data.openml"],
        ["mfoml.config", "mfoml.data.catalog", "mfoml.data.store"],
    ],
)
def test_package_inits_and_config_import_nothing_heavy(modules: list[str]) -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(h for h in {HEAVY!r} if h in sys.modules))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(MFOML.parent), "PATH": ""},
    )
    assert res.stdout.strip() == "[]", f"{modules} import {res.stdout.strip()}"


def test_lazy_reexports_resolve() -> None:
    from mfoml.collapse import ClassMeans
    from mfoml.data import load_dataset, prepare_dataset
    from mfoml.wavelets import WaveletForestClassifier, sparsity_probe

    assert WaveletForestClassifier.__module__ == "mfoml.wavelets.forest"
    assert sparsity_probe.__module__ == "mfoml.wavelets.probe"
    assert ClassMeans.__module__ == "mfoml.collapse.accumulators"
    assert prepare_dataset.__module__ == "mfoml.data.catalog"
    assert load_dataset.__module__ == "mfoml.data.store"
    for pkg in ("mfoml.data", "mfoml.nets", "mfoml.wavelets", "mfoml.collapse", "mfoml.analysis",
                "mfoml.tabular", "mfoml.plots"):  # fmt: skip
        mod = __import__(pkg, fromlist=["_"])
        for name in mod.__all__:
            assert getattr(mod, name) is not None, f"{pkg}.{name}"
        with pytest.raises(AttributeError):
            mod.no_such_name  # noqa: B018


def test_no_module_over_about_500_lines() -> None:
    long = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    over = {n: k for n, k in long.items() if k > 560}
    assert not over, f"modules over ~500 lines (split them by concern): {over}"


def _core_rule_violations(source: str) -> list[str]:
    """``print`` calls and any use of the name ``snakemake`` (the Snakemake object, read only by
    the rule scripts) in a module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "print":
                found.append(f"print() at line {node.lineno}")
        if isinstance(node, ast.Name) and node.id == "snakemake":
            found.append(f"snakemake at line {node.lineno}")
        if isinstance(node, ast.Constant) and node.value == "snakemake":
            found.append(f"'snakemake' looked up at line {node.lineno}")
    return found


def test_core_logs_instead_of_print_and_never_reads_the_snakemake_object() -> None:
    bad = {n: v for n, p in MODULES.items() if (v := _core_rule_violations(p.read_text()))}
    assert not bad, f"print or the Snakemake object inside mfoml (use logging; pass it in): {bad}"
    # the check sees both
    sample = 'print(1)\njob = getattr(main, "snakemake", None)\nsnakemake.log[0]\n'
    assert len(_core_rule_violations(sample)) == 3
