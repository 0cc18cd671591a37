"""Edge-of-stability summaries of a run's tracked sharpness (issue 22).

With ``train.sharpness_every`` the training records, every few steps, the sharpness (top Hessian
eigenvalue of the training loss, :mod:`mfoml.dynamics.sharpness`) and the stability threshold
``2 / lr`` of gradient descent (``metrics.csv``: ``sharpness, stability_threshold``). The peak is
a transient; the edge-of-stability claim (Cohen et al. 2021) is about what follows the first
crossing of ``2 / lr``: the sharpness then hovers at the threshold. :func:`stability_summary`
reports both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["STABILITY_COLUMNS", "stability_summary", "stability_table"]

#: The columns :func:`stability_summary` returns.
STABILITY_COLUMNS = (
    "stability_threshold",
    "sharpness_peak",
    "sharpness_peak_epoch",
    "first_crossing_epoch",
    "sharpness_median_after_crossing",
    "fraction_above_threshold",
    "n_sharpness_steps",
)


def stability_summary(epoch: Any, sharpness: Any, threshold: Any) -> dict[str, float]:
    """The sharpness of one run against its stability threshold.

    Parameters
    ----------
    epoch : (T,) the epochs (full-batch steps) at which the sharpness was measured, any order.
    sharpness : (T,) top Hessian eigenvalue at those epochs (1 / loss units of the parameters;
        NaN where not measured: those entries are dropped).
    threshold : (T,) the stability threshold ``2 / lr`` at those epochs.

    Returns
    -------
    dict with :data:`STABILITY_COLUMNS`: ``stability_threshold`` (at the first crossing, else at
    the last measurement), ``sharpness_peak`` and its epoch, ``first_crossing_epoch`` (the first
    measurement with sharpness > threshold; NaN if never), ``sharpness_median_after_crossing``
    (median of the measurements from the first crossing on, inclusive),
    ``fraction_above_threshold`` (share of those measurements above the threshold), and
    ``n_sharpness_steps`` (measurements used). NaN values where undefined (never crossed, or no
    measurement).
    """
    e = np.asarray(epoch, dtype=np.float64).reshape(-1)
    s = np.asarray(sharpness, dtype=np.float64).reshape(-1)
    t = np.asarray(threshold, dtype=np.float64).reshape(-1)
    if not (e.shape == s.shape == t.shape):
        raise ValueError(
            f"epoch, sharpness and threshold differ in shape: {e.shape}, {s.shape}, {t.shape}"
        )
    keep = np.isfinite(s) & np.isfinite(t) & np.isfinite(e)
    order = np.argsort(e[keep], kind="stable")
    e, s, t = e[keep][order], s[keep][order], t[keep][order]
    out = dict.fromkeys(STABILITY_COLUMNS, math.nan)
    out["n_sharpness_steps"] = float(s.size)
    if s.size == 0:
        return out
    peak = int(np.argmax(s))
    out.update(sharpness_peak=float(s[peak]), sharpness_peak_epoch=float(e[peak]))
    above = np.flatnonzero(s > t)
    if above.size == 0:
        out["stability_threshold"] = float(t[-1])
        return out
    first = int(above[0])
    after_s, after_t = s[first:], t[first:]
    out.update(
        stability_threshold=float(t[first]),
        first_crossing_epoch=float(e[first]),
        sharpness_median_after_crossing=float(np.median(after_s)),
        fraction_above_threshold=float(np.mean(after_s > after_t)),
    )
    return out


def stability_table(epochs: pd.DataFrame, by: Sequence[str] = ("run",)) -> pd.DataFrame:
    """:func:`stability_summary` per run of an epochs table (``epoch, sharpness,
    stability_threshold``, one row per run and epoch); one row per ``by`` group with the ``by``
    columns first. Empty (columns ``by`` + :data:`STABILITY_COLUMNS`) when no run tracked the
    sharpness."""
    columns = [*by, *STABILITY_COLUMNS]
    if "sharpness" not in epochs or "stability_threshold" not in epochs:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, part in epochs.groupby(list(by), sort=False):
        if part["sharpness"].notna().any():
            key = key if isinstance(key, tuple) else (key,)
            summary = stability_summary(
                part["epoch"], part["sharpness"], part["stability_threshold"]
            )
            rows.append({**dict(zip(by, key, strict=True)), **summary})
    return pd.DataFrame(rows, columns=columns)
