"""Class geometry of a layer beyond NC1-NC4, streamed from activation dumps.

Measures (``METHODS.md`` section 8 conventions: ``mu_G`` the global mean over all samples,
``Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T``, ``Sigma_B = (1/C') sum_c (mu_c -
mu_G)(mu_c - mu_G)^T`` over the ``C'`` present classes, ``M`` the ``C' x D`` matrix of rows
``mu_c - mu_G``):

``cdnv``
    Class-distance normalised variance (Galanti, Gyorgy & Hutter 2022), averaged over the
    unordered pairs of present classes: ``(Var_c + Var_c') / (2 ||mu_c - mu_c'||^2)`` with
    ``Var_c = (1/n_c) sum_{y_i = c} ||h_i - mu_c||^2``. A pair with equal means gives ``inf``
    (``nan`` when both variances are 0 as well), and the average inherits it.
``trace_within, trace_between, trace_ratio``
    ``tr(Sigma_W)``, ``tr(Sigma_B)`` and ``tr(Sigma_W) / tr(Sigma_B)`` (Hui et al. 2022; Tirer et
    al. 2023).
``etf_error_means``
    Simplex-ETF error of the class means (Zhu et al. 2021; Kothapalli 2023):
    ``|| M M^T / ||M M^T||_F - (I - 11^T/C') / sqrt(C' - 1) ||_F`` (0 for a simplex ETF, any
    scale and rotation).
``etf_error_classifier``
    The same for the classifier rows, ``W W^T`` (uncentred ``W``, as in Zhu et al. 2021).
``self_duality_error``
    ``|| W M^T / ||W M^T||_F - (I - 11^T/C') / sqrt(C' - 1) ||_F`` over the present classes
    (Zhu et al. 2021's NC3, the ``self_duality_error`` of Kothapalli 2023 / the
    ``neural-collapse`` toolkit): 0 when the classifier rows are aligned (up to one scale) with
    the centred class means *and* these form a simplex ETF. Papyan's NC3 (``||W^T/||W||_F -
    M^T/||M||_F||_F^2``) is ``nc3`` of the NCC table (``mfoml`` NCC module).
``effective_rank``
    ``exp(H(p))`` with ``p_k = s_k / sum_j s_j`` the normalised singular values of the centred
    representation matrix ``H - 1 mu_G^T`` (``N x D``; Roy & Vetterli 2007), a number in
    ``[1, min(N, D)]``. How the singular values are obtained (``effective_rank_method``):

    - ``"covariance"`` when ``D <= max_dim``: exact, from the eigenvalues of the ``D x D``
      scatter matrix accumulated in float64 over chunks (cost ``N D^2``, memory ``8 D^2``
      bytes);
    - ``"gram"`` when ``D > max_dim`` and ``N <= max_dim``: exact, from the ``N x N`` Gram
      matrix built from pairs of row blocks (cost ``N^2 D``);
    - ``"countsketch"`` otherwise: **approximate**. The features are projected to
      ``max_dim`` dimensions by a seeded CountSketch (each feature added, with a random sign,
      to one of ``max_dim`` buckets: ``O(D)`` memory, ``O(N D)`` time) and the exact spectrum
      of the ``max_dim x max_dim`` scatter of the projection is used. It is accurate when the
      representation's spectrum is concentrated in far fewer than ``max_dim`` directions, and
      under-counts a flat tail. No ``D x D`` matrix is ever built for ``D > max_dim``.

Everything is computed in float64 from ``(N, D)`` features of any float dtype (float16 memory
maps included), ``chunk_size`` rows at a time (in the cache-sized blocks of
:mod:`mfoml.collapse.streaming`): pass 1 (skipped when the class means are given) is
:class:`mfoml.collapse.accumulators.ClassMeans`; pass 2 accumulates the per-class within-class
sums of squares and the scatter (or sketch) for the effective rank. The ``"gram"`` method
re-reads the rows once per row block. :mod:`mfoml.collapse.geometry_table` applies this to
every layer of a dump. Written here rather than taken from the ``neural-collapse`` toolkit
because that library keeps ``D x D`` covariances on the accelerator and does not stream memory
maps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from mfoml.collapse.accumulators import ClassMeans
from mfoml.collapse.streaming import (
    Features,
    NonFiniteFeaturesError,
    as_label_array,
    check_chunk_size,
    check_label_range,
    feature_rows,
    is_torch,
    iter_feature_chunks,
    single_blas_thread,
    sub_blocks,
    to_f64,
)
from mfoml.layer_measures import GEOMETRY

__all__ = [
    "cdnv",
    "effective_rank_from_singular_values",
    "etf_error",
    "geometry_metrics",
    "self_duality_error",
]

#: Columns :func:`geometry_metrics` adds to a per-layer table (besides ``layer``): those of its
#: entry in the registry of per-layer measures (:data:`mfoml.layer_measures.GEOMETRY`).
GEOMETRY_COLUMNS = list(GEOMETRY.columns)


# --------------------------------------------------------------------------------------------
# chunked rows
# --------------------------------------------------------------------------------------------


def _to_numpy(chunk: Any) -> np.ndarray:
    if is_torch(chunk):
        chunk = chunk.detach().cpu().numpy()
    return np.asarray(chunk)


def _blocks(features: Features, chunk_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start_row, float64 block)`` over all rows of ``features`` in order, in the
    cache-sized blocks of :func:`mfoml.collapse.streaming.sub_blocks` (a new array each)."""
    chunk_size = check_chunk_size(chunk_size)
    for start, chunk in iter_feature_chunks(features, chunk_size):
        for a, part in sub_blocks(_to_numpy(chunk), chunk_size):
            blk, _ = to_f64(part, None)
            if not np.isfinite(blk).all():
                raise NonFiniteFeaturesError(
                    f"features contain NaN or infinite values (rows {start + a}.."
                    f"{start + a + len(blk) - 1})"
                )
            yield start + a, blk


