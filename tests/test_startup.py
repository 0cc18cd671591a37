"""Job start-up: a rule script imports only what it uses.

Importing torch costs about 3 s of CPU per job, scikit-learn + pandas + scipy about 2.5 s and
seaborn about 2.4 s; in the default run most jobs are small, so these imports dominated its CPU
time. Each test imports exactly the ``mfoml`` modules a rule script imports at its top level, in
a fresh interpreter, and checks which heavy libraries got loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mfoml.warm_server import top_level_imports  # what the warm-start server preloads

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"
HEAVY = ("torch", "torchvision", "sklearn", "pandas", "scipy", "matplotlib", "seaborn", "numba")

# rule script -> heavy libraries it must NOT load at start-up
FORBIDDEN = {
    "probe.py": {"torch", "torchvision", "sklearn", "matplotlib", "seaborn"},
    "ncc.py": {"torch", "torchvision", "sklearn", "matplotlib", "seaborn", "numba"},
    "aggregate.py": {"torch", "torchvision", "matplotlib", "seaborn", "numba"},
    "folds.py": {"torch", "torchvision", "pandas", "matplotlib", "seaborn", "numba"},
    "data.py": {"torch", "torchvision", "matplotlib", "seaborn", "numba"},
    "ssl_eval.py": {"torch", "torchvision", "matplotlib", "seaborn"},
    "ssl_aggregate.py": {"torch", "torchvision", "matplotlib", "seaborn", "numba"},
    "ssl_figures.py": {"torch", "torchvision", "numba"},
}


def _start(modules: list[str]) -> subprocess.Popen:
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        f"print(json.dumps(sorted(h for h in {HEAVY!r} if h in sys.modules)))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(SCRIPTS))
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _result(proc: subprocess.Popen) -> set[str]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return set(json.loads(out.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def loaded() -> dict[str, set[str]]:
    """Heavy libraries loaded by each rule script's top-level imports (interpreters in parallel)."""
    procs = {
        script: _start([m for m in top_level_imports(str(SCRIPTS / script)) if m != "sys"])
        for script in FORBIDDEN
    }
    procs["<torch module>"] = _start(["mfoml.nets.models"])
    return {name: _result(p) for name, p in procs.items()}


@pytest.mark.parametrize("script", sorted(FORBIDDEN))
def test_rule_script_imports_only_what_it_uses(script: str, loaded: dict[str, set[str]]) -> None:
    bad = loaded[script] & FORBIDDEN[script]
    assert not bad, f"workflow/scripts/{script} loads {sorted(bad)} at start-up"


def test_the_check_sees_heavy_imports(loaded: dict[str, set[str]]) -> None:
    """The probe of loaded libraries itself works (a module that does import torch)."""
    assert "torch" in loaded["<torch module>"]


def test_probe_with_the_fast_builder_never_loads_sklearn() -> None:
    """Not only at start-up: a whole probe (fit, decomposition, alpha) with the default fast
    builder runs without scikit-learn (``import sklearn.base`` alone costs about 2 CPU-s);
    scikit-learn's builder still works in the same process."""
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from mfoml.wavelets.probe import sparsity_probe\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.random((300, 8)).astype(np.float32)\n"
        "y = (X[:, 0] > 0.5).astype(int) + (X[:, 1] > 0.5)\n"
        "fast = sparsity_probe(X, y, max_depth=6)\n"
        "loaded = 'sklearn' in sys.modules\n"
        "ref = sparsity_probe(X, y, max_depth=6, backend='sklearn')\n"
        "print(loaded, fast.metadata['backend'], fast.alpha == ref.alpha)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(SCRIPTS))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "fast", "True"]
