"""Tests of mfoml.wavelets: telescoping, norms against a slow recursive implementation,
M-term curves, selection, importances and edge cases (real scikit-learn forests)."""

from __future__ import annotations

import numpy as np
import pytest
from mfoml.wavelets.forest import WaveletForestClassifier, WaveletForestRegressor
from sklearn.base import clone
from sklearn.ensemble import RandomForestRegressor


# ------------------------------------------------------------------------------------------
# Slow, obviously-correct reference: recursive walk with explicit boxes and membership tests
# ------------------------------------------------------------------------------------------
def slow_tree_norms(tree, Xs: np.ndarray, weighting: str) -> dict[int, float]:
    """Norm of every non-root node's wavelet, by explicit recursion over boxes.

    A node's box is a list of (lo, hi] intervals per feature; membership of a training point is
    tested directly against the box (sklearn sends x left when x[f] <= threshold).
    """
    X64 = np.asarray(Xs, dtype=np.float64)
    n, d = X64.shape
    value = np.array(tree.value[:, :, 0], dtype=np.float64)
    out: dict[int, float] = {}

    def members(box):
        inside = np.ones(n, dtype=bool)
        for f in range(d):
            lo, hi = box[f]
            inside &= (X64[:, f] > lo) & (X64[:, f] <= hi)
        return int(inside.sum())

    def volume(box):
        v = 1.0
        for f in range(d):
            lo, hi = box[f]
            v *= max(0.0, min(hi, 1.0) - max(lo, 0.0))
        return v

    def walk(node, parent, box):
        if parent >= 0:
            w = members(box) / n if weighting == "num_samples" else volume(box)
            out[node] = float(np.linalg.norm(value[node] - value[parent]) * np.sqrt(w))
        left, right = tree.children_left[node], tree.children_right[node]
        if left < 0:
            return
        f, t = tree.feature[node], float(tree.threshold[node])
        lbox = [list(b) for b in box]
        lbox[f][1] = min(lbox[f][1], t)
        rbox = [list(b) for b in box]
        rbox[f][0] = max(rbox[f][0], t)
        walk(left, node, lbox)
        walk(right, node, rbox)

    walk(0, -1, [[-np.inf, np.inf] for _ in range(d)])
    return out


def path_sum_predict(model, X, keep) -> np.ndarray:
    """Prediction from an explicit per-sample path walk keeping wavelets where keep(t, node)."""
    Xs = model.scale_inputs(X).astype(np.float64)
    J = len(model.forest_.estimators_)
    res = []
    for x in Xs:
        total = 0.0
        for t, est in enumerate(model.forest_.estimators_):
            tree = est.tree_
            val = tree.value[:, :, 0]
            node = 0
            acc = val[0].copy()
            while tree.children_left[node] >= 0:
                parent = node
                if x[tree.feature[node]] <= tree.threshold[node]:
                    node = tree.children_left[node]
                else:
                    node = tree.children_right[node]
                if keep(t, node):
                    acc += val[node] - val[parent]
            total = total + acc
        res.append(total / J)
    return np.array(res)


@pytest.fixture
def reg_data(rng):
    X = rng.normal(size=(300, 4))
    X[:, 2] = np.round(X[:, 2])  # ties in one feature
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2 + 0.1 * rng.normal(size=300)
    return X, y


# ------------------------------------------------------------------------------------------
# Telescoping
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_trees", [1, 4])
@pytest.mark.parametrize("multi", [False, True])
def test_telescoping_regression(reg_data, rng, n_trees, multi):
    X, y = reg_data
    if multi:
        y = np.column_stack([y, rng.normal(size=y.shape[0]), X[:, 0]])
    m = WaveletForestRegressor(n_trees, max_depth=9, random_state=3).fit(X, y)
    Xt = rng.normal(size=(200, 4)) * 1.5  # partly outside the training range
    ref = m.forest_.predict(m.scale_inputs(Xt))
    np.testing.assert_allclose(m.predict(Xt), ref, rtol=0, atol=1e-10)
    assert m.predict(Xt).shape == ref.shape
    # forest_ is exactly the RandomForestRegressor with the same parameters on scaled inputs
    rf = RandomForestRegressor(
        n_trees, criterion="squared_error", max_depth=9, max_features=None, random_state=3
    ).fit(m.scale_inputs(X), y)
    np.testing.assert_array_equal(rf.predict(m.scale_inputs(Xt)), ref)


