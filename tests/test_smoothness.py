"""Tests of mfoml.wavelets.smoothness: the angle estimators against direct formulas, scale invariance,
reported conditions, and alpha's behaviour on data of known regularity (real forests)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from mfoml.wavelets.forest import WaveletForestRegressor
from mfoml.wavelets.probe import sparsity_probe
from mfoml.wavelets.smoothness import (
    AlphaResult,
    alpha_loglog,
    alpha_star,
    angle_curve,
    epsilon_grid,
    n_tau,
    tau_grid,
)

TAUS = np.round(np.arange(0.3, 2.0 - 1e-9, 0.01), 10)


def reference_eps(e1: float, e2: float, K: int) -> np.ndarray:
    """The reference code's tolerance grid, literally."""
    step = (e2 - e1) / K
    return np.arange(e1, e2, step)


EPS = reference_eps(0.1, 0.4, 10)


def naive_reference_alpha(norms, J):
    """The reference convention written out directly in float64 (moderate norms only)."""
    n = np.asarray(norms, dtype=np.float64)
    n = n[n > 0]
    angles = []
    for t in TAUS:
        d = (1 / J) * np.sum(n**t) ** (1 / t - 1) * np.sum(n ** (t - 1))
        angles.append(np.degrees(np.arctan(-d)))
    angles = np.array(angles)
    alphas = []
    for e in EPS:
        s = TAUS[np.abs(angles + 90) <= e]
        alphas.append(1 / s.max() - 0.5 if s.size else np.nan)
    return angles, np.array(alphas)


def test_grids():
    np.testing.assert_allclose(tau_grid(), TAUS)
    assert tau_grid()[0] == 0.3 and tau_grid()[-1] == 1.99 and tau_grid().size == 170


@pytest.mark.parametrize(
    "e1, e2, K",
    [(0.1, 0.4, 10), (0.05, 0.5, 9), (0.2, 0.5, 7), (0.1, 0.3, 20), (0.01, 0.1, 9), (0.5, 2.0, 5)],
)
def test_epsilon_grid_is_the_reference_grid(e1, e2, K):
    ref = reference_eps(e1, e2, K)
    assert ref.size == K  # cases where the reference's arange gives K values
    np.testing.assert_array_equal(epsilon_grid(e1, e2, K), ref)
    np.testing.assert_allclose(epsilon_grid(e1, e2, K), e1 + (e2 - e1) / K * np.arange(K))


def test_epsilon_grid_default_and_count():
    np.testing.assert_allclose(
        epsilon_grid(), [0.10, 0.13, 0.16, 0.19, 0.22, 0.25, 0.28, 0.31, 0.34, 0.37]
    )
    assert alpha_star(np.linspace(0.01, 1, 50), 1).epsilons.max() < 0.4 - 1e-9  # 0.4 excluded
    # a float step can make arange return K + 1 values; the grid always has K
    assert reference_eps(0.1, 1.2, 7).size == 8
    grid = epsilon_grid(0.1, 1.2, 7)
    assert grid.size == 7 and grid[-1] < 1.2
    np.testing.assert_array_equal(grid, reference_eps(0.1, 1.2, 7)[:7])
    for bad in [(0.0, 0.4, 10), (0.4, 0.1, 10), (0.1, 0.4, 0), (0.1, 95.0, 3)]:
        with pytest.raises(ValueError, match="epsilon grid"):
            epsilon_grid(*bad)


def test_custom_grids_reach_the_estimator(rng):
    norms = rng.pareto(1.5, size=400) * 0.01
    res = alpha_star(
        norms, 1, tau_min=0.5, tau_max=1.5, tau_step=0.02, eps_min=0.2, eps_max=0.6, n_eps=4
    )
    np.testing.assert_allclose(res.taus, np.round(np.arange(0.5, 1.5 - 1e-9, 0.02), 10))
    np.testing.assert_array_equal(res.epsilons, reference_eps(0.2, 0.6, 4))
    for e, a in zip(res.epsilons, res.alphas, strict=True):
        s = res.taus[np.abs(res.angles + 90) <= e]
        assert (np.isnan(a) and s.size == 0) or a == pytest.approx(1 / s.max() - 0.5)


@pytest.mark.parametrize("J", [1, 5])
def test_angle_estimator_matches_direct_formula(rng, J):
    norms = np.concatenate([rng.pareto(1.5, size=800) * 0.01, np.zeros(7)])
    angles, alphas = naive_reference_alpha(norms, J)
    res = alpha_star(norms, J)
    np.testing.assert_allclose(res.angles, angles, atol=1e-9)
    np.testing.assert_allclose(res.alphas, alphas)
    assert res.alpha == pytest.approx(np.nanmean(alphas))
    assert res.alpha_min == pytest.approx(np.nanmin(alphas))
    assert res.alpha_max == pytest.approx(np.nanmax(alphas))
    assert res.n_wavelets == 807 and res.n_nonzero == 800 and res.n_trees == J
    # N_tau at 2/3
    n = norms[norms > 0]
    assert res.n_tau == pytest.approx((1 / J) * np.sum(n ** (2 / 3)) ** 1.5)