def _labels(labels: Any, n_classes: int) -> np.ndarray:
    """Labels ``(N,)`` as int64 numpy, checked to lie in ``[0, n_classes)``."""
    lab = as_label_array(labels)
    check_label_range(lab, n_classes, "labels")
    return _to_numpy(lab).astype(np.int64, copy=False)


# --------------------------------------------------------------------------------------------
# closed-form measures on small matrices
# --------------------------------------------------------------------------------------------


def _etf_target(c: int) -> np.ndarray:
    return (np.eye(c) - np.full((c, c), 1.0 / c)) / math.sqrt(c - 1)


def _structure_error(a: np.ndarray, b: np.ndarray) -> float:
    """``|| B A^T / ||B A^T||_F - (I - 11^T/C)/sqrt(C-1) ||_F`` for ``C x D`` matrices."""
    c = a.shape[0]
    if c < 2:
        return float("nan")
    s = b @ a.T
    norm = np.linalg.norm(s)
    if norm == 0:
        return float("nan")
    return float(np.linalg.norm(s / norm - _etf_target(c)))


def etf_error(means: np.ndarray, global_mean: np.ndarray | None = None) -> float:
    """Simplex-ETF error of class means (or of classifier rows with ``global_mean=None``).

    Parameters
    ----------
    means : (C, D) vectors; rows that are all NaN (absent classes) are dropped.
    global_mean : (D,) subtracted from every row first (``None``: no centring).

    Returns
    -------
    float ``|| G / ||G||_F - (I - 11^T/C) / sqrt(C - 1) ||_F`` with ``G`` the Gram matrix of
    the (centred) rows; NaN for fewer than 2 rows or all-zero rows.
    """
    m = np.asarray(means, dtype=np.float64)
    m = m[~np.isnan(m).all(axis=1)]
    if global_mean is not None:
        m = m - np.asarray(global_mean, dtype=np.float64)[None, :]
    return _structure_error(m, m)


def self_duality_error(
    classifier_weight: np.ndarray, means: np.ndarray, global_mean: np.ndarray
) -> float:
    """Self-duality error ``|| W M^T / ||W M^T||_F - ETF ||_F`` over the present classes.

    Parameters
    ----------
    classifier_weight : (C, D) last-layer weight ``W`` (``logits = h W^T + b``).
    means : (C, D) class means of the layer ``W`` acts on; all-NaN rows (absent classes)
        are dropped together with the matching rows of ``W``.
    global_mean : (D,) ``mu_G``.
    """
    w = np.asarray(classifier_weight, dtype=np.float64)
    m = np.asarray(means, dtype=np.float64)
    if w.shape != m.shape:
        raise ValueError(f"classifier weight {w.shape} and class means {m.shape} differ in shape")
    present = ~np.isnan(m).all(axis=1)
    mc = m[present] - np.asarray(global_mean, dtype=np.float64)[None, :]
    return _structure_error(mc, w[present])


