"""Rank statistics with restricted permutation tests and stratified bootstrap intervals.

The statistic is Spearman's rho (Pearson correlation of average ranks). With ``strata`` it is
the *within-stratum* association: the stratum-size-weighted mean of the per-stratum Spearman
rho,

    rho_w = sum_s n_s rho_s / sum_s n_s,

over the strata in which it is defined (at least 2 units and neither variable constant within
the stratum; the others are left out and do not count in ``n_s``). Without strata it is the
ordinary Spearman rho. The p-value, the interval and the smallest attainable p all describe
this same quantity (METHODS section 11):

- the p-value is a two-sided permutation test that exchanges the outcome between units of the
  same stratum: exact (every within-stratum permutation, identity included) when their number,
  the product of n_s!, is at most ``n_permutations``, else ``n_permutations`` random ones with
  ``p = (1 + #{|rho*| >= |rho|}) / (1 + B)`` (Phipson & Smyth 2010);
- the interval is the percentile interval of rho_w over bootstrap resamples drawn with
  replacement within each stratum (a stratum that is constant in a resample is left out of
  that resample's weighted mean; a resample with no defined stratum is not counted);
- ``p_min`` is the smallest p the test can give: 2 / prod(n_s!) (the identity and the
  reversal in every stratum reach |rho_w| = 1), and at least 1 / (1 + B) when sampled.

Why this is written here: ``scipy.stats.permutation_test`` has no restricted (stratified)
permutations and ``scipy.stats.bootstrap`` no stratified resampling. Both are vectorised over
permutations / resamples: within-stratum unit ranks turn rho_w into one dot product
``(w * zx) . zy[perm]``, so a block of permutations costs one gather and one matrix product.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import rankdata

__all__ = [
    "PermutationResult",
    "BootstrapResult",
    "spearman_rho",
    "within_rho",
    "permutation_test",
    "bootstrap_interval",
    "smallest_p",
    "holm",
]

_TOL = 1e-10  # relative tolerance for |rho*| >= |rho| (floating-point ties of the statistic)
_BLOCK = 2_000_000  # elements per block of permutations / resamples


class PermutationResult(NamedTuple):
    """The statistic (rho_w), its two-sided permutation p-value, the number of permutations
    used, whether they were all enumerated (exact p-value) and the smallest attainable p."""

    rho: float
    p_value: float
    n_permutations: int
    exact: bool
    p_min: float = math.nan


class BootstrapResult(NamedTuple):
    """Percentile bootstrap interval of rho_w and the number of resamples in which it was
    defined."""

    low: float
    high: float
    n_valid: int


def _unit_ranks(v: np.ndarray) -> np.ndarray | None:
    """Average ranks of ``v`` (n,), centred and scaled to unit norm; None if ``v`` is constant."""
    r = rankdata(v)
    r = r - r.mean()
    norm = math.sqrt(float(r @ r))
    return None if norm == 0 else r / norm


def spearman_rho(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rho of two finite vectors (n,): Pearson correlation of average ranks; NaN if
    either is constant."""
    zx, zy = _unit_ranks(np.asarray(x, float)), _unit_ranks(np.asarray(y, float))
    return math.nan if zx is None or zy is None else float(zx @ zy)


def _codes(strata: Sequence[Any] | np.ndarray | None, n: int) -> np.ndarray:
    if strata is None:
        return np.zeros(n, dtype=np.int64)
    codes = pd.factorize(pd.Series(list(strata)), sort=True)[0]
    if len(codes) != n:
        raise ValueError(f"strata has {len(codes)} entries for {n} units")
    return codes.astype(np.int64)


class _Setup(NamedTuple):
    keep: np.ndarray  # (n,) bool: units of the strata where rho_s is defined
    codes: np.ndarray  # (m,) stratum codes of the kept units
    wzx: np.ndarray  # (m,) weight * within-stratum unit ranks of x
    zy: np.ndarray  # (m,) within-stratum unit ranks of y


def _setup(x: np.ndarray, y: np.ndarray, codes: np.ndarray) -> _Setup | None:
    """Within-stratum unit ranks of the strata where rho_s is defined; None if there is none."""
    n = len(x)
    keep = np.zeros(n, dtype=bool)
    wzx, zy = np.zeros(n), np.zeros(n)
    for s in np.unique(codes):
        members = np.flatnonzero(codes == s)
        if len(members) < 2:
            continue
        ax, ay = _unit_ranks(x[members]), _unit_ranks(y[members])
        if ax is None or ay is None:
            continue
        keep[members] = True
        wzx[members], zy[members] = ax * len(members), ay
    if not keep.any():
        return None
    wzx = wzx / keep.sum()  # weights n_s / sum of n_s over the kept strata
    return _Setup(keep, codes[keep], wzx[keep], zy[keep])


