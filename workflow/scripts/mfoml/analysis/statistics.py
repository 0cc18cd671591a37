"""Statistics shared by the pipeline's summaries and the tabular tables.

- :func:`fold_statistics`: mean, sample standard deviation and count of finite values per group
  (the one fold-summary core of ``results/tables/*_summary.csv`` and the tabular tables);
- :func:`slope`: least-squares slope over the finite points;
- :func:`spearman`: Spearman's rank correlation with a status instead of a warning when it is not
  defined (no data, too few points, a constant input).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["fold_statistics", "slope", "spearman"]


def fold_statistics(frame: pd.DataFrame, by: Sequence[str], values: Sequence[str]) -> pd.DataFrame:
    """``{v}_mean, {v}_std, {v}_n`` of each column ``v`` of ``values`` per group of ``by``.

    NaN and inf are left out; ``_n`` counts the finite values, ``_std`` uses ddof = 1 and is NaN
    where ``_n < 2``. One row per group (in order of appearance), group columns first.
    """
    by = list(by)
    if frame.empty:
        return pd.DataFrame(columns=by + [f"{v}_{s}" for v in values for s in ("mean", "std", "n")])
    parts = []
    for v in values:
        col = pd.to_numeric(frame[v], errors="coerce").replace([np.inf, -np.inf], np.nan)
        g = col.groupby([frame[c] for c in by], sort=False, dropna=False)
        parts.append(
            pd.DataFrame({f"{v}_mean": g.mean(), f"{v}_std": g.std(ddof=1), f"{v}_n": g.count()})
        )
    return pd.concat(parts, axis=1).reset_index()


def slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of ``y`` (N,) on ``x`` (N,) over the points where both are finite.

    NaN with fewer than two such points or when ``x`` is constant on them.
    """
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return math.nan
    xs, ys = x[ok], y[ok]
    xc = xs - xs.mean()
    return float((xc * (ys - ys.mean())).sum() / (xc * xc).sum())


def spearman(x: np.ndarray, y: np.ndarray, min_points: int = 3) -> tuple[float, float, int, str]:
    """Spearman rho and two-sided p-value of ``x`` and ``y`` (N,) over the finite pairs.

    Returns
    -------
    ``(rho, p_value, n, status)``: ``status`` is ``ok``, ``no_data`` (n = 0),
    ``too_few_points`` (0 < n < ``min_points``) or ``constant`` (a constant input); rho and p
    are NaN unless ``ok``.
    """
    from scipy.stats import spearmanr

    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n == 0:
        return math.nan, math.nan, n, "no_data"
    if n < min_points:
        return math.nan, math.nan, n, "too_few_points"
    if np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan, math.nan, n, "constant"
    res = spearmanr(x[ok], y[ok])
    return float(res.statistic), float(res.pvalue), n, "ok"