@pytest.mark.parametrize("n_trees", [1, 5])
def test_telescoping_classification(rng, n_trees):
    X = rng.normal(size=(400, 3))
    labels = np.array(["cat", "dog", "emu"])
    y = labels[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.7).astype(int)]
    m = WaveletForestClassifier(n_trees, max_depth=7, random_state=0).fit(X, y)
    assert list(m.classes_) == ["cat", "dog", "emu"]
    Xt = rng.normal(size=(150, 3))
    ref = m.forest_.predict(m.scale_inputs(Xt))
    P = m.predict_proba(Xt)
    np.testing.assert_allclose(P, ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-10)
    np.testing.assert_array_equal(m.predict(Xt), m.classes_[np.argmax(ref, axis=1)])
    assert m.score(X, y) > 0.9


def test_inputs_not_modified_and_scaling(reg_data):
    X, y = reg_data
    X0 = X.copy()
    m = WaveletForestRegressor(2, max_depth=5, random_state=0).fit(X, y)
    m.predict(X)
    m.mterm_curve(X, y, [0, 3])
    np.testing.assert_array_equal(X, X0)
    Xs = m.scale_inputs(X)
    assert Xs.dtype == np.float32
    np.testing.assert_allclose(Xs.min(axis=0), 0.0, atol=1e-7)
    np.testing.assert_allclose(Xs.max(axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose(Xs, (X - X.min(0)) / (X.max(0) - X.min(0)), atol=1e-6)


# ------------------------------------------------------------------------------------------
# Norms against the slow recursion
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weighting", ["num_samples", "volume"])
@pytest.mark.parametrize(
    ("n_trees", "depth", "task"), [(1, 3, "reg"), (3, 6, "reg"), (2, None, "clf")]
)
def test_norms_match_slow_recursive(rng, weighting, n_trees, depth, task):
    X = rng.uniform(-2, 3, size=(160, 3))
    if task == "reg":
        y = X[:, 0] * X[:, 1] + np.cos(3 * X[:, 2])
        m = WaveletForestRegressor(n_trees, max_depth=depth, norm_weight=weighting, random_state=1)
    else:
        y = (X[:, 0] + X[:, 1] > 1).astype(int) + (X[:, 2] > 2)
        m = WaveletForestClassifier(n_trees, max_depth=depth, norm_weight=weighting, random_state=1)
    m.fit(X, y)
    Xs = m.scale_inputs(X)
    expected = []
    for est in m.forest_.estimators_:
        slow = slow_tree_norms(est.tree_, Xs, weighting)
        assert sorted(slow) == list(range(1, est.tree_.node_count))  # all non-root nodes
        expected.extend(slow[k] for k in range(1, est.tree_.node_count))
    np.testing.assert_allclose(m.wavelet_norms_, expected, rtol=1e-12, atol=1e-15)
    # the root's children specifically (the reference computes ||Q_child - 2 Q_root||)
    tree = m.forest_.estimators_[0].tree_
    q = tree.value[:, :, 0]
    for child in (tree.children_left[0], tree.children_right[0]):
        idx = np.flatnonzero((m.wavelet_tree_ == 0) & (m.wavelet_node_ == child))[0]
        if weighting == "num_samples":
            leaf = tree.apply(Xs)
            w = np.isin(leaf, np.flatnonzero(_descendants(tree, child))).sum() / X.shape[0]
        else:
            w = _root_child_volume(tree, child)
        assert m.wavelet_norms_[idx] == pytest.approx(np.linalg.norm(q[child] - q[0]) * np.sqrt(w))
    assert m.n_wavelets_ == sum(e.tree_.node_count - 1 for e in m.forest_.estimators_)


def _descendants(tree, node):
    mask = np.zeros(tree.node_count, dtype=bool)
    stack = [node]
    while stack:
        k = stack.pop()
        mask[k] = True
        if tree.children_left[k] >= 0:
            stack += [tree.children_left[k], tree.children_right[k]]
    return mask


def _root_child_volume(tree, child):
    t = float(tree.threshold[0])
    return t if child == tree.children_left[0] else 1.0 - t


def _parent(tree, node):
    hits = np.flatnonzero((tree.children_left == node) | (tree.children_right == node))
    return int(hits[0])


# ------------------------------------------------------------------------------------------
# M-term approximation
# ------------------------------------------------------------------------------------------
def test_mterm_predict_matches_explicit_path_walk(reg_data):
    X, y = reg_data
    m = WaveletForestRegressor(3, max_depth=5, random_state=0).fit(X, y)
    rank = np.empty(m.n_wavelets_, dtype=int)
    rank[np.argsort(-m.wavelet_norms_, kind="stable")] = np.arange(m.n_wavelets_)
    lookup = {
        (int(t), int(n)): int(r)
        for t, n, r in zip(m.wavelet_tree_, m.wavelet_node_, rank, strict=True)
    }
    for M in (0, 1, 7, 40, m.n_wavelets_):
        slow = path_sum_predict(m, X[:40], lambda t, node, M=M: lookup[(t, node)] < M)
        np.testing.assert_allclose(m.predict(X[:40], n_terms=M), slow[:, 0], atol=1e-12)
    # M = 0: average of root means; M = all: the forest
    roots = np.mean([e.tree_.value[0, 0, 0] for e in m.forest_.estimators_])
    np.testing.assert_allclose(m.predict(X[:5], n_terms=0), roots, atol=1e-14)
    np.testing.assert_allclose(
        m.predict(X, n_terms="all"), m.forest_.predict(m.scale_inputs(X)), atol=1e-10
    )
    # sorted norms are non-increasing, ties broken by (tree, node)
    assert np.all(np.diff(m.sorted_norms_) <= 0)


def test_mterm_curve_matches_predict_regression(reg_data, rng):
    X, y = reg_data
    Xv, yv = rng.normal(size=(120, 4)), rng.normal(size=120)
    m = WaveletForestRegressor(4, max_depth=6, random_state=0).fit(X, y)
    Ms = np.array([m.n_wavelets_, 0, 3, 3, 50, 17, 10**9])  # unsorted, duplicate, too large
    curve = m.mterm_curve(Xv, yv, Ms)
    direct = [np.mean((m.predict(Xv, n_terms=int(min(k, m.n_wavelets_))) - yv) ** 2) for k in Ms]
    np.testing.assert_allclose(curve["mse"], direct, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(curve["n_terms"], np.minimum(Ms, m.n_wavelets_))
    assert curve["threshold"][1] == np.inf
    assert curve["threshold"][2] == m.sorted_norms_[2]


def test_mterm_curve_matches_predict_classification(rng):
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0.5)
    Xv = rng.normal(size=(150, 4))
    yv = (Xv[:, 0] > 0).astype(int) + 2 * (Xv[:, 1] > 0.5)
    yv[:5] = 7  # a label never seen in training: always an error
    m = WaveletForestClassifier(3, max_depth=6, random_state=2).fit(X, y)
    Ms = np.arange(0, m.n_wavelets_ + 1, 5)
    curve = m.mterm_curve(Xv, yv, Ms)
    err = [np.mean(m.predict(Xv, n_terms=int(k)) != yv) for k in Ms]
    onehot = (yv[:, None] == m.classes_[None, :]).astype(float)
    mse = [np.mean((m.predict_proba(Xv, n_terms=int(k)) - onehot) ** 2) for k in Ms]
    np.testing.assert_allclose(curve["error"], err, atol=1e-12)
    np.testing.assert_allclose(curve["mse"], mse, rtol=1e-10, atol=1e-12)
    assert curve["error"][-1] == pytest.approx(np.mean(m.predict(Xv) != yv))
    # the raw truncated output is not a probability; normalize=True makes it one
    P = m.predict_proba(Xv, n_terms=3, normalize=True)
    assert np.all(P >= 0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)


def test_select_n_terms(reg_data, rng):
    X, y = reg_data
    Xv = rng.normal(size=(150, 4))
    yv = np.sin(2 * Xv[:, 0]) + 0.5 * Xv[:, 1] ** 2
    m = WaveletForestRegressor(2, max_depth=None, random_state=0).fit(X, y)
    grid = np.arange(m.n_wavelets_ + 1)
    direct = np.array([np.mean((m.predict(Xv, n_terms=int(k)) - yv) ** 2) for k in grid])
    M, thr = m.select_n_terms(Xv, yv)
    assert M == int(np.argmin(direct))
    assert thr == m.sorted_norms_[M - 1]
    assert m.n_terms_ == M
    np.testing.assert_array_equal(m.predict(Xv), m.predict(Xv, n_terms=M))
    assert not np.array_equal(m.predict(Xv), m.predict(Xv, n_terms="all"))
    # without set_default nothing changes
    m2 = WaveletForestRegressor(2, max_depth=None, random_state=0).fit(X, y)
    assert m2.select_n_terms(Xv, yv, set_default=False) == (M, thr)
    assert m2.n_terms_ == m2.n_wavelets_


def _sse(model, X, y, keep):
    return float(np.sum((path_sum_predict(model, X, keep)[:, 0] - y) ** 2))


def test_training_error_identity_for_ancestor_closed_sets(rng):
    """Single tree, no bootstrap, num_samples weighting: for every ancestor-closed wavelet set
    S, the training SSE is SSE(all) + N * sum of squared norms left out. Hence the training error
    is non-increasing along any M-term order in which parents come before children."""
    X = rng.uniform(size=(120, 2))
    y = np.sin(4 * X[:, 0]) + X[:, 1] + 0.2 * rng.normal(size=120)
    m = WaveletForestRegressor(1, max_depth=6, bootstrap=False, random_state=0).fit(X, y)
    tree = m.forest_.estimators_[0].tree_
    N = X.shape[0]
    sq = {int(n): float(v) ** 2 for n, v in zip(m.wavelet_node_, m.wavelet_norms_, strict=True)}
    sse_all = _sse(m, X, y, lambda t, node: True)
    depth = _depths(tree)
    for dmax in range(0, 7):
        kept = {n for n in sq if depth[n] <= dmax}
        sse = _sse(m, X, y, lambda t, node, kept=kept: node in kept)
        assert sse == pytest.approx(sse_all + N * sum(v for n, v in sq.items() if n not in kept))
    # a random ancestor-closed set: keep each child of a kept node with probability 1/2
    kept, stack = set(), [0]
    while stack:
        k = stack.pop()
        for c in (tree.children_left[k], tree.children_right[k]):
            if c >= 0 and rng.random() < 0.6:
                kept.add(int(c))
                stack.append(int(c))
    sse = _sse(m, X, y, lambda t, node: node in kept)
    assert sse == pytest.approx(sse_all + N * sum(v for n, v in sq.items() if n not in kept))
    # along the sorted order, the curve is non-increasing over the M whose top-M set is closed
    curve = m.mterm_curve(X, y)["mse"] * N
    parent = {
        int(c): k
        for k in range(tree.node_count)
        for c in (tree.children_left[k], tree.children_right[k])
        if c >= 0
    }
    closed_M, kept = [0], set()
    for M, idx in enumerate(m.wavelet_order_, start=1):
        kept.add(int(m.wavelet_node_[idx]))
        if all(parent[n] == 0 or parent[n] in kept for n in kept):
            closed_M.append(M)
    assert len(closed_M) > 5
    assert np.all(np.diff(curve[closed_M]) <= 1e-9)
    assert curve[-1] == pytest.approx(sse_all, abs=1e-9)


def _depths(tree):
    depth = np.zeros(tree.node_count, dtype=int)
    for k in range(tree.node_count):  # children have larger ids than their parent
        for c in (tree.children_left[k], tree.children_right[k]):
            if c >= 0:
                depth[c] = depth[k] + 1
    return depth


def test_mterm_training_error_can_increase_when_child_precedes_parent():
    """Counterexample to 'training error is non-increasing in M' for norm-sorted M-term:
    four equal groups with means 0.5, -2.5, 1, 1. The root splits {A,B}|{C,D}, the parent of
    A and B has mean -1 and norm^2 1/2, while A and B have norm^2 2.25/4 > 1/2, so A comes first
    and, added without its parent, moves A's prediction from 0 to 1.5 (target 0.5)."""
    x = np.repeat(np.arange(4.0), 25)[:, None] + np.tile(np.linspace(0, 0.5, 25), 4)[:, None]
    y = np.repeat([0.5, -2.5, 1.0, 1.0], 25)
    m = WaveletForestRegressor(1, max_depth=None, bootstrap=False, random_state=0).fit(x, y)
    assert m.n_wavelets_ == 4
    np.testing.assert_allclose(np.sort(m.wavelet_norms_**2), [0.5, 0.5, 2.25 / 4, 2.25 / 4])
    curve = m.mterm_curve(x, y)["mse"]
    assert curve[1] > curve[0]  # adding the largest wavelet increases the training error
    assert curve[-1] == pytest.approx(0.0, abs=1e-20)


# ------------------------------------------------------------------------------------------
# Feature importance
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_feature_importances_use_parent_split_feature(rng, tau):
    X = rng.uniform(size=(250, 5))
    y = np.where(X[:, 3] > 0.5, 2.0, 0.0) + X[:, 1]
    m = WaveletForestRegressor(3, max_depth=5, random_state=0, importance_tau=tau).fit(X, y)
    expected = np.zeros(5)
    Xs = m.scale_inputs(X)
    for est in m.forest_.estimators_:
        tree = est.tree_
        slow = slow_tree_norms(tree, Xs, "num_samples")
        for node, norm in slow.items():
            expected[tree.feature[_parent(tree, node)]] += norm**tau
    expected /= 3
    np.testing.assert_allclose(m.feature_importances_, expected, rtol=1e-12)
    assert np.argmax(m.feature_importances_) == 3
    # a depth-1 tree: both children are leaves and still count for the root's split feature
    stump = WaveletForestRegressor(1, max_depth=1, random_state=0).fit(X, y)
    f = stump.forest_.estimators_[0].tree_.feature[0]
    assert stump.feature_importances_[f] == pytest.approx(stump.wavelet_norms_.sum())


# ------------------------------------------------------------------------------------------
# Edge cases and estimator API
# ------------------------------------------------------------------------------------------
def test_constant_features_and_duplicates(rng):
    X = rng.normal(size=(100, 3))
    X[:, 1] = 5.0  # constant feature
    X = np.vstack([X, X[:30]])  # duplicate points
    y = X[:, 0] ** 2
    m = WaveletForestRegressor(2, max_depth=None, random_state=0).fit(X, y)
    Xs = m.scale_inputs(X)
    assert np.isfinite(Xs).all()
    np.testing.assert_array_equal(Xs[:, 1], 0.0)
    assert m.feature_importances_[1] == 0.0
    assert np.isfinite(m.wavelet_norms_).all()
    np.testing.assert_allclose(m.predict(X), m.forest_.predict(Xs), atol=1e-10)
    mv = WaveletForestRegressor(2, norm_weight="volume", random_state=0).fit(X, y)
    assert np.isfinite(mv.wavelet_norms_).all()


def test_single_class_and_constant_target(rng):
    X = rng.normal(size=(50, 2))
    c = WaveletForestClassifier(3, random_state=0).fit(X, np.full(50, 4))
    assert c.n_wavelets_ == 0
    np.testing.assert_array_equal(c.predict(X), 4)
    np.testing.assert_allclose(c.predict_proba(X), 1.0)
    curve = c.mterm_curve(X, np.full(50, 4), [0, 1])
    np.testing.assert_array_equal(curve["error"], 0.0)
    assert c.select_n_terms(X, np.full(50, 4)) == (0, np.inf)
    r = WaveletForestRegressor(2, random_state=0).fit(X, np.full(50, 1.5))
    assert r.n_wavelets_ == 0
    np.testing.assert_allclose(r.predict(X), 1.5)


def test_nan_and_shape_errors(rng):
    X = rng.normal(size=(40, 3))
    y = rng.normal(size=40)
    Xn = X.copy()
    Xn[7, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        WaveletForestRegressor(1).fit(Xn, y)
    m = WaveletForestRegressor(1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="NaN"):
        m.predict(Xn)
    with pytest.raises(ValueError, match="features"):
        m.predict(X[:, :2])
    with pytest.raises(ValueError, match="samples"):
        WaveletForestRegressor(1).fit(X, y[:-1])
    with pytest.raises(ValueError, match="norm_weight"):
        WaveletForestRegressor(1, norm_weight="area").fit(X, y)
    with pytest.raises(ValueError, match="n_terms"):
        m.predict(X, n_terms=-1)


def test_float16_memmap_input(tmp_path, rng):
    X = rng.normal(size=(200, 6)).astype(np.float16)
    path = tmp_path / "layer.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    y = (X[:, 0] > 0).astype(int)
    a = WaveletForestClassifier(1, max_depth=6, random_state=0).fit(mm, y)
    b = WaveletForestClassifier(1, max_depth=6, random_state=0).fit(X.astype(np.float32), y)
    np.testing.assert_array_equal(a.wavelet_norms_, b.wavelet_norms_)
    np.testing.assert_array_equal(a.predict(mm), b.predict(X.astype(np.float32)))


def test_sklearn_estimator_api(reg_data):
    X, y = reg_data
    m = WaveletForestRegressor(2, max_depth=4, norm_weight="volume", random_state=0)
    params = m.get_params()
    assert params["norm_weight"] == "volume" and params["n_estimators"] == 2
    c = clone(m)
    assert c.fit(X, y) is c
    assert not hasattr(m, "forest_")
    assert c.score(X, y) > 0.5


def test_curve_and_scaling_in_small_chunks(monkeypatch, rng):
    import mfoml.wavelets.base as base
    import mfoml.wavelets.scaling as scaling

    X = rng.normal(size=(300, 5))
    y = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(int) + (X[:, 2] > 1)
    Xv = rng.normal(size=(257, 5))
    yv = (Xv[:, 0] + Xv[:, 1] ** 2 > 0.5).astype(int) + (Xv[:, 2] > 1)
    m = WaveletForestClassifier(3, max_depth=7, random_state=0).fit(X, y)
    full = m.mterm_curve(Xv, yv)
    Xs = m.scale_inputs(Xv)
    monkeypatch.setattr(base, "_CURVE_CHUNK_ELEMENTS", 500)  # a few samples per chunk
    monkeypatch.setattr(scaling, "_SCALE_CHUNK_BYTES", 64)  # 16 rows per scaling block
    small = m.mterm_curve(Xv, yv)
    np.testing.assert_allclose(small["mse"], full["mse"], rtol=1e-12)
    np.testing.assert_array_equal(small["error"], full["error"])
    np.testing.assert_array_equal(m.scale_inputs(Xv), Xs)
    m2 = WaveletForestClassifier(3, max_depth=7, random_state=0).fit(X, y)
    np.testing.assert_array_equal(m2.wavelet_norms_, m.wavelet_norms_)
