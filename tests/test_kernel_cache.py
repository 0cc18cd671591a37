"""numba's on-disk cache of the fast builder, shared by processes (mfoml.wavelets.kernel_cache).

Real processes with their own ``NUMBA_CACHE_DIR``:

- The cache that crashed the pipeline's tabular job is rebuilt on purpose: the kernels cached
  by one process, ``build_tree`` compiled against them by the next (numba then caches it
  without launching the threading layer). A later serial fit crashes with SIGSEGV when the
  layer is not launched (the defect is real here) and fits the same trees as a cold-cache
  fit with ``kernel_cache``'s launch.
- A process's first load of the kernels waits for another process's cache lock.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

FIT = """
import hashlib, sys
import numpy as np
from sklearn.datasets import load_breast_cancer
import mfoml.wavelets.kernel_cache as kc
if sys.argv[1] == "no-launch":
    kc.launch_threading_layer = lambda: None
from mfoml.wavelets.fasttree import FastForestRegressor
X, y = load_breast_cancer(return_X_y=True)
forest = FastForestRegressor(3, random_state=0, n_jobs=1).fit(X, np.eye(2)[y])
h = hashlib.sha256()
for est in forest.estimators_:
    t = est.tree_
    for a in (t.children_left, t.feature, t.threshold, t.value, t.n_node_samples):
        h.update(np.ascontiguousarray(a).tobytes())
print(h.hexdigest())
"""

HOLD = """
import sys
from mfoml.wavelets import kernel_cache
from mfoml.wavelets.cart_build import build_tree
with kernel_cache.cache_lock(build_tree) as held:
    print(held, kernel_cache.lock_path(build_tree), flush=True)
    sys.stdin.read()  # until the test closes stdin
"""


def _env(cache: Path) -> dict[str, str]:
    scripts = str(Path(__file__).resolve().parents[1] / "workflow" / "scripts")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (scripts, env.get("PYTHONPATH")) if p)
    env.pop("NUMBA_THREADING_LAYER", None)
    return env


def _fit(cache: Path, mode: str = "launch") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", FIT, mode],
        capture_output=True,
        text=True,
        env=_env(cache),
        timeout=300,
    )


def _reload_init(cache: Path) -> list:
    """The functions numba runs when it loads the cached ``build_tree`` (field 7 of its entry)."""
    entries = list(cache.glob("*/cart_build.build_tree-*.nbc"))
    assert len(entries) == 1, entries
    return pickle.loads(entries[0].read_bytes())[7]


@pytest.fixture(scope="module")
def crash_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A cache whose ``build_tree`` was compiled against cached kernels, and the digest of the
    trees fitted with an empty cache."""
    cache = tmp_path_factory.mktemp("numba-cache")
    cold = _fit(cache)
    assert cold.returncode == 0, cold.stderr
    assert _reload_init(cache), "a cold compile records the threading layer's launch"
    for f in cache.glob("*/cart_build.*"):
        f.unlink()  # the kernels stay cached; the next fit compiles build_tree against them
    second = _fit(cache)
    assert second.returncode == 0, second.stderr
    assert second.stdout == cold.stdout
    return cache, cold.stdout


def test_builder_cached_against_cached_kernels_fits_the_same_trees(crash_cache):
    """The cache that crashed the pipeline: without the launch the fit dies of SIGSEGV, with
    ``kernel_cache``'s launch it fits the trees of a cold-cache fit."""
    cache, digest = crash_cache
    assert _reload_init(cache) == [], (
        "numba now records the threading layer's launch in a builder compiled against cached "
        "kernels (numba #8578 fixed?): kernel_cache's defect 1 may be gone"
    )
    bare = _fit(cache, "no-launch")
    assert bare.returncode == -11, (bare.returncode, bare.stderr[-2000:])
    fit = _fit(cache)
    assert fit.returncode == 0, fit.stderr
    assert fit.stdout == digest


def test_first_load_waits_for_the_cache_lock(crash_cache):
    """A fit does not load the kernels while another process holds the cache lock, and
    completes once it is released; the lock file lies in the cache directory."""
    cache, digest = crash_cache
    started = time.perf_counter()
    warm = _fit(cache)
    warm_s = time.perf_counter() - started
    assert warm.returncode == 0, warm.stderr
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(cache),
    )
    try:
        held, path = holder.stdout.readline().split()
        assert held == "True"
        assert Path(path).parent.parent == cache
        fitter = subprocess.Popen(
            [sys.executable, "-c", FIT, "launch"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(cache),
        )
        time.sleep(3 * warm_s + 1)
        assert fitter.poll() is None, "the fit ran while another process held the cache lock"
        holder.stdin.close()
        out, err = fitter.communicate(timeout=120)
        assert fitter.returncode == 0, err
        assert out == digest
    finally:
        holder.kill()
        holder.wait()
