"""The fast probe forest (mfoml.wavelets.fasttree) against scikit-learn and a brute force.

- Tree arrays equal ``RandomForestRegressor``'s (several seeds, depths, leaf sizes, with and
  without bootstrap; continuous data, and data full of ties where scikit-learn's feature order
  decides), in both memory layouts and with two threads.
- Every split attains the best impurity decrease over all features and thresholds (brute
  force in numpy), thresholds are midpoints of consecutive distinct values, node values and
  counts are the weighted class means and counts of the bootstrap sample.
- The sparsity probe's alpha on a real activation layer: fast vs scikit-learn over 5 seeds.
- Sparse layers with ties (issue 27): 60-90 % zeros in float16, constant and all-equal
  columns, splits only at the zero/nonzero boundary, signed zeros, float16 subnormals within
  FEATURE_THRESHOLD of zero; the presort's rows against numpy.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from mfoml.wavelets import fasttree as ft
from mfoml.wavelets.cart_presort import presort
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestRegressor

TREE_ARRAYS = (
    "children_left",
    "children_right",
    "feature",
    "threshold",
    "n_node_samples",
    "weighted_n_node_samples",
    "value",
    "impurity",
)


def _onehot(codes: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes)[codes]


def _assert_same_forest(ref: RandomForestRegressor, fast: ft.FastForestRegressor) -> None:
    assert len(ref.estimators_) == len(fast.estimators_)
    for t, (a, b) in enumerate(zip(ref.estimators_, fast.estimators_, strict=True)):
        assert a.random_state == b.random_state
        assert a.tree_.node_count == b.tree_.node_count, f"tree {t}: node count"
        assert a.tree_.max_depth == b.tree_.max_depth
        for name in TREE_ARRAYS:
            np.testing.assert_array_equal(
                np.asarray(getattr(a.tree_, name)),
                getattr(b.tree_, name),
                err_msg=f"tree {t}: {name}",
            )
        inner = a.tree_.children_left >= 0
        np.testing.assert_array_equal(
            a.tree_.missing_go_to_left[inner], b.tree_.missing_go_to_left[inner]
        )


@pytest.fixture(scope="module")
def continuous() -> tuple[np.ndarray, np.ndarray]:
    """600 x 12 uniform features; 5 classes from 3 features plus label noise (deep trees)."""
    rng = np.random.default_rng(7)
    X = rng.random((600, 12)).astype(np.float32)
    scores = X[:, :3] @ rng.normal(size=(3, 5)) + 0.4 * rng.normal(size=(600, 5))
    return X, _onehot(scores.argmax(axis=1), 5)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn digits: integer pixels 0..16, so nearly every node has tied splits."""
    X, y = load_digits(return_X_y=True)
    return X, _onehot(y, 10)


CONFIGS = [
    {},
    {"max_depth": 3},
    {"max_depth": 8, "min_samples_leaf": 5},
    {"min_samples_split": 12},
    {"bootstrap": False, "max_depth": 10},
    {"max_samples": 0.5, "min_samples_leaf": 0.01},
    {"max_features": "sqrt"},
    {"min_impurity_decrease": 1e-3},
]


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c) for c in CONFIGS])
@pytest.mark.parametrize("seed", [0, 11])
def test_trees_equal_sklearn_continuous(continuous, config, seed):
    X, Y = continuous
    kw = {"n_estimators": 2, "max_features": None, "random_state": seed, **config}
    _assert_same_forest(
        RandomForestRegressor(**kw).fit(X, Y), ft.FastForestRegressor(**kw).fit(X, Y)
    )


@pytest.mark.parametrize("config", [{"max_depth": 15}, {"bootstrap": False}, {"max_features": 0.3}])
def test_trees_equal_sklearn_with_ties(digits, config):
    """Ties everywhere: equality needs scikit-learn's random feature order, reproduced."""
    X, Y = digits
    kw = {"n_estimators": 2, "max_features": None, "random_state": 3, **config}
    _assert_same_forest(
        RandomForestRegressor(**kw).fit(X, Y), ft.FastForestRegressor(**kw).fit(X, Y)
    )


