"""Intrinsic dimension by the TwoNN estimator (Facco, d'Errico, Rodriguez & Laio 2017).

For every point, ``μ = r₂ / r₁`` is the ratio of the distances to its second and first nearest
neighbours. On a d-dimensional manifold with locally uniform density ``μ`` is Pareto
distributed, ``F(μ) = 1 − μ^(−d)``, so ``−log(1 − F(μ)) = d · log μ``: with the ``μ`` sorted and
``F`` the empirical distribution ``i / N``, ``d`` is the least-squares slope through the origin,
after discarding the largest ``discard`` fraction of ``μ`` (default 10 %, as in the paper and in
scikit-dimension).

Written here rather than taken from scikit-dimension (0.5.0, whose dependencies do fit): its
package import loads every estimator (measured 2.6 CPU-s, 7 s wall on the 2-core machine), paid by
every job that measures a layer, while the estimator is twenty lines; this one also computes the
distances in row blocks (memory: the float64 subsample ``(n, D)`` and a ``(block, n)`` block,
never ``(n, n)`` at once) and keeps repeated points once (``r₁ = 0`` otherwise, e.g. samples a
dead ReLU layer maps together), with a count.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["TwoNNResult", "twonn_dimension", "two_nearest_distances"]


@dataclass(frozen=True)
class TwoNNResult:
    """The TwoNN estimate of one point cloud.

    Attributes
    ----------
    dimension : the intrinsic dimension (NaN with ``status != "ok"``).
    n_samples : points given.
    n_used : points in the fit (after duplicates and the discarded tail).
    n_duplicates : copies of repeated points removed before the fit.
    status : ``ok``, ``too_few_points`` (fewer than 3 usable points), ``degenerate`` (all
        ``μ = 1``).
    """

    dimension: float
    n_samples: int
    n_used: int
    n_duplicates: int
    status: str

    def to_dict(self) -> dict:
        return asdict(self)


def two_nearest_distances(x: np.ndarray, *, block: int = 512) -> np.ndarray:
    """Euclidean distances of each point to its two nearest other points.

    Parameters
    ----------
    x : ``(n, D)`` features (any float dtype, a memmap included; cast to float64 per block).
    block : rows per block: the working memory is ``(block, n)`` float64.

    Returns
    -------
    float64 ``(n, 2)``: ``r₁ <= r₂`` (in the units of ``x``).
    """
    x = np.asarray(x).reshape(len(x), -1)
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"TwoNN needs at least 3 points, got {n}")
    full = np.asarray(x, dtype=np.float64)
    sq = np.einsum("ij,ij->i", full, full)
    out = np.empty((n, 2), dtype=np.float64)
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = full[start:stop]
        d2 = sq[start:stop, None] + sq[None, :] - 2.0 * (rows @ full.T)
        np.maximum(d2, 0.0, out=d2)
        d2[np.arange(stop - start), np.arange(start, stop)] = np.inf  # not its own neighbour
        two = np.partition(d2, 1, axis=1)[:, :2]
        out[start:stop] = np.sqrt(np.sort(two, axis=1))
    return out


def twonn_dimension(x: np.ndarray, *, discard: float = 0.1, block: int = 512) -> TwoNNResult:
    """TwoNN intrinsic dimension of the point cloud ``x`` ``(n, D)``.

    Repeated points (equal rows) are kept once (``n_duplicates`` counts the copies removed),
    as Facco et al. require (``r₁ > 0``).

    Parameters
    ----------
    x : ``(n, D)`` points (float16 dumps included).
    discard : the fraction of the largest ``μ`` left out of the fit (0 <= discard < 1).
    block : rows per distance block (:func:`two_nearest_distances`).
    """
    if not 0.0 <= discard < 1.0:
        raise ValueError(f"discard must be in [0, 1), got {discard}")
    x = np.asarray(x).reshape(len(x), -1)
    n = len(x)
    unique = np.unique(np.asarray(x, dtype=np.float64), axis=0) if n else x
    dups = n - len(unique)
    if len(unique) < 3:
        return TwoNNResult(math.nan, n, 0, dups, "too_few_points")
    r = two_nearest_distances(unique, block=block)
    mu = np.sort(r[:, 1] / r[:, 0])
    m = len(mu)
    keep = int(math.floor(m * (1.0 - discard)))
    if m == keep:  # F = 1 at the largest point: never in the fit
        keep = m - 1
    if keep < 2:
        return TwoNNResult(math.nan, n, keep, dups, "too_few_points")
    f = np.arange(1, keep + 1, dtype=np.float64) / m
    xs = np.log(mu[:keep])
    ys = -np.log1p(-f)
    denom = float(xs @ xs)
    if denom <= 0.0 or not np.isfinite(denom):
        return TwoNNResult(math.nan, n, keep, dups, "degenerate")
    return TwoNNResult(float(xs @ ys) / denom, n, keep, dups, "ok")
