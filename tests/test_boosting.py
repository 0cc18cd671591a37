"""Tests of the boosted-tree wavelets (mfoml.wavelets.boosting / boosted_trees / xgboost_trees):
telescoping against the libraries' raw predictions, node values, norms and importances against
slow recursions over explicit boxes, M-term curves against direct predictions and path walks,
staged curves against the libraries' staged predictions (small real models)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb
from mfoml.wavelets.boosting import (
    WaveletBoostingClassifier,
    WaveletBoostingRegressor,
    from_sklearn,
)
from scipy.special import expit, logsumexp, softmax
from sklearn.base import clone
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.linear_model import LinearRegression


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    X = rng.uniform(-2, 3, size=(240, 4))
    X[:, 3] = np.round(X[:, 3])  # ties
    y_reg = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2 + 0.1 * rng.normal(size=240)
    y_bin = (X[:, 0] + 0.5 * rng.normal(size=240) > 0.5).astype(int)
    y_multi = (X[:, 0] > 0.5).astype(int) + (X[:, 1] + 0.3 * rng.normal(size=240) > 1.0)
    Xt = rng.uniform(-2.5, 3.5, size=(150, 4))  # partly outside the training box
    yt_reg = np.sin(2 * Xt[:, 0]) + 0.5 * Xt[:, 1] ** 2
    yt_bin = (Xt[:, 0] > 0.5).astype(int)
    yt_multi = (Xt[:, 0] > 0.5).astype(int) + (Xt[:, 1] > 1.0)
    return {
        "X": X, "Xt": Xt,
        "reg": (y_reg, yt_reg), "bin": (y_bin, yt_bin), "multi": (y_multi, yt_multi),
    }  # fmt: skip


def _fit(data, task, **kw):
    params = dict(n_estimators=12, max_depth=3, learning_rate=0.3, random_state=0) | kw
    y = data[task][0]
    cls = WaveletBoostingRegressor if task == "reg" else WaveletBoostingClassifier
    return cls(**params).fit(data["X"], y)


# ------------------------------------------------------------------------------------------
# Slow references: explicit recursion over boxes
# ------------------------------------------------------------------------------------------
def slow_node_values(left, right, value, weight) -> dict[int, float]:
    """Q of every node: weighted mean of the leaf values below, by recursion."""
    out: dict[int, float] = {}

    def walk(node):
        if left[node] < 0:
            out[node] = float(value[node])
            return float(weight[node]) * float(value[node]), float(weight[node])
        a, b = walk(left[node]), walk(right[node])
        out[node] = (a[0] + b[0]) / (a[1] + b[1])
        return a[0] + b[0], a[1] + b[1]

    walk(0)
    return out


def slow_norms(left, right, feature, threshold, q, scale_lr, Xtr, weighting, strict, lo, sc):
    """{node: (norm, parent feature)} for the non-root nodes of one tree.

    Boxes are explicit per-feature intervals; membership of a training point is tested against
    the box (``strict``: x < t goes left, as XGBoost in float32; else x <= t, as sklearn).
    Volumes are measured in the min-max-scaled box [0, 1]^d.
    """
    X32 = np.asarray(Xtr, dtype=np.float32).astype(np.float64)
    n, d = X32.shape
    out = {}

    def inside(box):
        m = np.ones(n, dtype=bool)
        for f, (a, b, a_open) in enumerate(box):
            lo_ok = X32[:, f] > a if a_open else X32[:, f] >= a
            hi_ok = X32[:, f] < b if strict else X32[:, f] <= b
            m &= lo_ok & hi_ok
        return m

    def volume(box):
        v = 1.0
        for f, (a, b, _) in enumerate(box):
            a_s = min(max((a - lo[f]) * sc[f], 0.0), 1.0) if np.isfinite(a) else 0.0
            b_s = min(max((b - lo[f]) * sc[f], 0.0), 1.0) if np.isfinite(b) else 1.0
            v *= max(0.0, b_s - a_s)
        return v

    def walk(node, parent, box):
        if parent >= 0:
            w = inside(box).sum() / n if weighting == "num_samples" else volume(box)
            out[node] = (scale_lr * abs(q[node] - q[parent]) * np.sqrt(w), int(feature[parent]))
        if left[node] < 0:
            return
        f, t = int(feature[node]), float(threshold[node])
        lbox = [list(b) for b in box]
        lbox[f][1] = min(lbox[f][1], t)
        rbox = [list(b) for b in box]
        if t >= rbox[f][0]:
            # right child: x > t (sklearn) or x >= t (XGBoost); open lower end for sklearn
            rbox[f][0], rbox[f][2] = t, not strict
        walk(left[node], node, lbox)
        walk(right[node], node, rbox)

    walk(0, -1, [[-np.inf, np.inf, False] for _ in range(d)])
    return out


def sk_trees(gb):
    est = np.asarray(gb.estimators_)
    return [est[s, k].tree_ for s in range(est.shape[0]) for k in range(est.shape[1])]


def check_against_slow(wav, trees_arrays, lr, Xtr, weighting, strict):
    """Node values, norms, parent features and importances of ``wav`` vs the slow recursion."""
    X = np.asarray(Xtr, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
    sc = np.where(hi > lo, 1.0 / np.where(hi > lo, hi - lo, 1.0), 0.0)
    norms, feats = [], []
    for j, (left, right, feature, threshold, value, weight) in enumerate(trees_arrays):
        q = slow_node_values(left, right, value, weight)
        off = wav.node_offset_[j]
        got_q = wav.node_value_[off : off + len(left)]
        np.testing.assert_allclose(got_q, [q[k] for k in range(len(left))], rtol=1e-12, atol=1e-14)
        slow = slow_norms(left, right, feature, threshold, q, lr, X, weighting, strict, lo, sc)
        assert sorted(slow) == list(range(1, len(left)))
        norms += [slow[k][0] for k in range(1, len(left))]
        feats += [slow[k][1] for k in range(1, len(left))]
    np.testing.assert_allclose(wav.wavelet_norms_, norms, rtol=1e-10, atol=1e-15)
    np.testing.assert_array_equal(wav.wavelet_feature_, feats)
    tau = wav.importance_tau
    imp = np.zeros(X.shape[1])
    for nrm, f in zip(norms, feats, strict=True):
        imp[f] += nrm**tau
    np.testing.assert_allclose(wav.feature_importances_, imp, rtol=1e-10, atol=1e-15)


def slow_mterm(wav, trees_arrays, lr, X, M, strict, default_left=None):
    """Raw M-term prediction by explicit per-sample path walks, keeping the top-M wavelets."""
    rank = {}
    for r, i in enumerate(wav.wavelet_order_):
        rank[(int(wav.wavelet_tree_[i]), int(wav.wavelet_node_[i]))] = r
    X32 = np.asarray(X, dtype=np.float32).astype(np.float64)
    out = wav.init_raw(X)
    for j, (left, right, feature, threshold, value, weight) in enumerate(trees_arrays):
        q = slow_node_values(left, right, value, weight)
        k = wav.tree_output_[j]
        for i, x in enumerate(X32):
            node, acc = 0, lr * q[0]
            while left[node] >= 0:
                v, t = x[feature[node]], threshold[node]
                if np.isnan(v):
                    go = bool(default_left[j][node])
                else:
                    go = v < t if strict else v <= t
                child = left[node] if go else right[node]
                if rank[(j, int(child))] < M:
                    acc += lr * (q[child] - q[node])
                node = child
            out[i, k] += acc
    return out


def sk_arrays(gb):
    return [
        (t.children_left, t.children_right, t.feature, t.threshold, t.value[:, 0, 0],
         t.weighted_n_node_samples)
        for t in sk_trees(gb)
    ]  # fmt: skip


def direct_scores(task, raw, y):
    """Errors of raw predictions, written out directly (not through the module)."""
    if task == "reg":
        return {"mse": np.mean((raw[:, 0] - y) ** 2)}
    if raw.shape[1] == 1:
        p = expit(raw[:, 0])
        ll = -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))
        return {
            "error": np.mean((raw[:, 0] >= 0) != y),
            "log_loss": ll,
            "mse": np.mean((p - y) ** 2),
        }
    P = softmax(raw, axis=1)
    onehot = np.eye(raw.shape[1])[y]
    return {
        "error": np.mean(raw.argmax(1) != y),
        "log_loss": np.mean(logsumexp(raw, axis=1) - raw[np.arange(len(y)), y]),
        "mse": np.mean((P - onehot) ** 2),
    }


# ------------------------------------------------------------------------------------------
# scikit-learn: telescoping, values, norms
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("task", "kw"),
    [("reg", {}), ("reg", {"subsample": 0.6, "loss": "huber"}), ("bin", {}),
     ("multi", {"subsample": 0.7})],
)  # fmt: skip
def test_sklearn_telescoping(data, task, kw):
    m = _fit(data, task, **kw)
    Xt = data["Xt"]
    Xs = m.scale_inputs(Xt)
    trees_per_stage = 3 if task == "multi" else 1
    assert np.asarray(m.model_.estimators_).shape == (12, trees_per_stage)
    if task == "reg":
        np.testing.assert_allclose(m.predict(Xt), m.model_.predict(Xs), rtol=0, atol=1e-12)
        np.testing.assert_allclose(m.predict(Xt, "all"), m.model_.predict(Xs), atol=1e-12)
    else:
        ref = m.model_.decision_function(Xs)
        np.testing.assert_allclose(m.decision_function(Xt), ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(m.predict_proba(Xt), m.model_.predict_proba(Xs), atol=1e-12)
        np.testing.assert_array_equal(m.predict(Xt), m.model_.predict(Xs))
    # the wrapped model is exactly sklearn's gradient boosting on the scaled inputs
    cls = GradientBoostingRegressor if task == "reg" else GradientBoostingClassifier
    params = {k: v for k, v in m.model_.get_params().items()}
    direct = cls(**params).fit(m.scale_inputs(data["X"]), data[task][0])
    if task == "reg":
        np.testing.assert_array_equal(direct.predict(Xs), m.model_.predict(Xs))


def test_external_model_non_constant_init_and_raw_units(data):
    """from_sklearn on a model fitted on raw inputs with a linear init estimator."""
    X, Xt, y = data["X"], data["Xt"], data["reg"][0]
    gb = GradientBoostingRegressor(
        n_estimators=8, max_depth=2, learning_rate=0.5, init=LinearRegression(), random_state=0
    ).fit(X, y)
    wav = from_sklearn(gb, X)
    assert wav.f0_ is None  # sklearn evaluates the init estimator on float32 inputs
    np.testing.assert_allclose(wav.raw_predict(Xt)[:, 0], gb.predict(Xt), rtol=0, atol=1e-12)
    M0 = wav.raw_predict(Xt, 0)[:, 0]
    roots = sum(0.5 * t.value[0, 0, 0] for t in sk_trees(gb))  # squared error: Q_root = mean
    np.testing.assert_allclose(M0, gb.init_.predict(Xt.astype(np.float32)) + roots, atol=1e-12)


def test_node_values_equal_tree_value_for_squared_error(data):
    m = _fit(data, "reg", subsample=0.7)
    for j, t in enumerate(sk_trees(m.model_)):
        off = m.wavelets_.node_offset_[j]
        np.testing.assert_allclose(
            m.wavelets_.node_value_[off : off + t.node_count], t.value[:, 0, 0], atol=1e-12
        )


@pytest.mark.parametrize("weighting", ["num_samples", "volume"])
@pytest.mark.parametrize("task", ["reg", "multi"])
def test_sklearn_norms_against_slow_recursion(data, weighting, task):
    kw = {"n_estimators": 4, "subsample": 0.7, "importance_tau": 0.7}
    m = _fit(data, task, norm_weight=weighting, **kw)
    Xs = m.scale_inputs(data["X"])
    check_against_slow(m.wavelets_, sk_arrays(m.model_), 0.3, Xs, weighting, strict=False)
    # the same model decomposed in raw units (thresholds rescaled for the volumes)
    gb = GradientBoostingRegressor(n_estimators=3, max_depth=3, random_state=0)
    gb.fit(data["X"], data["reg"][0])
    wav = from_sklearn(gb, data["X"], norm_weight=weighting)
    check_against_slow(wav, sk_arrays(gb), 0.1, data["X"], weighting, strict=False)


# ------------------------------------------------------------------------------------------
# M-term approximation, curves, selection
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["reg", "bin", "multi"])
def test_mterm_curve_equals_direct_predictions(data, task, monkeypatch):
    m = _fit(data, task, n_estimators=6)
    wav, Xt, yt = m.wavelets_, data["Xt"], data[task][1]
    Xs = m.scale_inputs(Xt)
    W = m.n_wavelets_
    grid = np.array([0, 1, 3, 10, W // 2, W - 1, W])
    asked = np.concatenate([grid, [W + 5, 3]])
    curve = m.mterm_curve(Xt, yt, asked)  # clipped to W, in the order asked
    np.testing.assert_array_equal(curve["n_terms"], np.concatenate([grid, [W, 3]]))
    for i, M in enumerate(curve["n_terms"]):
        raw = wav.raw_predict(Xs, int(M))
        for key, val in direct_scores(task, raw, yt).items():
            assert curve[key][i] == pytest.approx(val, rel=1e-9, abs=1e-12), (key, M)
        if M in (0, 3, W // 2):
            slow = slow_mterm(wav, sk_arrays(m.model_), 0.3, Xs[:40], int(M), strict=False)
            np.testing.assert_allclose(raw[:40], slow, rtol=0, atol=1e-10)
    # ordering: norms descending; thresholds are the M-th largest norm
    assert np.all(np.diff(wav.sorted_norms_) <= 0)
    np.testing.assert_array_equal(
        curve["threshold"][1:], wav.sorted_norms_[curve["n_terms"][1:] - 1]
    )
    # the same curve in chunks of a few samples
    import mfoml.wavelets.boosted_trees as core

    monkeypatch.setattr(core, "_CURVE_CHUNK_ENTRIES", 7 * wav.n_trees_ * len(wav._levels))
    small = m.mterm_curve(Xt, yt, asked)
    for key in curve:
        np.testing.assert_allclose(small[key], curve[key], rtol=1e-12, atol=1e-14)
    # M = all is the boosted model; M = 0 is f0 plus the roots
    full = m.model_.predict(Xs) if task == "reg" else m.model_.decision_function(Xs)
    np.testing.assert_allclose(wav.raw_predict(Xs, W).reshape(full.shape), full, atol=1e-12)


def test_staged_curve_matches_staged_predictions(data):
    for task in ("reg", "multi"):
        m = _fit(data, task, n_estimators=5)
        Xt, yt = data["Xt"], data[task][1]
        Xs = m.scale_inputs(Xt)
        st = m.staged_curve(Xt, yt)
        assert list(st["n_stages"]) == list(range(6))
        staged = (
            m.model_.staged_predict(Xs) if task == "reg" else m.model_.staged_decision_function(Xs)
        )
        for s, raw in enumerate(staged, start=1):
            raw = raw.reshape(len(Xt), -1)
            for key, val in direct_scores(task, raw, yt).items():
                assert st[key][s] == pytest.approx(val, rel=1e-9, abs=1e-12)
        per_tree = [t.node_count - 1 for t in sk_trees(m.model_)]
        K = 1 if task == "reg" else 3
        cum = np.cumsum(np.add.reduceat(per_tree, np.arange(0, len(per_tree), K)))
        np.testing.assert_array_equal(st["n_wavelets"], np.concatenate([[0], cum]))
        # stage 0: the initial model alone
        f0 = m.model_._raw_predict_init(Xs)
        assert st[list(direct_scores(task, f0, yt))[0]][0] == pytest.approx(
            list(direct_scores(task, f0, yt).values())[0]
        )


def test_select_n_terms(data):
    m = _fit(data, "bin")
    Xt, yt = data["Xt"], data["bin"][1]
    grid = np.arange(0, m.n_wavelets_ + 1, 3)
    curve = m.mterm_curve(Xt, yt, grid)
    M, thr = m.select_n_terms(Xt, yt, grid, metric="log_loss")
    best = int(np.flatnonzero(curve["log_loss"] <= curve["log_loss"].min())[0])
    assert M == curve["n_terms"][best] and thr == curve["threshold"][best]
    assert m.n_terms_ == M and m.threshold_norm_ == thr
    np.testing.assert_allclose(m.decision_function(Xt), m.decision_function(Xt, M))
    M2, _ = m.select_n_terms(Xt, yt, grid, set_default=False)  # error, the default metric
    assert curve["error"][np.searchsorted(grid, M2)] == curve["error"].min()
    assert m.n_terms_ == M


def test_smoothness_and_importance_sum(data):
    from mfoml.wavelets.boosted_trees import alpha_star as core_alpha_star

    m = _fit(data, "reg", n_estimators=20)
    res = m.smoothness()
    ref = core_alpha_star(m.wavelet_norms_, 1)
    assert res.alpha == ref.alpha and res.n_trees == 1
    assert 0 < res.alpha < 5
    ll = m.smoothness("loglog", data["X"], data["reg"][0])
    assert ll.method == "loglog" and np.isfinite(ll.alpha)
    assert m.smoothness("norms").n_tau > 0
    # importance over all wavelets sums the norms (tau = 1); the relevant features lead
    assert m.feature_importances_.sum() == pytest.approx(m.wavelet_norms_.sum())
    assert set(np.argsort(m.feature_importances_)[-2:]) == {0, 1}


def test_estimator_api_and_errors(data):
    m = WaveletBoostingRegressor(5, max_depth=2, learning_rate=0.5, random_state=3)
    assert clone(m).get_params() == m.get_params()
    assert m.fit(data["X"], data["reg"][0]) is m
    m2 = clone(m).fit(data["X"], data["reg"][0])
    np.testing.assert_array_equal(m.predict(data["Xt"]), m2.predict(data["Xt"]))
    assert m.score(data["X"], data["reg"][0]) > 0.5
    with pytest.raises(ValueError, match="n_terms"):
        m.predict(data["Xt"], -1)
    with pytest.raises(ValueError, match="norm_weight"):
        WaveletBoostingRegressor(2, norm_weight="nope").fit(data["X"], data["reg"][0])
    c = WaveletBoostingClassifier(3, random_state=0).fit(
        data["X"], np.array(["a", "b"])[data["bin"][0]]
    )
    assert list(c.classes_) == ["a", "b"]
    # labels never seen in fit count as errors (infinite log loss)
    yt = np.array(["a", "b"])[data["bin"][1]]
    yt[:30] = "z"
    cz, cc = (
        c.mterm_curve(data["Xt"], yt, [0, 2, 5]),
        c.mterm_curve(data["Xt"][30:], yt[30:], [0, 2, 5]),
    )
    np.testing.assert_allclose(cz["error"], (30 + 120 * cc["error"]) / 150)
    assert np.isinf(cz["log_loss"]).all()
    mc = _fit(data, "multi", n_estimators=3)
    codes = data["multi"][1].copy()
    codes[:10] = -1
    full = mc.wavelets_.mterm_curve(mc.scale_inputs(data["Xt"]), codes, [0, 4])
    rest = mc.wavelets_.mterm_curve(mc.scale_inputs(data["Xt"][10:]), codes[10:], [0, 4])
    np.testing.assert_allclose(full["error"], (10 + 140 * rest["error"]) / 150)
    P = mc.predict_proba(data["Xt"][:10], 4)
    brier_unknown = np.mean(P**2)  # target: the zero vector
    assert full["mse"][1] == pytest.approx((10 * brier_unknown + 140 * rest["mse"][1]) / 150)
    with pytest.raises(ValueError, match="2 classes"):
        WaveletBoostingClassifier(2).fit(data["X"], np.zeros(len(data["X"]), dtype=int))


# ------------------------------------------------------------------------------------------
# XGBoost
# ------------------------------------------------------------------------------------------
def xgb_dump_arrays(booster):
    """Tree arrays from the *nested* text dump (get_dump json), independent of save_raw."""
    out = []
    for text in booster.get_dump(dump_format="json", with_stats=True):
        nodes = {}

        def walk(nd, nodes=nodes):
            nodes[nd["nodeid"]] = nd
            for ch in nd.get("children", []):
                walk(ch, nodes)

        walk(json.loads(text))
        n = max(nodes) + 1
        left, right = np.full(n, -1), np.full(n, -1)
        feature, default_left = np.zeros(n, dtype=int), np.zeros(n, dtype=bool)
        thr, value, cover = np.zeros(n), np.zeros(n), np.zeros(n)
        for k, nd in nodes.items():
            cover[k] = np.float32(nd["cover"])  # float32 in XGBoost, printed to 9 digits
            if "leaf" in nd:
                value[k] = np.float32(nd["leaf"])
            else:
                left[k], right[k] = nd["yes"], nd["no"]
                feature[k] = int(nd["split"].lstrip("f"))
                thr[k] = np.float32(nd["split_condition"])
                default_left[k] = nd["missing"] == nd["yes"]
        out.append((left, right, feature, thr, value, cover, default_left))
    return out


def _xgb_model(data, task, **kw):
    params = dict(n_estimators=6, max_depth=3, learning_rate=0.4, n_jobs=1, random_state=0)
    params |= kw
    y = data[task][0]
    cls = xgb.XGBRegressor if task == "reg" else xgb.XGBClassifier
    return cls(**params).fit(_with_nan(data["X"]), y)


def _with_nan(X):
    """Missing values in features 0 and 1, so that the trees learn both default directions."""
    X = X.copy()
    X[::4, 1] = np.nan
    X[1::5, 0] = np.nan
    return X


@pytest.mark.parametrize("task", ["reg", "bin", "multi"])
def test_xgboost_telescoping_leaves_and_float32_thresholds(data, task):
    from mfoml.wavelets.xgboost_trees import from_xgboost

    model = _xgb_model(data, task)
    booster = model.get_booster()
    wav = from_xgboost(model, _with_nan(data["X"]))
    K = 3 if task == "multi" else 1
    assert wav.n_outputs_ == K and wav.n_trees_ == 6 * K and wav.n_stages_ == 6
    arrays = xgb_dump_arrays(booster)
    defaults = np.concatenate([a[6][a[0] >= 0] for a in arrays])
    assert defaults.any() and not defaults.all()
    # inputs on, just below and just above every threshold, plus NaNs (default direction)
    thr = np.concatenate([a[3][a[0] >= 0] for a in arrays]).astype(np.float32)
    feat = np.concatenate([a[2][a[0] >= 0] for a in arrays])
    Xe = np.resize(data["Xt"], (3 * len(thr), 4)).copy()
    for i, (t, f) in enumerate(zip(thr, feat, strict=True)):
        Xe[3 * i, f] = t
        Xe[3 * i + 1, f] = np.nextafter(t, np.float32(-np.inf))
        Xe[3 * i + 2, f] = float(t) + 1e-12  # rounds back to t in float32
    Xe[::7, 1] = np.nan
    Xe = np.vstack([Xe, data["Xt"]])
    dm = xgb.DMatrix(Xe)
    leaf_ref = booster.predict(dm, pred_leaf=True).astype(np.int64).reshape(len(Xe), -1)
    leaves = wav.leaves(Xe) - wav.node_offset_[None, :]
    np.testing.assert_array_equal(leaves, leaf_ref)
    raw = wav.raw_predict(Xe)
    margin = booster.predict(dm, output_margin=True).reshape(len(Xe), K)
    np.testing.assert_allclose(raw, margin, rtol=1e-5, atol=1e-5)  # XGBoost sums in float32
    # exact in float64: f0 + the leaf values of XGBoost's own leaf assignment
    exact = wav.init_raw(Xe)
    for j, a in enumerate(arrays):
        exact[:, wav.tree_output_[j]] += a[4][leaf_ref[:, j]]
    np.testing.assert_allclose(raw, exact, rtol=0, atol=1e-12)
    # M-term predictions against explicit path walks, the curve against direct predictions
    tree_arrays = [a[:6] for a in arrays]
    dl = [a[6] for a in arrays]
    y = data[task][1]
    Xt = data["Xt"]
    curve = wav.mterm_curve(Xt, y, [0, 5, wav.n_wavelets_ // 3, wav.n_wavelets_])
    for i, M in enumerate(curve["n_terms"]):
        direct = wav.raw_predict(Xt, int(M))
        for key, val in direct_scores(task, direct, y).items():
            assert curve[key][i] == pytest.approx(val, rel=1e-9, abs=1e-12)
    slow = slow_mterm(wav, tree_arrays, 1.0, Xe[:60], 5, strict=True, default_left=dl)
    np.testing.assert_allclose(wav.raw_predict(Xe[:60], 5), slow, rtol=0, atol=1e-10)
    # staged curve against XGBoost's own iteration ranges
    st = wav.staged_curve(Xt, y)
    for s in (1, 3, 6):
        m_s = booster.predict(xgb.DMatrix(Xt), output_margin=True, iteration_range=(0, s))
        for key, val in direct_scores(task, m_s.reshape(len(Xt), K).astype(np.float64), y).items():
            assert st[key][s] == pytest.approx(val, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("weighting", ["num_samples", "volume"])
def test_xgboost_norms_against_slow_recursion(data, weighting):
    from mfoml.wavelets.xgboost_trees import from_xgboost

    model = _xgb_model(data, "multi", n_estimators=3, subsample=0.8)
    Xtr = _with_nan(data["X"])  # missing values in the training set
    wav = from_xgboost(model, Xtr, norm_weight=weighting)
    arrays = xgb_dump_arrays(model.get_booster())
    if weighting == "volume":
        check_against_slow(wav, [a[:6] for a in arrays], 1.0, Xtr, weighting, strict=True)
    else:
        # counts: NaN rows follow the default direction, so count with XGBoost's own leaves
        leaf = model.get_booster().predict(xgb.DMatrix(Xtr), pred_leaf=True).astype(int)
        norms = []
        for j, (left, right, _, _, value, cover, _) in enumerate(arrays):
            q = slow_node_values(left, right, value, cover)
            parent = {int(c): p for p in range(len(left)) for c in (left[p], right[p]) if c >= 0}

            def under(node, j=j, left=left, right=right):
                stack, found = [node], []
                while stack:
                    k = stack.pop()
                    if left[k] < 0:
                        found.append(k)
                    else:
                        stack += [left[k], right[k]]
                return np.isin(leaf[:, j], found).mean()

            norms += [abs(q[k] - q[parent[k]]) * np.sqrt(under(k)) for k in range(1, len(left))]
        np.testing.assert_allclose(wav.wavelet_norms_, norms, rtol=1e-10)


def test_xgboost_unsupported_inputs_raise(data):
    from mfoml.wavelets.xgboost_trees import from_xgboost

    lin = xgb.XGBRegressor(n_estimators=2, booster="gblinear", n_jobs=1).fit(
        data["X"], data["reg"][0]
    )
    with pytest.raises(NotImplementedError, match="gbtree"):
        from_xgboost(lin, data["X"])