def within_rho(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    strata: Sequence[Any] | np.ndarray | None = None,
) -> float:
    """rho_w of finite ``x``, ``y`` (n,): the stratum-size-weighted mean of the per-stratum
    Spearman rho (plain Spearman without strata); NaN when no stratum defines it."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    st = _setup(x, y, _codes(strata, len(x)))
    return math.nan if st is None else float(st.wzx @ st.zy)


def _n_distinct(codes: np.ndarray) -> int:
    return math.prod(math.factorial(int(c)) for c in np.bincount(codes))


def smallest_p(strata_sizes: Sequence[int], n_permutations: int) -> float:
    """Smallest attainable two-sided permutation p for strata of these sizes (no ties):
    2 / prod(n_s!), and at least 1 / (1 + n_permutations) when the permutations are sampled."""
    total = math.prod(math.factorial(int(c)) for c in strata_sizes)
    if total <= 1:
        return 1.0
    exact = 2.0 / total
    return exact if total <= n_permutations else max(exact, 1.0 / (1 + n_permutations))


def _all_permutations(codes: np.ndarray) -> np.ndarray:
    """Every permutation (P, n) that maps each index to an index of the same stratum."""
    n = len(codes)
    perms = np.arange(n)[None, :]
    for s in np.unique(codes):
        members = np.flatnonzero(codes == s)
        if len(members) < 2:
            continue
        ps = np.array(list(itertools.permutations(members)), dtype=np.int64)
        new = np.repeat(perms, len(ps), axis=0)
        new[:, members] = np.tile(ps, (len(perms), 1))
        perms = new
    return perms


def _random_permutations(codes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` random within-stratum permutations (size, n): row b maps i to perm[b, i]."""
    n = len(codes)
    keys = rng.random((size, n))
    order = np.lexsort((keys, np.broadcast_to(codes, (size, n))), axis=-1)
    perms = np.empty_like(order)
    perms[:, np.argsort(codes, kind="stable")] = order
    return perms


def permutation_test(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    strata: Sequence[Any] | np.ndarray | None = None,
    n_permutations: int = 9999,
    seed: int = 0,
) -> PermutationResult:
    """rho_w of ``x`` and ``y`` (finite, (n,), one value per unit) and its two-sided
    permutation p-value (outcome exchanged between units of the same stratum).

    Exact when the number of within-stratum permutations is at most ``n_permutations``;
    otherwise ``n_permutations`` random ones. NaN rho and p when no stratum defines rho_s.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x has {n} values, y has {len(y)}")
    st = _setup(x, y, _codes(strata, n))
    if st is None:
        return PermutationResult(math.nan, math.nan, 0, False, math.nan)
    rho = float(st.wzx @ st.zy)
    bound = abs(rho) * (1 - _TOL) - _TOL
    sizes = np.bincount(st.codes)
    p_min = smallest_p(sizes[sizes > 0], n_permutations)
    if _n_distinct(st.codes) <= n_permutations:
        perms = _all_permutations(st.codes)
        hits = int((np.abs(st.zy[perms] @ st.wzx) >= bound).sum())
        return PermutationResult(rho, hits / len(perms), len(perms), True, p_min)
    rng = np.random.default_rng(seed)
    m = len(st.codes)
    hits, done, block = 0, 0, max(1, _BLOCK // m)
    while done < n_permutations:
        size = min(block, n_permutations - done)
        perms = _random_permutations(st.codes, size, rng)
        hits += int((np.abs(st.zy[perms] @ st.wzx) >= bound).sum())
        done += size
    p = (1 + hits) / (1 + n_permutations)
    return PermutationResult(rho, p, n_permutations, False, p_min)


def _resample_indices(codes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    idx = np.empty((size, len(codes)), dtype=np.int64)
    for s in np.unique(codes):
        members = np.flatnonzero(codes == s)
        idx[:, members] = members[rng.integers(0, len(members), (size, len(members)))]
    return idx


def _row_spearman(xb: np.ndarray, yb: np.ndarray) -> np.ndarray:
    """Spearman rho of every row pair of (B, n) arrays; NaN where a row is constant."""
    rx = rankdata(xb, axis=1)
    ry = rankdata(yb, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=1) / den, np.nan)


def _boot_rho(x: np.ndarray, y: np.ndarray, codes: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """rho_w of each resample (rows of ``idx``, (B, m)); NaN where no stratum is defined."""
    num = np.zeros(len(idx))
    den = np.zeros(len(idx))
    for s in np.unique(codes):
        cols = np.flatnonzero(codes == s)
        r = _row_spearman(x[idx[:, cols]], y[idx[:, cols]])
        ok = np.isfinite(r)
        num += np.where(ok, r, 0.0) * len(cols)
        den += ok * len(cols)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def bootstrap_interval(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    strata: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Percentile bootstrap interval (``level``) of rho_w, resampling units (rows of ``x``,
    ``y``, (n,)) with replacement within each stratum whose rho_s is defined."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    x, y = np.asarray(x, float), np.asarray(y, float)
    st = _setup(x, y, _codes(strata, len(x)))
    if st is None:
        return BootstrapResult(math.nan, math.nan, 0)
    xk, yk = x[st.keep], y[st.keep]
    rng = np.random.default_rng(seed)
    rhos, done, block = [], 0, max(1, _BLOCK // max(1, len(xk)))
    while done < n_boot:
        size = min(block, n_boot - done)
        idx = _resample_indices(st.codes, size, rng)
        rhos.append(_boot_rho(xk, yk, st.codes, idx))
        done += size
    r = np.concatenate(rhos) if rhos else np.empty(0)
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return BootstrapResult(math.nan, math.nan, 0)
    low, high = np.quantile(r, [(1 - level) / 2, (1 + level) / 2])
    return BootstrapResult(float(low), float(high), int(len(r)))


def holm(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error); NaN entries stay NaN and are not
    counted in the family."""
    p = np.asarray(p, float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    if len(idx) == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adj
    return out