def test_large_n_negative_values_and_degenerate_inputs():
    """More than 65,536 samples (32-bit positions), negative values and -0.0 (the sort key's
    sign handling), constant features, a single class and a single sample."""
    rng = np.random.default_rng(3)
    X = np.round(rng.normal(size=(70_000, 3)), 2).astype(np.float32)
    X[:, 2] = 1.5  # constant
    X[::7, 1] = -0.0
    Y = _onehot((X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=70_000) > 0).astype(int), 2)
    kw = {"n_estimators": 1, "max_features": None, "random_state": 1, "max_depth": 6}
    for bootstrap in (False, True):
        ref = RandomForestRegressor(bootstrap=bootstrap, **kw).fit(X, Y)
        _assert_same_forest(ref, ft.FastForestRegressor(bootstrap=bootstrap, **kw).fit(X, Y))
    Xc = np.ones((30, 2))
    ref = RandomForestRegressor(**kw).fit(Xc, _onehot(np.arange(30) % 3, 3))
    fast = ft.FastForestRegressor(**kw).fit(Xc, _onehot(np.arange(30) % 3, 3))
    _assert_same_forest(ref, fast)
    assert fast.estimators_[0].tree_.node_count == 1
    one = ft.FastForestRegressor(**kw).fit(np.zeros((1, 2)), np.ones((1, 1)))
    assert one.estimators_[0].tree_.node_count == 1


@pytest.mark.parametrize("sparse", [False, True])
def test_layouts_and_threads_give_the_same_tree(continuous, monkeypatch, sparse):
    """Global rows only, dense blocks from tiny nodes on, and the two-thread kernels, on
    continuous data and on a float16 layer with 80 % zeros (``_relu_layer``)."""
    X, Y = _relu_layer(600, 12, 0.8, seed=3) if sparse else continuous
    kw = {"n_estimators": 2, "max_features": None, "random_state": 5}
    ref = RandomForestRegressor(**kw).fit(X, Y)
    for arena_bytes in (6 * 12 * 2, 6 * 12 * 40, 1 << 30):
        monkeypatch.setattr(ft, "ARENA_BYTES", arena_bytes)
        _assert_same_forest(ref, ft.FastForestRegressor(**kw).fit(X, Y))
    monkeypatch.setattr(ft, "PARALLEL_MIN_WORK", 0)
    _assert_same_forest(ref, ft.FastForestRegressor(**kw, n_jobs=2).fit(X, Y))


def _brute_best_decrease(Xn: np.ndarray, yn: np.ndarray, wn: np.ndarray, msl: int) -> float:
    """Largest weighted impurity decrease w·imp(node) − w_L·imp(L) − w_R·imp(R) over every
    feature and every midpoint between consecutive distinct values (Gini/squared error on
    one-hot rows: imp = 1 − Σ_k p_k², up to the 1/L factor)."""

    def wimp(w: np.ndarray, y: np.ndarray) -> float:
        tot = w.sum()
        p = (w[:, None] * y).sum(axis=0) / tot
        return tot * (1.0 - (p**2).sum())

    parent = wimp(wn, yn)
    best = -np.inf
    for f in range(Xn.shape[1]):
        values = np.unique(Xn[:, f])
        for lo, hi in zip(values[:-1], values[1:], strict=True):
            thr = np.float64(lo) / 2.0 + np.float64(hi) / 2.0
            left = Xn[:, f] <= thr
            if left.sum() < msl or (~left).sum() < msl:
                continue
            best = max(best, parent - wimp(wn[left], yn[left]) - wimp(wn[~left], yn[~left]))
    return best


