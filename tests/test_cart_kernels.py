"""The fast builder's shortcuts (issue 27) against brute force and numpy.

- ``cart_kernels._skip``: every proxy within the skipped weight is below the bound, on random
  walks (integer weights, 2-12 classes) checked position by position in numpy.
- A walk that skips finds what a walk that evaluates every candidate finds (``scan_feature``
  against a brute-force maximum of scikit-learn's proxy over the candidates).
- float16 data: the widening equals numpy's cast on all 65536 patterns and flags inf/NaN; the
  32-bit-key presort of float16 data equals the 64-bit one of its float32 values; a forest
  fitted on float16 equals the one fitted on the same values in float32 and scikit-learn's;
  NaN and inf in float16 are refused.
"""

from __future__ import annotations

import numpy as np
import pytest
from mfoml.wavelets import cart_kernels as ck
from mfoml.wavelets import fasttree as ft
from mfoml.wavelets.cart_presort import HALF_TO_SINGLE, half_finite, presort, widen_half
from sklearn.ensemble import RandomForestRegressor


def _walk(rng: np.random.Generator, m: int, n_classes: int) -> tuple:
    """A node of m samples (random classes, integer weights 1-3) in a random order: class
    counts of every prefix (m + 1, L), prefix weights (m + 1,), node totals (L,)."""
    codes = rng.integers(0, n_classes, m)
    codes[rng.random(m) < 0.5] = 0  # a dominant class, as in deep nodes
    wts = rng.integers(1, 4, m).astype(np.float64)
    onehot = np.zeros((m, n_classes))
    onehot[np.arange(m), codes] = wts
    prefix = np.vstack([np.zeros(n_classes), np.cumsum(onehot, axis=0)])
    return prefix, np.r_[0.0, np.cumsum(wts)], prefix[-1]


def _proxy(prefix: np.ndarray, w: np.ndarray, tot: np.ndarray) -> np.ndarray:
    """scikit-learn's proxy at every split position 1 .. m - 1 (left = prefix)."""
    left, right = prefix[1:-1], tot - prefix[1:-1]
    wl, wr = w[1:-1], w[-1] - w[1:-1]
    return (left**2).sum(axis=1) / wl + (right**2).sum(axis=1) / wr


@pytest.mark.parametrize("n_classes", [2, 5, 12])
def test_skipped_weight_never_hides_a_proxy_above_the_bound(n_classes):
    rng = np.random.default_rng(n_classes)
    checked = skipped = 0
    for _ in range(60):
        m = int(rng.integers(20, 400))
        prefix, w, tot = _walk(rng, m, n_classes)
        proxies = _proxy(prefix, w, tot)  # position p + 1 at index p
        sq_tot, w_node = float((tot**2).sum()), float(w[-1])
        for bound in np.quantile(proxies, [0.5, 0.9, 0.99, 1.0]) * rng.uniform(0.999, 1.01):
            for p in range(1, m - 1):
                if proxies[p - 1] >= bound:
                    continue
                sq = float((prefix[p] ** 2).sum())
                dot = float(prefix[p] @ tot)
                delta = ck._skip(sq, dot, float(w[p]), sq_tot, w_node, float(bound))
                assert delta >= 0.0
                within = (w[p + 1 : m] - w[p] < delta).nonzero()[0] + p + 1
                within = within[within < m]  # positions p' (1 .. m - 1) inside the skip
                assert (proxies[within - 1] < bound).all()
                checked += 1
                skipped += len(within)
    assert checked > 1000 and skipped > 1000  # the test sees skips


def _brute_best(vals: np.ndarray, codes: np.ndarray, wts: np.ndarray, n_classes: int):
    """Max of scikit-learn's proxy over the candidates of a sorted row (values differing by
    more than FEATURE_THRESHOLD in float32), leftmost position: (proxy, pos)."""
    m = len(vals)
    onehot = np.zeros((m, n_classes))
    onehot[np.arange(m), codes] = wts
    prefix = np.vstack([np.zeros(n_classes), np.cumsum(onehot, axis=0)])
    proxies = _proxy(prefix, np.r_[0.0, np.cumsum(wts)], prefix[-1])
    ok = vals[1:] > vals[:-1] + ck.FEATURE_THRESHOLD
    proxies = np.where(ok, proxies, -np.inf)
    pos = int(np.argmax(proxies))
    return proxies[pos], pos + 1


@pytest.mark.parametrize("zeros", [0.0, 0.6])
def test_scan_with_skips_finds_the_brute_force_best(zeros):
    """``scan_feature`` on rows of 200-3000 samples (above SKIP_MIN_M, so it skips) returns the
    brute-force best proxy and position, with ties from float16 values."""
    rng = np.random.default_rng(3)
    n_classes = 6
    for _ in range(25):
        m = int(rng.integers(ck.SKIP_MIN_M + 72, 3000))
        codes = rng.integers(0, n_classes, m).astype(np.uint32)
        wts = rng.integers(1, 3, m).astype(np.float64)
        x = (rng.normal(size=m) + codes * 0.3).astype(np.float16).astype(np.float32)
        x[rng.random(m) < zeros] = 0.0
        order = np.argsort(x, kind="stable")
        n_neg, n_pos = int((x < 0).sum()), int((x > 0).sum())
        nz = np.r_[order[x[order] < 0], order[x[order] > 0]]  # the row: nonzeros only
        ofs = np.zeros(m, dtype=np.uint16)
        vfs = np.zeros(m, dtype=np.float32)
        ofs[: len(nz)], vfs[: len(nz)] = nz, x[nz]
        tot = np.bincount(codes, weights=wts, minlength=n_classes)
        par = np.array([(tot**2).sum(), wts.sum(), 1.0, 0.0])
        got = ck.scan_feature(
            ofs, vfs, n_neg, n_pos, codes, wts, tot, par, np.zeros(n_classes), -np.inf
        )
        want = _brute_best(x[order], codes[order], wts[order], n_classes)
        assert got == (want[0], want[1])


