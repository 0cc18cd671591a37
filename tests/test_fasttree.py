"""The fast probe forest (mfoml.wavelets.fasttree) against scikit-learn and a brute force.

- Tree arrays equal ``RandomForestRegressor``'s (several seeds, depths, leaf sizes, with and
  without bootstrap; continuous data, and data full of ties where scikit-learn's feature order
  decides), in both memory layouts and with two threads.
- Every split attains the best impurity decrease over all features and thresholds (brute
  force in numpy), thresholds are midpoints of consecutive distinct values, node values and
  counts are the weighted class means and counts of the bootstrap sample.
- The sparsity probe's alpha on a real activation layer: fast vs scikit-learn over 5 seeds.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from mfoml.wavelets import fasttree as ft
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


def test_layouts_and_threads_give_the_same_tree(continuous, monkeypatch):
    """Global rows only, dense blocks from tiny nodes on, and the two-thread kernels."""
    X, Y = continuous
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