@pytest.mark.parametrize("msl", [1, 3])
def test_every_split_is_a_best_split_by_brute_force(msl):
    rng = np.random.default_rng(msl)
    X = np.round(rng.random((80, 4)) * 6).astype(np.float32) / 6  # ties within features
    codes = (X[:, 0] + X[:, 1] + 0.3 * rng.random(80) > 1.0).astype(int) + (X[:, 2] > 0.5)
    Y = _onehot(codes, 3)
    forest = ft.FastForestRegressor(1, max_features=None, min_samples_leaf=msl, random_state=4).fit(
        X, Y
    )
    tree = forest.estimators_[0].tree_
    seed = forest.estimators_[0].random_state
    counts = np.bincount(np.random.RandomState(seed).randint(0, 80, 80), minlength=80).astype(float)
    # each bootstrap sample's path, by following the thresholds (independent of the builder)
    inside = np.zeros((tree.node_count, 80), dtype=bool)
    inside[0] = True
    for node in range(tree.node_count):
        if tree.children_left[node] >= 0:
            go_left = X[:, tree.feature[node]] <= tree.threshold[node]
            inside[tree.children_left[node]] = inside[node] & go_left
            inside[tree.children_right[node]] = inside[node] & ~go_left
    for node in range(tree.node_count):
        sel = inside[node] & (counts > 0)
        wn, yn = counts[sel], Y[sel]
        assert tree.n_node_samples[node] == sel.sum()
        assert tree.weighted_n_node_samples[node] == wn.sum()
        np.testing.assert_allclose(
            tree.value[node, :, 0], (wn[:, None] * yn).sum(0) / wn.sum(), atol=1e-15
        )
        best = _brute_best_decrease(X[sel], yn, wn, msl)
        if tree.children_left[node] < 0:
            pure = np.count_nonzero((wn[:, None] * yn).sum(0)) == 1
            assert pure or best == -np.inf  # grown to purity (max_depth None) or unsplittable
            continue
        f, thr = tree.feature[node], tree.threshold[node]
        values = np.unique(X[sel, f])
        k = np.searchsorted(values, thr)
        assert np.float64(values[k - 1]) / 2 + np.float64(values[k]) / 2 == thr  # a midpoint
        left = sel & (X[:, f] <= thr)
        right = sel & (X[:, f] > thr)

        def wimp(m: np.ndarray) -> float:
            p = (counts[m][:, None] * Y[m]).sum(0) / counts[m].sum()
            return counts[m].sum() * (1.0 - (p**2).sum())

        decrease = wimp(sel) - wimp(left) - wimp(right)
        assert decrease == pytest.approx(best, rel=1e-12, abs=1e-9), f"node {node}"


def test_tree_methods_equal_sklearn(continuous):
    X, Y = continuous
    kw = {"n_estimators": 3, "max_features": None, "random_state": 2, "max_depth": 9}
    ref = RandomForestRegressor(**kw).fit(X, Y)
    fast = ft.FastForestRegressor(**kw).fit(X, Y)
    Xt = np.random.default_rng(0).random((200, X.shape[1]))  # float64: cast like sklearn
    np.testing.assert_array_equal(ref.apply(Xt), fast.apply(Xt))
    np.testing.assert_array_equal(ref.predict(Xt), fast.predict(Xt))
    for a, b in zip(ref.estimators_, fast.estimators_, strict=True):
        pa = a.tree_.decision_path(Xt.astype(np.float32))
        pb = b.tree_.decision_path(Xt)
        np.testing.assert_array_equal(pa.indptr, pb.indptr)
        np.testing.assert_array_equal(pa.indices, pb.indices)
        np.testing.assert_array_equal(a.predict(Xt), b.predict(Xt))
    np.testing.assert_allclose(ref.feature_importances_, fast.feature_importances_, atol=1e-12)


def test_targets_must_be_one_hot():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="one-hot.*backend='sklearn'"):
        ft.FastForestRegressor(1).fit(X, np.array([[0.5, 0.5], [1, 0], [0, 1], [1, 0]]))
    with pytest.raises(ValueError, match="NaN"):
        ft.FastForestRegressor(1).fit(np.full((4, 2), np.nan), np.eye(2)[[0, 1, 0, 1]])
    single = ft.FastForestRegressor(2, random_state=0).fit(np.arange(8.0)[:, None], np.ones(8))
    assert single.predict(np.zeros((3, 1))).tolist() == [1.0, 1.0, 1.0]