def test_widen_half_is_numpys_cast_and_flags_inf_and_nan():
    bits = np.arange(1 << 16, dtype=np.uint16)
    half = bits.view(np.float16)
    wide, finite = widen_half(half.reshape(256, 256))
    assert not finite and wide.dtype == np.float32 and wide.flags.c_contiguous
    np.testing.assert_array_equal(
        wide.reshape(-1).view(np.uint32), half.astype(np.float32).view(np.uint32)
    )
    np.testing.assert_array_equal(
        HALF_TO_SINGLE.view(np.uint32), half.astype(np.float32).view(np.uint32)
    )
    ok = np.isfinite(half)
    assert widen_half(half[ok].reshape(1, -1))[1] and half_finite(half[ok].reshape(1, -1))
    for bad in (np.inf, -np.inf, np.nan):
        X = np.ones((3, 4), dtype=np.float16)
        X[1, 2] = bad
        assert not half_finite(X) and not widen_half(X)[1]
        with pytest.raises(ValueError, match="NaN or infinite"):
            ft.FastForestRegressor(1).fit(X, np.eye(3))


def _half_layer(n: int, d: int, seed: int) -> np.ndarray:
    """float16 with zeros of both signs, negatives, ties, subnormals and large values."""
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) * rng.choice([1e-6, 0.1, 3.0, 2e3], size=d)).astype(np.float16)
    X[rng.random(X.shape) < 0.5] = 0.0
    X[rng.random(X.shape) < 0.05] = -0.0
    X[:, 1] = np.round(X[:, 1])
    return X


def test_float16_presort_equals_the_float32_presort():
    X = _half_layer(700, 60, seed=1)
    samples = np.sort(np.random.default_rng(2).choice(700, 450, replace=False))
    o16, v16, c16 = presort(X, samples, n_threads=2)
    o32, v32, c32 = presort(X.astype(np.float32), samples, n_threads=1)
    np.testing.assert_array_equal(c16, c32)
    for f in range(X.shape[1]):
        k = c32[0, f] + c32[1, f]
        np.testing.assert_array_equal(o16[f, :k], o32[f, :k])
        np.testing.assert_array_equal(v16[f, :k].view(np.uint32), v32[f, :k].view(np.uint32))


@pytest.mark.parametrize("config", [{}, {"min_weight_fraction_leaf": 0.02, "max_depth": 9}])
def test_float16_forest_equals_float32_and_sklearn(config):
    X = _half_layer(1500, 25, seed=3)
    score = X.astype(np.float32)[:, :4] @ np.random.default_rng(4).normal(size=(4, 5))
    Y = np.eye(5)[np.argmax(score + np.random.default_rng(5).normal(size=score.shape), axis=1)]
    kw = {"n_estimators": 2, "max_features": None, "random_state": 9, **config}
    half = ft.FastForestRegressor(**kw).fit(X, Y)
    single = ft.FastForestRegressor(**kw).fit(X.astype(np.float32), Y)
    ref = RandomForestRegressor(**kw).fit(X, Y)
    for a, b, c in zip(half.estimators_, single.estimators_, ref.estimators_, strict=True):
        for name in ("children_left", "feature", "threshold", "value", "n_node_samples"):
            np.testing.assert_array_equal(getattr(a.tree_, name), getattr(b.tree_, name))
            np.testing.assert_array_equal(
                getattr(a.tree_, name), np.asarray(getattr(c.tree_, name))
            )
    np.testing.assert_array_equal(half.predict(X), ref.predict(X))


def test_float16_with_more_than_small_n_samples_equals_sklearn():
    """More than SMALL_N rows: the float16 layer is widened once and sorted with 64-bit keys
    (uint32 positions where a tree's distinct samples exceed SMALL_N)."""
    from mfoml.wavelets.cart_presort import SMALL_N

    rng = np.random.default_rng(8)
    n = SMALL_N + 4000
    X = rng.normal(size=(n, 3)).astype(np.float16)
    X[rng.random(X.shape) < 0.4] = 0.0
    Y = np.eye(3)[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    kw = {"n_estimators": 2, "max_depth": 4, "max_features": None, "random_state": 2}
    for bootstrap in (True, False):  # ~0.63 n distinct samples (uint16), n (uint32)
        fast = ft.FastForestRegressor(bootstrap=bootstrap, **kw).fit(X, Y)
        ref = RandomForestRegressor(bootstrap=bootstrap, **kw).fit(X, Y)
        for a, b in zip(fast.estimators_, ref.estimators_, strict=True):
            for name in ("children_left", "feature", "threshold", "value", "n_node_samples"):
                np.testing.assert_array_equal(getattr(a.tree_, name), getattr(b.tree_, name))