def cdnv(means: np.ndarray, variances: np.ndarray) -> float:
    """Mean over unordered pairs of present classes of ``(V_c + V_c') / (2 ||mu_c - mu_c'||^2)``.

    Parameters
    ----------
    means : (C, D) class means (all-NaN rows: absent classes, skipped).
    variances : (C,) ``Var_c = E ||h - mu_c||^2`` per class (ignored for absent classes).

    Returns
    -------
    float (NaN with fewer than two present classes; ``inf`` when two classes share a mean).
    """
    m = np.asarray(means, dtype=np.float64)
    present = ~np.isnan(m).all(axis=1)
    m = m[present]
    v = np.asarray(variances, dtype=np.float64)[present]
    c = len(m)
    if c < 2:
        return float("nan")
    mc = m - m.mean(axis=0)  # centring reduces cancellation in the Gram-form distances
    g = mc @ mc.T
    sq = np.diag(g)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * g, 0.0)
    iu = np.triu_indices(c, k=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        vals = (v[iu[0]] + v[iu[1]]) / (2.0 * d2[iu])
    return float(np.mean(vals))


def effective_rank_from_singular_values(s: np.ndarray) -> float:
    """``exp(-sum_k p_k log p_k)``, ``p = s / sum(s)`` (zeros skipped); NaN when all are 0."""
    s = np.asarray(s, dtype=np.float64)
    s = s[s > 0]
    if s.size == 0:
        return float("nan")
    p = s / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def _singular_from_scatter(scatter: np.ndarray) -> np.ndarray:
    """Singular values of ``X`` from the eigenvalues of ``X^T X`` (or ``X X^T``)."""
    ev = np.linalg.eigvalsh(scatter)
    ev = np.where(ev > ev.max(initial=0.0) * scatter.shape[0] * np.finfo(np.float64).eps, ev, 0.0)
    return np.sqrt(ev)


# --------------------------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------------------------


def _countsketch(dim: int, k: int, seed: int) -> Any:
    from scipy import sparse

    rng = np.random.default_rng(seed)
    bucket = rng.integers(0, k, size=dim)
    sign = rng.choice(np.array([-1.0, 1.0]), size=dim)
    return sparse.csr_matrix((sign, (np.arange(dim), bucket)), shape=(dim, k))


def geometry_metrics(
    features: Any,
    labels: Any,
    n_classes: int,
    *,
    means: np.ndarray | None = None,
    classifier_weight: np.ndarray | None = None,
    chunk_size: int = 4096,
    max_dim: int = 1024,
    seed: int = 0,
) -> dict[str, Any]:
    """Class-geometry measures of one layer on one split (see the module docstring).

    Parameters
    ----------
    features : (N, D) numpy array / memmap (any float dtype), torch tensor, or a callable
        ``chunk_size -> iterable of (n, D) chunks`` yielding the rows in order on every call.
    labels : (N,) integer labels in ``[0, n_classes)`` (the true labels).
    n_classes : number of classes ``C``.
    means : (C, D) class means of exactly these samples and labels (e.g. the NCC table's);
        all-NaN rows mark absent classes. ``None``: computed in a first pass.
    classifier_weight : (C, D) last-layer weight acting on this layer (penultimate layer
        only): gives ``etf_error_classifier`` and ``self_duality_error`` (NaN without it).
    chunk_size : rows per chunk.
    max_dim : dimension up to which the effective rank is exact through a ``D x D`` scatter
        (and the number of rows up to which the ``N x N`` Gram is used); otherwise the
        CountSketch dimension.
    seed : seed of the CountSketch.

    Returns
    -------
    dict with ``n_samples, dim`` and the :data:`GEOMETRY_COLUMNS`.
    """
    with single_blas_thread():  # as the NCC kernels: one job, one BLAS thread (no contention)
        return _geometry_metrics(
            features,
            labels,
            n_classes,
            means=means,
            classifier_weight=classifier_weight,
            chunk_size=chunk_size,
            max_dim=max_dim,
            seed=seed,
        )


def _geometry_metrics(
    features: Features,
    labels: Any,
    n_classes: int,
    *,
    means: np.ndarray | None,
    classifier_weight: np.ndarray | None,
    chunk_size: int,
    max_dim: int,
    seed: int,
) -> dict[str, Any]:
    if not isinstance(n_classes, int | np.integer) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if not isinstance(max_dim, int | np.integer) or max_dim < 1:
        raise ValueError(f"max_dim must be a positive integer, got {max_dim!r}")
    lab = _labels(labels, int(n_classes))
    n = len(lab)
    n_expected = feature_rows(features)
    if n_expected is not None and n_expected != n:
        raise ValueError(f"features have {n_expected} rows but labels have {n}")
    if n == 0:
        raise ValueError("no samples")
    counts = np.bincount(lab, minlength=n_classes)
    if means is None:
        acc = ClassMeans(int(n_classes)).update_from(features, lab, chunk_size)
        means, counts = acc.means_, acc.counts_
    else:
        means = np.asarray(means, dtype=np.float64)
        if means.shape[0] != n_classes:
            raise ValueError(f"means have {means.shape[0]} rows, n_classes is {n_classes}")
        absent_with_samples = np.isnan(means).all(axis=1) & (counts > 0)
        if absent_with_samples.any():
            raise ValueError(
                f"means mark classes {np.flatnonzero(absent_with_samples).tolist()} as absent "
                "but the labels contain them"
            )
    dim = int(means.shape[1])
    present = counts > 0
    gmean = (counts[present, None] * means[present]).sum(axis=0) / n
    safe_means = np.where(np.isnan(means), 0.0, means)

    if dim <= max_dim:
        method = "covariance"
        scatter = np.zeros((dim, dim))
        sketch = None
    elif n <= max_dim:
        method = "gram"
        scatter = None
        sketch = None
    else:
        method = "countsketch"
        sketch = _countsketch(dim, int(max_dim), seed)
        scatter = np.zeros((max_dim, max_dim))
    within = np.zeros(n_classes)
    seen = 0
    for a, blk in _blocks(features, chunk_size):
        if blk.shape[1] != dim:
            raise ValueError(f"features have dimension {blk.shape[1]}, means have {dim}")
        yb = lab[a : a + len(blk)]
        if len(yb) != len(blk):
            raise ValueError(f"features have more rows than the {n} labels")
        r = blk - safe_means[yb]
        within += np.bincount(yb, weights=np.einsum("ij,ij->i", r, r), minlength=n_classes)
        if method != "gram":
            xc = blk - gmean[None, :]
            if sketch is not None:
                xc = np.asarray(xc @ sketch)
            scatter += xc.T @ xc
        seen = a + len(blk)
    if seen != n:
        raise ValueError(f"features have {seen} rows but labels have {n}")
    if method == "gram":
        scatter = _gram(features, gmean, chunk_size, n)
    sv = _singular_from_scatter(scatter)

    variances = np.where(present, within / np.maximum(counts, 1), np.nan)
    trace_w = float(within.sum() / n)
    mc = means[present] - gmean[None, :]
    trace_b = float(np.sum(mc * mc) / max(1, int(present.sum())))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.float64(trace_w) / np.float64(trace_b))
    etf_w = sd = float("nan")
    if classifier_weight is not None:
        w = _to_numpy(classifier_weight).astype(np.float64)
        if w.shape != (n_classes, dim):
            raise ValueError(
                f"classifier_weight has shape {w.shape}, expected ({n_classes}, {dim})"
            )
        if not np.isfinite(w).all():
            raise ValueError("classifier_weight contains NaN or infinite values")
        etf_w = etf_error(w[present])
        sd = self_duality_error(w, means, gmean)
    return {
        "n_samples": n,
        "dim": dim,
        "cdnv": cdnv(means, variances),
        "trace_within": trace_w,
        "trace_between": trace_b,
        "trace_ratio": ratio,
        "etf_error_means": etf_error(means, gmean),
        "etf_error_classifier": etf_w,
        "self_duality_error": sd,
        "effective_rank": effective_rank_from_singular_values(sv),
        "effective_rank_method": method if sketch is None else f"countsketch-{max_dim}",
    }


def _gram(features: Any, gmean: np.ndarray, chunk_size: int, n: int) -> np.ndarray:
    """``N x N`` Gram matrix of the centred rows, from pairs of row blocks."""
    g = np.zeros((n, n))
    for a, xa in _blocks(features, chunk_size):
        xa = xa - gmean[None, :]
        for b, xb in _blocks(features, chunk_size):
            if b < a:
                continue
            blk = xa @ (xb - gmean[None, :]).T
            g[a : a + len(xa), b : b + len(xb)] = blk
            g[b : b + len(xb), a : a + len(xa)] = blk.T
    return g