@pytest.fixture(scope="module")
def relu_layer() -> tuple[np.ndarray, np.ndarray]:
    """A real activation layer: the ReLU hidden layer (64 units) of an MLP trained on digits."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier((64,), max_iter=25, random_state=0).fit(X, y)
    hidden = np.maximum(X @ mlp.coefs_[0] + mlp.intercepts_[0], 0.0).astype(np.float16)
    assert (hidden == 0).mean() > 0.2  # ReLU zeros: ties in every feature
    return hidden, y


def test_probe_alpha_fast_vs_sklearn(relu_layer):
    """The issue's acceptance test: mean alpha over 5 seeds within one seed-standard-deviation
    (the forests are identical, so norms and alphas are too); the backend is recorded."""
    from mfoml.wavelets import WaveletForestClassifier, alpha_star, sparsity_probe

    X, y = relu_layer
    alphas = {"fast": [], "sklearn": []}
    for seed in range(5):
        norms = {}
        for backend in alphas:
            res = sparsity_probe(X, y, random_state=seed, backend=backend)
            assert res.metadata["backend"] == backend
            alphas[backend].append(res.alpha)
            model = WaveletForestClassifier(1, max_depth=15, random_state=seed, backend=backend)
            norms[backend] = model.fit(X, y).wavelet_norms_
            # the probe's own fit (without the estimator for "fast") gives the same wavelets
            assert res.metadata["n_wavelets"] == norms[backend].shape[0]
            assert res.alpha == alpha_star(norms[backend], 1).alpha
        np.testing.assert_array_equal(norms["fast"], norms["sklearn"])
    fast, ref = np.array(alphas["fast"]), np.array(alphas["sklearn"])
    assert np.isfinite(ref).all()
    assert abs(fast.mean() - ref.mean()) <= ref.std()
    np.testing.assert_array_equal(fast, ref)


def test_backend_defaults_and_choice(continuous):
    from mfoml.wavelets import WaveletForestClassifier, WaveletForestRegressor, sparsity_probe

    X, Y = continuous
    labels = Y.argmax(axis=1)
    clf = WaveletForestClassifier(2, max_depth=6, random_state=0).fit(X, labels)
    assert clf.backend_ == "fast" and isinstance(clf.forest_, ft.FastForestRegressor)
    ref = WaveletForestClassifier(2, max_depth=6, random_state=0, backend="sklearn").fit(X, labels)
    assert ref.backend_ == "sklearn" and isinstance(ref.forest_, RandomForestRegressor)
    np.testing.assert_array_equal(clf.predict_proba(X[:50]), ref.predict_proba(X[:50]))
    np.testing.assert_array_equal(clf.feature_importances_, ref.feature_importances_)
    reg = WaveletForestRegressor(1, max_depth=4, random_state=0).fit(X, X[:, 0])
    assert reg.backend_ == "sklearn"
    with pytest.raises(ValueError, match="one-hot"):
        WaveletForestRegressor(1, backend="fast").fit(X, X[:, 0])
    with pytest.raises(ValueError, match="'backend' parameter .* among .*'fast'"):
        WaveletForestClassifier(1, backend="gpu").fit(X, labels)
    assert sparsity_probe(X, labels, max_depth=5).metadata["backend"] == "fast"
    assert sparsity_probe(X, X[:, 0], max_depth=5).metadata["backend"] == "sklearn"


# --- sparse layers (issue 27): the builder stores only each feature's nonzeros and walks the
# zeros as one block (mfoml.wavelets.cart_kernels); ReLU-like layers that are mostly zeros,
# float16 ties, constant and all-equal columns, splits only at the zero/nonzero boundary,
# negative values and signed zeros, values within FEATURE_THRESHOLD of zero.


def _fit_both(X: np.ndarray, Y: np.ndarray, **kw: object) -> ft.FastForestRegressor:
    """Fit both backends with ``kw``, assert equal forests, return the fast one."""
    fast = ft.FastForestRegressor(**kw).fit(X, Y)
    _assert_same_forest(RandomForestRegressor(**kw).fit(X, Y), fast)
    return fast


def _relu_layer(n: int, d: int, zeros: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A ReLU layer in float16: a random linear map of 5 latent class-dependent inputs, shifted
    so that a fraction ``zeros`` of the entries is cut to 0; 6 classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, n)
    latent = rng.normal(size=(n, 5)) + np.eye(6, 5)[labels] * 1.5
    pre = latent @ rng.normal(size=(5, d)) + 0.5 * rng.normal(size=(n, d))
    pre -= np.quantile(pre, zeros, axis=0)
    return np.maximum(pre, 0.0).astype(np.float16), _onehot(labels, 6)


SPARSE_CONFIGS = [
    {},
    {"max_depth": 6, "min_samples_leaf": 3},
    {"bootstrap": False, "max_depth": 12},
    {"max_features": "sqrt"},
    {"max_features": 0.3, "min_samples_split": 9},
    {"min_weight_fraction_leaf": 0.01},
    {"max_samples": 0.6, "min_impurity_decrease": 1e-4},
]


@pytest.mark.parametrize("config", SPARSE_CONFIGS, ids=[str(c) for c in SPARSE_CONFIGS])
@pytest.mark.parametrize("zeros", [0.6, 0.9])
def test_relu_float16_layers_equal_sklearn(config, zeros):
    X, Y = _relu_layer(500, 40, zeros, seed=int(zeros * 10))
    assert abs((X == 0).mean() - zeros) < 0.02
    assert len(np.unique(X)) < X.size / 4  # float16: many ties besides the zeros
    _fit_both(X, Y, **{"n_estimators": 2, "max_features": None, "random_state": 7, **config})


def test_degenerate_columns_and_boundary_only_splits():
    """All-zero, all-equal and single-nonzero columns (constant features, tracked down the
    tree), binary {0, v} columns whose only split is the zero/nonzero boundary, {-a, 0, b}
    columns (both boundaries), signed zeros only, and float16 subnormals within
    FEATURE_THRESHOLD (1e-7) of zero, which no split may separate from it."""
    rng = np.random.default_rng(11)
    n = 400
    labels = rng.integers(0, 4, n)
    cols = [
        np.zeros(n),  # all zeros
        np.full(n, 0.5),  # all equal, nonzero
        np.where(np.arange(n) == 17, 2.0, 0.0),  # a single nonzero
        np.where(labels == 1, 1.0, 0.0),  # {0, 1}: the boundary is the only split
        np.where(labels >= 2, 0.25, 0.0) * (rng.random(n) < 0.8),
        np.where(labels == 0, -1.0, np.where(labels == 3, 2.0, 0.0)),  # {-1, 0, 2}
        np.where(rng.random(n) < 0.5, -0.0, 0.0),  # signed zeros only: constant
        np.where(labels == 2, 6e-8, 0.0),  # float16 subnormal: within 1e-7 of 0, constant
        np.where(labels == 2, -6e-8, np.where(labels == 1, 3e-7, 0.0)),
        np.where(rng.random(n) < 0.9, 0.0, rng.integers(1, 4, n) / 4.0),  # 90 % zeros, ties
    ]
    X = np.stack(cols, axis=1).astype(np.float16)
    Y = _onehot(labels, 4)
    assert np.signbit(X[:, 6]).any() and not X[:, 6].any()
    kw = {"n_estimators": 3, "max_features": None, "random_state": 2}
    fast = _fit_both(X, Y, **kw)
    features = np.concatenate([e.tree_.feature for e in fast.estimators_])
    assert not np.isin(features, [0, 1, 6, 7]).any()  # constant columns never split
    for config in ({"bootstrap": False}, {"max_features": 2}, {"min_samples_leaf": 5}):
        _fit_both(X, Y, **{**kw, **config})


def test_zero_boundary_thresholds_are_midpoints():
    """A {0, v} column splits at v / 2 (scikit-learn's midpoint with the zero block), a {-a, 0}
    column at -a / 2; each side is pure."""
    v = np.float16(0.3)
    X = np.array([[0.0, -0.75]] * 6 + [[v, 0.0]] * 4, dtype=np.float16)
    labels = np.array([0] * 6 + [1] * 4)
    fast = _fit_both(X, _onehot(labels, 2), n_estimators=1, bootstrap=False, random_state=0)
    tree = fast.estimators_[0].tree_
    assert tree.node_count == 3
    expected = {0: np.float64(np.float32(v)) / 2.0, 1: -0.375}
    assert tree.threshold[0] == expected[int(tree.feature[0])]


@pytest.mark.parametrize("near", [6e-8, -6e-8])
def test_no_split_within_feature_threshold_of_zero(near):
    """Values 0, ``near`` (a float16 subnormal, within 1e-7 of 0) and ±1: the perfect split
    between 0 and ``near`` is not a candidate for scikit-learn (consecutive values must differ
    by more than FEATURE_THRESHOLD), so the root splits between ``near`` and ±1, impure."""
    far = 1.0 if near > 0 else -1.0
    x = np.repeat(np.array([0.0, near, far], dtype=np.float16), [10, 10, 10])
    assert x[10] != 0
    labels = np.repeat([0, 1, 1], 10)
    fast = _fit_both(x[:, None], _onehot(labels, 2), n_estimators=1, random_state=0)
    tree = fast.estimators_[0].tree_
    assert tree.threshold[0] == np.float64(np.float32(np.float16(near))) / 2.0 + far / 2.0
    assert tree.impurity[tree.children_left[0] if near > 0 else tree.children_right[0]] > 0


@pytest.mark.parametrize("zeros", [0.0, 0.5, 0.95])
def test_presort_keeps_the_nonzeros_sorted(zeros):
    """Each row holds the feature's nonzero samples in value order (negatives first), the
    counts match numpy's, and zeros of either sign are left out."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 70)).astype(np.float32)
    X[rng.random(X.shape) < zeros] = 0.0
    X[rng.random(X.shape) < 0.05] = -0.0
    X[:, 3] = np.round(X[:, 3])  # ties
    samples = np.sort(rng.choice(300, 200, replace=False))
    order, vals, counts = presort(X, samples, n_threads=2)
    Xs = X[samples]
    for f in range(X.shape[1]):
        col = Xs[:, f]
        nz = np.flatnonzero(col != 0)
        expected = nz[np.argsort(col[nz], kind="stable")]
        assert counts[0, f] == np.count_nonzero(col < 0)
        assert counts[1, f] == np.count_nonzero(col > 0)
        k = counts[0, f] + counts[1, f]
        np.testing.assert_array_equal(order[f, :k], expected)
        np.testing.assert_array_equal(vals[f, :k], col[expected])


def test_preload_loads_the_kernels_without_threads():
    """``preload`` (for a process that forks jobs) loads the builder and apply kernels and
    leaves the process with one OS thread (the default threading layer starts none)."""
    import os
    import subprocess
    import sys

    code = (
        "import os, numba\n"
        "from mfoml.wavelets import cart_build, cart_kernels, cart_presort, fasttree\n"
        "fasttree.preload()\n"
        "kernels = (cart_build.build_tree, cart_presort.pack_keys, cart_kernels.apply_tree)\n"
        "print(all(k.signatures for k in kernels), len(os.listdir('/proc/self/task')))\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("NUMBA_THREADING_LAYER", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "1"]


def test_cached_builder_follows_its_kernels():
    """numba caches ``build_tree`` keyed by cart_build.py alone, with the cart_kernels functions
    compiled into it: cart_build.py must change whenever cart_kernels.py does, or a cached
    builder keeps running old kernels. Its KERNELS_DIGEST records the kernels' digest."""
    import hashlib

    from mfoml.wavelets import cart_build, cart_kernels

    digest = hashlib.sha256(Path(cart_kernels.__file__).read_bytes()).hexdigest()[:16]
    assert cart_build.KERNELS_DIGEST == digest, (
        "cart_kernels.py changed: set KERNELS_DIGEST in cart_build.py to " + repr(digest)
    )
