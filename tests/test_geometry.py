"""Tests of mfoml.collapse.geometry against brute-force numpy implementations.

References here use per-class Python loops, explicit D x D covariance matrices, loops over class
pairs and matrix entries, and numpy's dense SVD of the centred representation.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from mfoml.collapse.geometry import (
    GEOMETRY_COLUMNS,
    cdnv,
    etf_error,
    geometry_metrics,
    self_duality_error,
)
from mfoml.collapse.geometry_table import geometry_table

# --------------------------------------------------------------------------------------------
# brute-force references
# --------------------------------------------------------------------------------------------


def bf_stats(x: np.ndarray, y: np.ndarray, c: int) -> dict:
    x = x.astype(np.float64)
    n, d = x.shape
    present = [k for k in range(c) if np.any(y == k)]
    means = {k: x[y == k].mean(axis=0) for k in present}
    var = {k: np.mean([np.sum((h - means[k]) ** 2) for h in x[y == k]]) for k in present}
    mu_g = x.mean(axis=0)
    sw = np.zeros((d, d))
    for i in range(n):
        r = x[i] - means[int(y[i])]
        sw += np.outer(r, r)
    sw /= n
    sb = sum(np.outer(means[k] - mu_g, means[k] - mu_g) for k in present) / len(present)
    pairs = []
    for i, a in enumerate(present):
        for b in present[i + 1 :]:
            pairs.append((var[a] + var[b]) / (2 * np.sum((means[a] - means[b]) ** 2)))
    return {
        "means": means,
        "present": present,
        "mu_g": mu_g,
        "cdnv": float(np.mean(pairs)),
        "trace_within": float(np.trace(sw)),
        "trace_between": float(np.trace(sb)),
    }


def bf_structure_error(a: np.ndarray, b: np.ndarray) -> float:
    """Entry by entry: || B A^T / ||B A^T|| - (I - 11^T/C)/sqrt(C-1) ||_F."""
    c = a.shape[0]
    s = np.array([[float(np.dot(b[i], a[j])) for j in range(c)] for i in range(c)])
    fro = math.sqrt(sum(s[i, j] ** 2 for i in range(c) for j in range(c)))
    total = 0.0
    for i in range(c):
        for j in range(c):
            target = ((1.0 if i == j else 0.0) - 1.0 / c) / math.sqrt(c - 1)
            total += (s[i, j] / fro - target) ** 2
    return math.sqrt(total)


def bf_erank(x: np.ndarray) -> float:
    """Dense SVD of the centred matrix (via the smaller Gram matrix when it is wide)."""
    xc = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    if xc.shape[1] > 4 * xc.shape[0]:
        ev = np.linalg.eigvalsh(xc @ xc.T)
        s = np.sqrt(ev[ev > ev.max() * 1e-12])
    else:
        s = np.linalg.svd(xc, compute_uv=False)
        s = s[s > s.max() * 1e-12]
    p = s / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def clustered(rng: np.random.Generator, n: int, d: int, c: int, spread: float = 1.0):
    y = rng.integers(0, c, size=n)
    centers = rng.normal(size=(c, d)) * 3
    x = centers[y] + spread * rng.normal(size=(n, d))
    return x, y


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def test_metrics_match_brute_force_on_float16_memmap(tmp_path, rng):
    x, y = clustered(rng, 300, 12, 4)
    mm = np.lib.format.open_memmap(tmp_path / "h.npy", mode="w+", dtype=np.float16, shape=x.shape)
    mm[:] = x
    mm.flush()
    x16 = np.load(tmp_path / "h.npy", mmap_mode="r")
    ref = bf_stats(np.asarray(x16), y, 4)
    got = geometry_metrics(x16, y, 4, chunk_size=37)
    assert got["cdnv"] == pytest.approx(ref["cdnv"], rel=1e-10)
    assert got["trace_within"] == pytest.approx(ref["trace_within"], rel=1e-10)
    assert got["trace_between"] == pytest.approx(ref["trace_between"], rel=1e-10)
    assert got["trace_ratio"] == pytest.approx(
        ref["trace_within"] / ref["trace_between"], rel=1e-10
    )
    m = np.stack([ref["means"][k] - ref["mu_g"] for k in ref["present"]])
    assert got["etf_error_means"] == pytest.approx(bf_structure_error(m, m), rel=1e-10)
    assert got["effective_rank"] == pytest.approx(bf_erank(np.asarray(x16)), rel=1e-9)
    assert got["effective_rank_method"] == "covariance"
    assert math.isnan(got["self_duality_error"]) and math.isnan(got["etf_error_classifier"])


def test_chunk_callable_given_means_and_absent_class(rng):
    x, y = clustered(rng, 200, 6, 5)
    y[y == 2] = 0  # class 2 absent
    ref = bf_stats(x, y, 5)
    chunks = lambda cs: (x[a : a + cs] for a in range(0, len(x), cs))  # noqa: E731
    means = np.full((5, 6), np.nan)
    for k in ref["present"]:
        means[k] = ref["means"][k]
    w = rng.normal(size=(5, 6))
    got = geometry_metrics(chunks, y, 5, means=means, classifier_weight=w, chunk_size=50)
    assert got["cdnv"] == pytest.approx(ref["cdnv"], rel=1e-10)
    assert got["trace_between"] == pytest.approx(ref["trace_between"], rel=1e-10)
    m = np.stack([ref["means"][k] - ref["mu_g"] for k in ref["present"]])
    wp = w[ref["present"]]
    assert got["self_duality_error"] == pytest.approx(bf_structure_error(m, wp), rel=1e-10)
    assert got["etf_error_classifier"] == pytest.approx(bf_structure_error(wp, wp), rel=1e-10)
    first = geometry_metrics(x, y, 5, classifier_weight=w)
    for key in ("cdnv", "trace_ratio", "self_duality_error", "effective_rank"):
        assert first[key] == pytest.approx(got[key], rel=1e-10)


def test_simplex_etf_and_self_dual_classifier_give_zero(rng):
    c, d = 5, 9
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    etf = (np.eye(c) - 1.0 / c)[:, :c] @ q[:c]  # rotated simplex in R^d
    mu_g = rng.normal(size=d)
    means = 7.0 * etf + mu_g
    assert etf_error(means, mu_g) == pytest.approx(0.0, abs=1e-12)
    assert self_duality_error(0.3 * etf, means, mu_g) == pytest.approx(0.0, abs=1e-12)
    # hand-computed value for C = 3: centred means (1, 0), (-1, 0), (0, 0)
    hand = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])
    assert etf_error(hand, np.zeros(2)) == pytest.approx(0.765367, abs=1e-6)
    assert math.isnan(etf_error(hand[:1], np.zeros(2)))


def test_cdnv_pairs_and_identical_means():
    means = np.array([[0.0, 0.0], [3.0, 4.0], [np.nan, np.nan]])
    assert cdnv(means, np.array([1.0, 2.0, 99.0])) == pytest.approx(3.0 / 50.0)
    with np.errstate(all="ignore"):
        assert cdnv(np.zeros((2, 2)), np.array([1.0, 1.0])) == math.inf


def test_effective_rank_gram_path_is_exact(rng):
    x = rng.normal(size=(40, 300)) @ np.diag(np.linspace(1, 3, 300))
    y = rng.integers(0, 3, size=40)
    got = geometry_metrics(x, y, 3, max_dim=64, chunk_size=16)
    assert got["effective_rank_method"] == "gram"
    assert got["effective_rank"] == pytest.approx(bf_erank(x), rel=1e-9)


def test_effective_rank_countsketch_approximates_low_rank_data(rng):
    n, d, r = 300, 2000, 6
    x = rng.normal(size=(n, r)) @ (rng.normal(size=(r, d)) * np.linspace(3, 1, r)[:, None])
    y = rng.integers(0, 4, size=n)
    got = geometry_metrics(x, y, 4, max_dim=256)
    assert got["effective_rank_method"] == "countsketch-256"
    assert got["effective_rank"] == pytest.approx(bf_erank(x), rel=0.1)
    assert 1.0 <= got["effective_rank"] <= r + 1e-6


def test_geometry_table_over_dump(rng):
    x, y = clustered(rng, 120, 8, 3)
    logits = x @ rng.normal(size=(8, 3))
    w = rng.normal(size=(3, 8))
    layers = {"block1": x.astype(np.float16), "logits": logits.astype(np.float16)}
    dump = SimpleNamespace(
        layers=["block1", "logits"], labels=(y + 1) % 3, true_labels=y, layer=layers.__getitem__
    )
    table = geometry_table(dump, classifier_weight=w)
    assert list(table.columns) == ["layer", *GEOMETRY_COLUMNS]
    assert list(table["layer"]) == ["block1", "logits"]
    ref = bf_stats(layers["block1"], y, 3)  # the true labels are used
    assert table.loc[0, "cdnv"] == pytest.approx(ref["cdnv"], rel=1e-10)
    assert np.isfinite(table.loc[0, "self_duality_error"])
    assert math.isnan(table.loc[1, "self_duality_error"])


def test_errors_name_the_problem(rng):
    x, y = clustered(rng, 20, 3, 2)
    with pytest.raises(ValueError, match="rows but labels"):
        geometry_metrics(x[:10], y, 2)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        geometry_metrics(bad, y, 2)
    with pytest.raises(ValueError, match="classifier_weight"):
        geometry_metrics(x, y, 2, classifier_weight=np.ones((2, 4)))