def test_angle_is_scale_invariant_and_does_not_overflow(rng):
    """D(tau) is homogeneous of degree 0 in the norms; extreme scales must give the same curve."""
    norms = rng.pareto(1.0, size=500) + 1e-3
    base = alpha_star(norms, 2)
    for c in (1e-250, 1e-30, 1e40, 1e250):
        res = alpha_star(norms * c, 2)
        np.testing.assert_allclose(res.angles, base.angles, atol=1e-9)
        np.testing.assert_array_equal(res.alphas, base.alphas)
    # a huge dynamic range (n^(tau-1) of tiny norms would overflow naively)
    wide = np.concatenate([np.geomspace(1e-300, 1.0, 300), np.ones(3)])
    res = alpha_star(wide, 1)
    assert np.all(np.isfinite(res.angles)) and res.status in ("ok", "empty_set_for_some_eps")


def test_true_derivative_matches_finite_differences(rng):
    norms = rng.pareto(2.0, size=300) * 0.5 + 0.01
    J = 3
    taus = np.array([0.4, 0.7, 1.0, 1.5, 1.9])
    h = 1e-6
    n_tau_fd = (n_tau(norms, taus + h, J) - n_tau(norms, taus - h, J)) / (2 * h)
    expected = np.degrees(np.arctan(n_tau_fd))
    got = angle_curve(norms, J, taus, method="angle_true_derivative")
    np.testing.assert_allclose(got, expected, atol=1e-5)
    direct = (1 / J) * np.array([np.sum(norms**t) ** (1 / t) for t in taus])
    np.testing.assert_allclose(n_tau(norms, taus, J), direct, rtol=1e-12)
    res = alpha_star(norms, J, method="angle_true_derivative")
    curve = angle_curve(norms, J, TAUS, method="angle_true_derivative")
    for e, a in zip(EPS, res.alphas, strict=True):
        s = TAUS[np.abs(curve + 90) <= e]
        if s.size:
            assert a == pytest.approx(1 / s.mean() - 0.5)  # mean of the set, not the max
        else:
            assert np.isnan(a)


