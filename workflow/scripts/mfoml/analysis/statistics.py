"""Statistics shared by the pipeline's summaries and the tabular tables.

- :func:`fold_statistics`: mean, sample standard deviation and count of finite values per group
  (the one fold-summary core of ``results/tables/*_summary.csv`` and the tabular tables);
- :func:`slope`: least-squares slope over the finite points.

Correlations across runs (permutation p-values, bootstrap intervals) are in
:mod:`mfoml.analysis.runstats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["fold_statistics", "slope"]


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
