"""Linear CKA (unbiased HSIC), the TwoNN intrinsic dimension and the CKA tables of dumps
(mfoml.similarity). Expected values come from the mathematics (independence, invariances, known
manifolds) or from a slow reference written here, never from the code under test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mfoml.similarity.cka import cka, cka_matrix, gram, hsic_unbiased
from mfoml.similarity.intrinsic import twonn_dimension
from mfoml.similarity.merge import merge_intrinsic_dim
from mfoml.similarity.tables import cross_run_cka_table, run_cka_table


def slow_hsic(k: np.ndarray, l_: np.ndarray) -> float:
    """Unbiased HSIC of Song et al. (2012), eq. (5), term by term with explicit loops."""
    n = k.shape[0]
    kt = [[0.0 if i == j else float(k[i, j]) for j in range(n)] for i in range(n)]
    lt = [[0.0 if i == j else float(l_[i, j]) for j in range(n)] for i in range(n)]
    trace = sum(kt[i][j] * lt[j][i] for i in range(n) for j in range(n))
    sum_k = sum(sum(row) for row in kt)
    sum_l = sum(sum(row) for row in lt)
    kl1 = sum(kt[i][j] * lt[j][m] for i in range(n) for j in range(n) for m in range(n))
    return (trace + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * kl1) / (n * (n - 3))


def slow_cka(x: np.ndarray, y: np.ndarray) -> float:
    k = x @ x.T
    l_ = y @ y.T
    return slow_hsic(k, l_) / np.sqrt(slow_hsic(k, k) * slow_hsic(l_, l_))


def biased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """The biased (centred Gram) linear CKA of Kornblith et al. (2019)."""
    n = len(x)
    h = np.eye(n) - 1.0 / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.sum(k * l_) / np.sqrt(np.sum(k * k) * np.sum(l_ * l_)))


def test_hsic_agrees_with_the_slow_reference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 5))
    y = x @ rng.standard_normal((5, 3)) + 0.5 * rng.standard_normal((12, 3))
    k, l_ = x @ x.T, y @ y.T
    assert hsic_unbiased(k, l_) == pytest.approx(slow_hsic(k, l_), rel=1e-10)
    assert cka(x, y) == pytest.approx(slow_cka(x, y), rel=1e-10)
    z = rng.standard_normal((12, 7))
    mat = cka_matrix([gram(x), gram(y), gram(z)])
    assert mat[0, 2] == pytest.approx(slow_cka(x, z), rel=1e-10)
    assert mat[2, 1] == pytest.approx(slow_cka(z, y), rel=1e-10)
    assert np.allclose(mat, mat.T)


def test_cka_is_about_zero_on_independent_gaussians_at_n32_and_n500():
    rng = np.random.default_rng(1)
    # n = 32: one draw has a standard deviation of about 0.05; the estimator is unbiased, so
    # the mean of 50 independent draws is within 0.05 of 0, where the biased one is far off
    draws = [cka(rng.standard_normal((32, 64)), rng.standard_normal((32, 64))) for _ in range(50)]
    assert abs(np.mean(draws)) < 0.05
    biased = [
        biased_cka(rng.standard_normal((32, 64)), rng.standard_normal((32, 64))) for _ in range(10)
    ]
    assert np.mean(biased) > 0.2
    for _ in range(3):
        assert abs(cka(rng.standard_normal((500, 64)), rng.standard_normal((500, 32)))) < 0.05


def test_cka_is_one_under_rotation_and_isotropic_scaling():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((100, 20)) @ rng.standard_normal((20, 20))
    q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    assert cka(x, x @ q) == pytest.approx(1.0, abs=1e-9)
    assert cka(x, 7.5 * x) == pytest.approx(1.0, abs=1e-9)
    assert cka(x.astype(np.float16), (3 * x @ q).astype(np.float16)) == pytest.approx(1.0, abs=1e-3)
    # not invariant to a non-isotropic scaling of the features
    assert cka(x, x * np.linspace(0.1, 10, 20)) < 0.99


def test_cka_rejects_too_few_or_mismatched_samples():
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="at least 4"):
        cka(rng.standard_normal((3, 2)), rng.standard_normal((3, 2)))
    with pytest.raises(ValueError, match="same samples"):
        cka(rng.standard_normal((10, 2)), rng.standard_normal((11, 2)))
    assert np.isnan(cka(np.ones((10, 3)), rng.standard_normal((10, 3))))


def test_gram_is_blocked_and_never_d_by_d():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 5000)).astype(np.float16)
    g = gram(x, block=512)
    assert g.shape == (6, 6)
    ref = x.astype(np.float64) @ x.astype(np.float64).T
    assert np.allclose(g, ref)


def _subspace(n: int, d: int, ambient: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((ambient, d)))
    return rng.standard_normal((n, d)) @ q.T


def test_twonn_recovers_a_3d_linear_subspace_in_100d():
    res = twonn_dimension(_subspace(1000, 3, 100, 5))
    assert res.status == "ok"
    assert abs(res.dimension - 3.0) < 0.3
    assert res.n_used == 900


def test_twonn_recovers_the_2_sphere():
    rng = np.random.default_rng(6)
    s = rng.standard_normal((1500, 3))
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    embedded = s @ np.linalg.qr(rng.standard_normal((50, 3)))[0].T  # in 50 dimensions
    res = twonn_dimension(embedded.astype(np.float16))
    assert abs(res.dimension - 2.0) < 0.2


def test_twonn_drops_duplicates_and_reports_too_few_points():
    x = _subspace(300, 2, 10, 7)
    dup = np.vstack([x, x[:50]])
    res = twonn_dimension(dup)
    assert res.n_duplicates == 50  # the copies; each point is kept once
    assert res.dimension == pytest.approx(twonn_dimension(x).dimension)
    assert twonn_dimension(np.zeros((2, 3))).status == "too_few_points"
    assert twonn_dimension(np.zeros((20, 3))).status == "too_few_points"


class FakeDump:
    """The read interface of an activation dump, in memory."""

    def __init__(self, layers: dict[str, np.ndarray], labels: np.ndarray, path: str = "mem"):
        self.path = path
        self._x = layers
        self.layers = list(layers)
        self.true_labels = labels

    def layer(self, name: str) -> np.ndarray:
        return self._x[name]

    def entry(self, name: str) -> dict:
        return {"index": self.layers.index(name), "dim": self._x[name].shape[1]}


def test_run_cka_table_layers_and_checkpoints():
    rng = np.random.default_rng(8)
    labels = np.repeat(np.arange(4), 50)
    a = rng.standard_normal((200, 8)).astype(np.float16)
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    rotated = (a.astype(np.float64) @ q).astype(np.float16)
    noise = rng.standard_normal((200, 5)).astype(np.float16)
    dumps = {
        1: FakeDump({"input": a, "h1": noise}, labels),
        4: FakeDump({"input": a, "h1": rotated[:, :5] * 0 + noise}, labels),
        9: FakeDump({"input": rotated, "h1": rng.standard_normal((200, 5))}, labels),
    }
    t = run_cka_table(dumps, max_samples=120, seed=0)
    assert set(t["kind"]) == {"layers", "checkpoints"}
    assert (t["n_samples"] == 120).all()
    lay = t[t["kind"] == "layers"]
    assert len(lay) == 3 * 4  # 3 checkpoints, 2 x 2 layers
    diag = lay[lay["layer_a"] == lay["layer_b"]]
    assert np.allclose(diag["cka"], 1.0)
    off = lay[(lay["layer_a"] == "input") & (lay["layer_b"] == "h1")]
    assert (off["cka"].abs() < 0.2).all()
    ck = t[(t["kind"] == "checkpoints") & (t["layer_a"] == "input")]
    assert np.allclose(ck["cka"], 1.0, atol=1e-3)  # the same input, rotated at epoch 9
    h1 = t[(t["kind"] == "checkpoints") & (t["layer_a"] == "h1")].set_index(["epoch_a", "epoch_b"])
    assert h1.loc[(1, 4), "cka"] == pytest.approx(1.0, abs=1e-6)
    assert abs(h1.loc[(1, 9), "cka"]) < 0.2
    with pytest.raises(KeyError, match="similarity.layers"):
        run_cka_table(dumps, layers=["nope"])
    other = {1: dumps[1], 2: FakeDump({"input": a, "h1": noise}, labels[::-1].copy())}
    with pytest.raises(ValueError, match="other samples"):
        run_cka_table(other, max_samples=None)


def test_cross_run_cka_table_pairs_runs_on_the_same_samples():
    rng = np.random.default_rng(9)
    labels = np.repeat(np.arange(3), 40)
    x = rng.standard_normal((120, 6))
    runs = {
        "r1": {2: FakeDump({"input": x, "h": x * 2.0}, labels)},
        "r2": {2: FakeDump({"input": x, "h": rng.standard_normal((120, 6))}, labels)},
        "r3": {2: FakeDump({"input": x, "h": x}, np.roll(labels, 1))},
    }
    t = cross_run_cka_table(runs, [["r1", "r2", "r3"]], max_samples=None)
    assert len(t) == 3 * 2  # 3 pairs, 2 shared layers
    ok = t[t["status"] == "ok"].set_index(["run_a", "run_b", "layer"])
    assert ok.loc[("r1", "r2", "input"), "cka"] == pytest.approx(1.0)
    assert abs(ok.loc[("r1", "r2", "h"), "cka"]) < 0.15
    other = t[t["run_b"] == "r3"]
    assert (other["status"] == "different_samples").all() and other["cka"].isna().all()


def test_merge_intrinsic_dim_adds_the_columns():
    layers = pd.DataFrame({"run": ["a", "a", "b"], "epoch": [1, 1, 1], "layer": ["x", "y", "x"]})
    per_run = {
        "a": pd.DataFrame(
            {
                "epoch": [1, 1],
                "layer": ["x", "y"],
                "intrinsic_dim": [2.0, 3.0],
                "intrinsic_dim_n_used": [9, 9],
                "intrinsic_dim_duplicates": [0, 0],
                "intrinsic_dim_status": ["ok", "ok"],
            }
        )
    }
    out = merge_intrinsic_dim(layers, per_run)
    assert list(out["intrinsic_dim"][:2]) == [2.0, 3.0]
    assert np.isnan(out["intrinsic_dim"][2])
    assert merge_intrinsic_dim(layers, {}) is layers