def test_reported_conditions_never_exit():
    # one norm: D = 1, angle = -45 everywhere -> empty for every eps
    res = alpha_star([0.3], 1)
    assert res.status == "empty_set_for_all_eps" and math.isnan(res.alpha)
    assert "cannot be estimated" in res.message
    np.testing.assert_allclose(res.angles, -45.0)
    # five equal norms: D(0.3) = 5^(1/0.3) ~ 213, i.e. 0.269 degrees from -90: small eps empty
    res = alpha_star(np.full(5, 0.2), 1)
    assert res.status == "empty_set_for_some_eps"
    empty = np.isnan(res.alphas)
    assert empty[EPS < 0.268].all() and not empty[EPS > 0.27].any()
    # here D(tau) = 5^(1/tau): tau*(eps) = the largest grid tau with 5^(1/tau) >= tan(90 - eps)
    for e, a in zip(EPS, res.alphas, strict=True):
        ok = TAUS[5 ** (1 / TAUS) >= np.tan(np.radians(90 - e))]
        assert (np.isnan(a) and ok.size == 0) or a == pytest.approx(1 / ok.max() - 0.5)
    assert res.alpha == pytest.approx(np.nanmean(res.alphas))
    assert "0.1" in res.message
    # all zero / no wavelets
    res = alpha_star(np.zeros(10), 2)
    assert res.status == "all_norms_zero" and math.isnan(res.alpha)
    res = alpha_star(np.zeros(0), 1)
    assert res.status == "no_wavelets" and math.isnan(res.alpha)
    with pytest.raises(ValueError, match="non-negative"):
        alpha_star([-1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        alpha_star([np.nan, 2.0])
    with pytest.raises(ValueError, match="method"):
        alpha_star([1.0], method="slope")


def test_to_dict_is_strict_json(rng):
    for res in (alpha_star(rng.random(50), 1), alpha_star(np.full(5, 0.2)), alpha_star([])):
        d = res.to_dict()
        text = json.dumps(d, allow_nan=False)
        back = json.loads(text)
        for key in ("alpha", "alpha_min", "alpha_max", "status", "taus", "angles"):
            assert key in back
        assert len(back["taus"]) == 170
    assert isinstance(res, AlphaResult)


def test_norms_mode():
    norms = np.array([1.0, 0.5, 0.25, 0.0])
    res = alpha_star(norms, 2, method="norms")
    assert math.isnan(res.alpha) and res.status == "ok"
    assert res.n_tau == pytest.approx(0.5 * (1 + 0.5 ** (2 / 3) + 0.25 ** (2 / 3)) ** 1.5)


def test_alpha_orders_smooth_rough_noise():
    """Fully grown single trees (no bootstrap) on 1-D data have exactly 2N-2 wavelets for any
    function, so alpha compares the shape of the norm distribution, not its size."""
    rng = np.random.default_rng(7)
    N = 1500
    X = rng.uniform(size=(N, 1))
    smooth = np.sin(2 * np.pi * X[:, 0])
    rough = np.sin(50 * np.pi * X[:, 0])
    noise = rng.normal(size=N)
    kw = dict(max_depth=None, bootstrap=False)
    for method in ("angle", "loglog"):
        a = [sparsity_probe(X, y, method=method, **kw).alpha for y in (smooth, rough, noise)]
        assert a[0] > a[1] > a[2], (method, a)
    res = sparsity_probe(X, smooth, **kw)
    assert res.metadata["n_wavelets"] == 2 * N - 2
    assert res.alpha_min <= res.alpha <= res.alpha_max


def test_alpha_falls_with_label_noise():
    rng = np.random.default_rng(0)
    N, C = 2000, 4
    X = rng.normal(size=(N, 5))
    y0 = np.digitize(np.sin(X[:, 0]) + 0.5 * X[:, 1], [-0.5, 0.0, 0.5])
    alphas, alphas_default = [], []
    for frac in (0.0, 0.1, 0.2, 0.4, 0.8):
        y = y0.copy()
        idx = rng.choice(N, int(frac * N), replace=False)
        y[idx] = rng.integers(0, C, size=idx.size)
        alphas.append(sparsity_probe(X, y, max_depth=None, bootstrap=False).alpha)
        if frac in (0.0, 0.2, 0.4):
            alphas_default.append(sparsity_probe(X, y).alpha)  # reference probe defaults
    assert np.all(np.diff(alphas) < 0), alphas
    assert np.all(np.diff(alphas_default) < 0), alphas_default


def test_loglog_estimator_on_known_decay(rng):
    X = rng.uniform(size=(400, 1))
    y = np.sin(2 * np.pi * X[:, 0])
    m = WaveletForestRegressor(1, max_depth=None, bootstrap=False, random_state=0).fit(X, y)
    res = alpha_loglog(m, X, y, n_points=30)
    meta = res.metadata
    Ms, err = meta["n_terms"], meta["errors"]
    direct = [np.sqrt(np.mean((m.predict(X, n_terms=int(k)) - y) ** 2)) for k in Ms]
    np.testing.assert_allclose(err, direct, rtol=1e-8, atol=1e-7)
    # the fully grown tree interpolates: e(K) is a numerical zero and is left out of the fit
    assert Ms[-1] == m.n_wavelets_ and meta["used"][-1] == False  # noqa: E712
    use = meta["used"]
    assert use.sum() >= 20
    slope = np.polyfit(np.log(Ms[use]), np.log(err[use]), 1)[0]
    assert res.alpha == pytest.approx(-slope)
    assert res.alpha > 0.5  # a smooth 1-D function: fast M-term decay


def test_probe_on_float16_memmap_and_errors(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 40)).astype(np.float16)
    y = (X[:, 0].astype(np.float32) + X[:, 1] > 0).astype(np.int64)
    path = tmp_path / "layer.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    a = sparsity_probe(mm, y)
    b = sparsity_probe(X.astype(np.float32), y)
    assert a.alpha == b.alpha and a.status == b.status
    md = a.metadata
    assert md["task"] == "classification" and md["n_trees"] == 1 and md["max_depth"] == 15
    assert md["n_samples"] == 500 and md["n_features"] == 40
    assert md["n_wavelets"] == a.n_wavelets > 0 and md["fit_seconds"] > 0
    json.dumps(a.to_dict(), allow_nan=False)
    Xn = X.astype(np.float32)
    Xn[3, 5] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*row 3, feature 5"):
        sparsity_probe(Xn, y)
    with pytest.raises(ValueError, match="task"):
        sparsity_probe(X, y, task="ranking")
    # single class: no wavelets, reported
    res = sparsity_probe(X, np.zeros(500, dtype=int))
    assert res.status == "no_wavelets" and math.isnan(res.alpha)
    # regression targets are detected from the float dtype; norms mode works through the probe
    res = sparsity_probe(X, X[:, 0].astype(np.float64), method="norms", n_trees=2)
    assert res.metadata["task"] == "regression" and res.n_tau > 0
