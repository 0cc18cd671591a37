"""Besov smoothness estimators from wavelet norms (the probe itself: :mod:`mfoml.wavelets.probe`).

See ``docs/methods.md`` (smoothness estimators). Given the norms
``n_1..n_K > 0`` of the non-root wavelets of a forest of ``J`` trees,

- ``N_τ = (1/J) (Σ_k n_k^τ)^(1/τ)`` and ``α* = 1/τ* − 1/2`` with ``τ*`` the critical index;
- the *angle* estimator (reference convention, the default) uses
  ``D(τ) = (1/J) (Σ n^τ)^(1/τ − 1) Σ n^(τ−1)`` (this is ``Σ_k ∂N_τ/∂n_k``, not ``dN_τ/dτ``),
  ``angle(τ) = degrees(arctan(−D(τ)))`` on the grid ``τ ∈ [0.3, 2)`` step 0.01 and, for each of
  the reference's ``K = 10`` tolerances ``ε = 0.1° + k·0.03°`` (``k = 0..9``: 0.10 … 0.37,
  :func:`epsilon_grid`), ``τ*(ε)`` = the largest grid τ with
  ``|angle(τ) + 90| ≤ ε``; ``α`` is the mean of ``1/τ*(ε) − 1/2`` and ``[min, max]`` the band.

``D`` is homogeneous of degree 0 in the norms (``D(c n) = D(n)``), so the computation factors out
the largest norm and works with log-sum-exp: this is exact, and neither ``n^τ`` sums nor
``n^(τ−1)`` with tiny norms overflow. ``N_τ`` and ``dN_τ/dτ`` are *not* scale invariant
(``N_τ(c n) = c N_τ(n)``), so the true-derivative angle depends on the scale of the targets; it is
computed in the same log domain (exactly) but its value is not unit free.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import logsumexp

__all__ = [
    "AlphaResult",
    "tau_grid",
    "epsilon_grid",
    "n_tau",
    "angle_curve",
    "alpha_star",
    "alpha_loglog",
]

log = logging.getLogger(__name__)

METHODS = ("angle", "angle_true_derivative", "norms")
#: Relative level below which an M-term error counts as zero in the log-log fit.
_LOGLOG_ZERO = 1e-6


def _jsonable(value: Any) -> Any:
    """Convert numpy values to JSON-able Python, NaN/inf floats to None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class AlphaResult:
    """Result of a smoothness estimate.

    Attributes
    ----------
    method : ``"angle"``, ``"angle_true_derivative"``, ``"norms"`` or ``"loglog"``.
    alpha : mean of α(ε) over the tolerances with a non-empty set (NaN if none; NaN in
        ``"norms"`` mode, whose output is ``n_tau``).
    alpha_min, alpha_max : the band over ε (equal to ``alpha`` for ``"loglog"``).
    status : ``"ok"``, ``"empty_set_for_some_eps"``, ``"empty_set_for_all_eps"``,
        ``"all_norms_zero"``, ``"no_wavelets"`` or ``"too_few_points"`` (log-log).
    message : human-readable explanation of ``status``.
    taus : (T,) the τ grid;  angles : (T,) the angle curve in degrees.
    epsilons : (K,) tolerances in degrees;  tau_star : (K,) τ*(ε) (NaN where empty);
    alphas : (K,) α(ε) (NaN where empty).
    n_tau : N_τ at ``tau_fixed`` (always computed when there are non-zero norms).
    tau_fixed : τ of ``n_tau`` (2/3, i.e. α = 1).
    n_wavelets : number of wavelets given;  n_nonzero : number with norm > 0 (the ones used).
    n_trees : J.
    metadata : free-form extras (timings, probe settings, log-log points).
    """

    method: str
    alpha: float
    alpha_min: float
    alpha_max: float
    status: str
    message: str
    taus: np.ndarray = field(default_factory=lambda: np.zeros(0))
    angles: np.ndarray = field(default_factory=lambda: np.zeros(0))
    epsilons: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tau_star: np.ndarray = field(default_factory=lambda: np.zeros(0))
    alphas: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_tau: float = float("nan")
    tau_fixed: float = 2.0 / 3.0
    n_wavelets: int = 0
    n_nonzero: int = 0
    n_trees: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (lists for arrays, ``None`` for NaN/inf)."""
        return _jsonable(
            {
                "method": self.method,
                "alpha": self.alpha,
                "alpha_min": self.alpha_min,
                "alpha_max": self.alpha_max,
                "status": self.status,
                "message": self.message,
                "taus": self.taus,
                "angles": self.angles,
                "epsilons": self.epsilons,
                "tau_star": self.tau_star,
                "alphas": self.alphas,
                "n_tau": self.n_tau,
                "tau_fixed": self.tau_fixed,
                "n_wavelets": self.n_wavelets,
                "n_nonzero": self.n_nonzero,
                "n_trees": self.n_trees,
                "metadata": self.metadata,
            }
        )


def tau_grid(tau_min: float = 0.3, tau_max: float = 2.0, tau_step: float = 0.01) -> np.ndarray:
    """The τ grid ``tau_min, tau_min + step, ... < tau_max`` (reference: 0.30..1.99), shape (T,)."""
    if not (0 < tau_min < tau_max) or tau_step <= 0:
        raise ValueError(
            f"need 0 < tau_min < tau_max and tau_step > 0, got {tau_min}, {tau_max}, {tau_step}"
        )
    count = int(math.ceil((tau_max - tau_min) / tau_step - 1e-9))
    return np.round(tau_min + tau_step * np.arange(count), 10)


def epsilon_grid(eps_min: float = 0.1, eps_max: float = 0.4, n_eps: int = 10) -> np.ndarray:
    """Angle tolerances in degrees (the reference's grid), shape (K,).

    ``eps_min + k (eps_max − eps_min)/n_eps`` for ``k = 0 .. n_eps − 1``: ``eps_max`` is
    excluded (default 0.10, 0.13, …, 0.37). The reference writes it as
    ``np.arange(e1, e2, (e2 − e1) / K)``, which with a float step can return ``K + 1`` values
    (e.g. ``e1, e2, K = 0.1, 1.2, 7`` gives 8). Here the count is always
    ``n_eps``, and the values are computed as ``arange`` fills them (``e1 + k·δ`` with
    ``δ = (e1 + step) − e1``), so they equal the reference's bit for bit whenever its
    ``arange`` gives ``K`` values.
    """
    if not (isinstance(n_eps, int | np.integer) and n_eps >= 1):
        raise ValueError(f"bad epsilon grid: n_eps must be an integer >= 1, got {n_eps!r}")
    if not (0 < eps_min < eps_max < 90):
        raise ValueError(
            f"bad epsilon grid: need 0 < eps_min < eps_max < 90 degrees, got eps_min={eps_min}, "
            f"eps_max={eps_max}"
        )
    step = (eps_max - eps_min) / n_eps
    delta = (eps_min + step) - eps_min  # numpy's arange: the step as the first two values give it
    return eps_min + np.arange(int(n_eps)) * delta


def _positive_log_norms(norms: Any) -> tuple[np.ndarray, int]:
    n = np.asarray(norms, dtype=np.float64).ravel()
    if not np.isfinite(n).all():
        raise ValueError("wavelet norms contain NaN or infinite values")
    if (n < 0).any():
        raise ValueError("wavelet norms must be non-negative")
    pos = n[n > 0]
    return np.log(pos), n.shape[0]


def n_tau(norms: Any, tau: float | np.ndarray, n_trees: int = 1) -> np.ndarray | float:
    """``N_τ = (1/J) (Σ_k n_k^τ)^(1/τ)`` over the positive norms, computed in the log domain.

    Parameters
    ----------
    norms : (K,) non-negative wavelet norms (zeros are dropped).
    tau : scalar or (T,) array of τ > 0.
    n_trees : J.

    Returns
    -------
    float or (T,) array (NaN when no norm is positive).
    """
    logn, _ = _positive_log_norms(norms)
    taus = np.atleast_1d(np.asarray(tau, dtype=np.float64))
    if logn.size == 0:
        out = np.full(taus.shape, np.nan)
    else:
        lse = np.array([logsumexp(t * logn) for t in taus])
        with np.errstate(over="ignore"):
            out = np.exp(lse / taus - math.log(n_trees))
    return float(out[0]) if np.ndim(tau) == 0 else out


def _lse_rows(a: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp of a finite 2-D array (max-shifted, no overflow)."""
    top = a.max(axis=1)
    return top + np.log(np.exp(a - top[:, None]).sum(axis=1))


def angle_curve(norms: Any, n_trees: int, taus: np.ndarray, method: str = "angle") -> np.ndarray:
    """Angle (degrees) of the N_τ curve on the grid ``taus``.

    ``method="angle"``: ``degrees(arctan(−D(τ)))`` with the reference's
    ``D(τ) = (1/J) (Σ n^τ)^(1/τ−1) Σ n^(τ−1)`` (scale invariant: computed with the norms divided
    by their maximum). ``method="angle_true_derivative"``: ``degrees(arctan(dN_τ/dτ))``.
    Both tend to −90° where N_τ is steep (small τ). Shape (T,). Requires positive norms.
    """
    logn, _ = _positive_log_norms(norms)
    if logn.size == 0:
        raise ValueError("angle_curve needs at least one positive norm")
    top = logn.max()
    logm = logn - top  # log of norms / max norm, all <= 0
    log_j = math.log(n_trees)
    taus = np.asarray(taus, dtype=np.float64)
    out = np.empty(taus.shape[0])
    if method not in ("angle", "angle_true_derivative"):
        raise ValueError(f"unknown angle method {method!r}")
    # Blocks of taus so that the (block, K) work arrays stay ~256k elements (2 MB each).
    step = max(1, 262_144 // logm.size)
    for s in range(0, taus.shape[0], step):
        t = taus[s : s + step, None]
        a = t * logm[None, :]
        lse_a = _lse_rows(a)  # log Σ m^τ >= 0
        tt = t[:, 0]
        if method == "angle":
            a -= logm[None, :]
            lse_b = _lse_rows(a)  # log Σ m^(τ−1)
            log_d = -log_j + (1.0 / tt - 1.0) * lse_a + lse_b
            with np.errstate(over="ignore"):
                d = np.exp(log_d)  # inf where it overflows: angle -> -90 exactly
            out[s : s + step] = np.degrees(np.arctan(-d))
        else:
            w = np.exp(a - lse_a[:, None])  # softmax weights of n^τ
            mean_log = top + w @ logm  # Σ n^τ log n / Σ n^τ
            log_sum = tt * top + lse_a  # log Σ n^τ
            log_n_tau = log_sum / tt - log_j
            dlog = -log_sum / tt**2 + mean_log / tt  # d log N_τ / dτ
            with np.errstate(over="ignore"):
                val = np.exp(log_n_tau) * dlog
            out[s : s + step] = np.degrees(np.arctan(val))
    return out


def alpha_star(
    norms: Any,
    n_trees: int = 1,
    *,
    method: str = "angle",
    tau_min: float = 0.3,
    tau_max: float = 2.0,
    tau_step: float = 0.01,
    eps_min: float = 0.1,
    eps_max: float = 0.4,
    n_eps: int = 10,
    tau_fixed: float = 2.0 / 3.0,
) -> AlphaResult:
    """Besov smoothness α* from wavelet norms (``docs/methods.md``, smoothness estimators).

    Parameters
    ----------
    norms : (K,) non-negative per-tree norms of all non-root wavelets of the forest (e.g.
        ``WaveletForestRegressor.wavelet_norms_``); zero norms are dropped.
    n_trees : J, the number of trees (the 1/J factor of N_τ and D).
    method : ``"angle"`` (reference: D(τ) and the largest τ in the set, default),
        ``"angle_true_derivative"`` (slides: dN_τ/dτ and the mean τ of the set) or ``"norms"``
        (only ``n_tau`` = N_τ at ``tau_fixed``; alpha is NaN).
    tau_min, tau_max, tau_step : the τ grid (``tau_max`` excluded; :func:`tau_grid`).
    eps_min, eps_max, n_eps : the tolerance grid in degrees (``eps_max`` excluded:
        ``n_eps`` values ``eps_min + k (eps_max − eps_min)/n_eps``; :func:`epsilon_grid`).
    tau_fixed : τ for ``n_tau`` (2/3 ↔ α = 1).

    Returns
    -------
    AlphaResult. Never exits: an empty set for some or all ε, all-zero norms or no wavelets are
    reported in ``status``/``message`` (alpha NaN when nothing can be estimated).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (isinstance(n_trees, int | np.integer) and n_trees >= 1):
        raise ValueError(f"n_trees must be a positive integer, got {n_trees!r}")
    logn, n_total = _positive_log_norms(norms)
    taus = tau_grid(tau_min, tau_max, tau_step)
    eps = epsilon_grid(eps_min, eps_max, n_eps)
    nan = float("nan")
    base = dict(
        method=method,
        taus=taus,
        epsilons=eps,
        tau_fixed=tau_fixed,
        n_wavelets=n_total,
        n_nonzero=int(logn.size),
        n_trees=int(n_trees),
    )
    if logn.size == 0:
        status = "no_wavelets" if n_total == 0 else "all_norms_zero"
        message = (
            "the forest has no non-root wavelets (every tree is a single leaf: constant target "
            "or constant inputs)"
            if n_total == 0
            else f"all {n_total} wavelet norms are zero (the forest is constant)"
        )
        return AlphaResult(
            alpha=nan,
            alpha_min=nan,
            alpha_max=nan,
            status=status,
            message=message,
            angles=np.full(taus.shape, nan),
            tau_star=np.full(eps.shape, nan),
            alphas=np.full(eps.shape, nan),
            **base,
        )
    norms_pos = np.exp(logn)
    ntau = float(n_tau(norms_pos, tau_fixed, n_trees))
    if method == "norms":
        return AlphaResult(
            alpha=nan,
            alpha_min=nan,
            alpha_max=nan,
            status="ok",
            message=f"norms mode: N_tau at tau={tau_fixed:.4g} is in n_tau",
            angles=np.full(taus.shape, nan),
            tau_star=np.full(eps.shape, nan),
            alphas=np.full(eps.shape, nan),
            n_tau=ntau,
            **base,
        )
    angles = angle_curve(norms_pos, n_trees, taus, method)
    tau_star = np.full(eps.shape, nan)
    close = np.abs(angles[None, :] + 90.0) <= eps[:, None]  # (K, T)
    for k in range(eps.shape[0]):
        sel = taus[close[k]]
        if sel.size:
            tau_star[k] = sel.max() if method == "angle" else sel.mean()
    alphas = 1.0 / tau_star - 0.5
    ok = np.isfinite(alphas)
    if ok.all():
        status, message = "ok", ""
    elif ok.any():
        empty = ", ".join(f"{e:.3g}" for e in eps[~ok])
        status = "empty_set_for_some_eps"
        message = (
            f"no tau with |angle + 90| <= eps for eps in [{empty}] degrees; alpha averages the "
            f"other {int(ok.sum())} tolerances"
        )
    else:
        status = "empty_set_for_all_eps"
        message = (
            f"no tau in [{taus[0]:.3g}, {taus[-1]:.3g}] has |angle + 90| <= {eps.max():.3g} "
            f"degrees (closest angle {angles.min():.4g}); alpha cannot be estimated"
        )
    return AlphaResult(
        alpha=float(alphas[ok].mean()) if ok.any() else nan,
        alpha_min=float(alphas[ok].min()) if ok.any() else nan,
        alpha_max=float(alphas[ok].max()) if ok.any() else nan,
        status=status,
        message=message,
        angles=angles,
        tau_star=tau_star,
        alphas=alphas,
        n_tau=ntau,
        **base,
    )


def alpha_loglog(
    model: Any, X: Any, y: Any, *, n_terms: Any = None, n_points: int = 40
) -> AlphaResult:
    """Log-log M-term estimator (the older RFWFC one).

    The error ``e(M) = sqrt(mse(M))`` (root mean squared error, over samples and outputs, of the
    M-term forest against the targets; one-hot targets for a classifier) is computed on
    ``(X, y)`` (normally the training data) for an increasing sequence of M, and
    ``α = −slope`` of the least-squares line of ``log e(M)`` against ``log M``; points with
    ``e(M) <= 1e-6 · max_M e(M)`` (numerical zeros, e.g. an interpolating forest at M = K) are
    left out.

    Parameters
    ----------
    model : a fitted :class:`~mfoml.wavelets.WaveletForestRegressor` or classifier.
    X : (n_samples, n_features); y : targets or labels (n_samples,) / (n_samples, L).
    n_terms : 1-D integer array of M >= 1; default ``n_points`` geometrically spaced M in [1, K].

    Returns
    -------
    AlphaResult with ``method="loglog"``; ``metadata`` holds ``n_terms``, ``errors``, ``slope``,
    ``intercept`` and ``used`` (the mask of points in the fit).
    """
    K = int(model.n_wavelets_)
    nan = float("nan")
    if n_terms is None:
        n_terms = np.unique(np.round(np.geomspace(1, max(K, 1), n_points)).astype(np.int64))
    n_terms = np.asarray(n_terms, dtype=np.int64)
    n_terms = n_terms[n_terms >= 1]
    curve = model.mterm_curve(X, y, n_terms) if K > 0 and n_terms.size else None
    meta: dict[str, Any] = {
        "n_terms": n_terms,
        "errors": np.zeros(0),
        "slope": nan,
        "intercept": nan,
    }
    n_trees = len(model.forest_.estimators_)
    if curve is None:
        return AlphaResult(
            "loglog",
            nan,
            nan,
            nan,
            "no_wavelets",
            "the forest has no wavelets",
            n_wavelets=K,
            n_trees=n_trees,
            metadata=meta,
        )
    err = np.sqrt(np.maximum(curve["mse"], 0.0))
    meta["errors"] = err
    # Numerical zeros (an interpolating forest at M = K) are left out: the curve's error
    # accumulates ~1e-16 absolute in the MSE, i.e. ~1e-8 in its square root.
    use = err > _LOGLOG_ZERO * max(float(err.max()), 1e-300)
    meta["used"] = use
    if np.unique(n_terms[use]).size < 2:
        return AlphaResult(
            "loglog",
            nan,
            nan,
            nan,
            "too_few_points",
            "fewer than two M values with a positive error",
            n_wavelets=K,
            n_trees=n_trees,
            metadata=meta,
        )
    slope, intercept = np.polyfit(np.log(n_terms[use]), np.log(err[use]), 1)
    meta["slope"], meta["intercept"] = float(slope), float(intercept)
    return AlphaResult(
        "loglog",
        float(-slope),
        float(-slope),
        float(-slope),
        "ok",
        "",
        n_wavelets=K,
        n_nonzero=int(np.count_nonzero(model.wavelet_norms_)),
        n_trees=n_trees,
        metadata=meta,
    )
