"""Variant-level inference: correlations whose unit is the variant (METHODS section 11).

Checkpoints of one run are not independent, and layer measures and accuracy both trend with
training, so a rank correlation over every (run, checkpoint) point pooled answers "do both
change during training?" (nearly always yes), not "do runs with a smoother layer generalize
better?". Runs that differ only in fold or seed are replicates of one *variant* (the run's
configuration without fold and seed: :data:`VARIANT_KEYS`); they share every other cause of the
feature and the accuracy, so they are not exchangeable across variants. Every test here has one
value per variant, the mean over its runs (folds and seeds):

- per checkpoint epoch, a feature measured at that checkpoint against the accuracy at the same
  checkpoint (outcome ``accuracy``) and against the final accuracy (``final_accuracy``); the
  experiment's last checkpoint is the headline;
- per-run summaries of the dynamics (:func:`dynamics_features`) against the final accuracy.

The statistic, its permutation p-value, bootstrap interval and smallest attainable p are those
of :mod:`mfoml.analysis.permutation`: with ``strata`` (e.g. the model, and the experiment when
experiments are pooled) the statistic is the within-stratum association rho_w (the
stratum-size-weighted mean of per-stratum Spearman rho), permuted and resampled within strata;
the pooled Spearman rho over the variants is shown beside it (``rho_pooled``), never tested.
Each row also gives ``rho_n_wavelets``: rho_w of the feature with the penultimate layer's
wavelet count over the same variants (alpha is close to a function of the number of wavelets
the probe's forest grows, so a reader can tell smoothness from tree size), ``n_variants`` and
``n_runs``. A row whose smallest attainable p exceeds 0.05 has status ``underpowered`` (rho,
p and interval are kept). ``p_holm`` is Holm-adjusted over the rows of one (scope,
experiment); figures and log lines show it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mfoml.analysis.permutation import (
    BootstrapResult,
    PermutationResult,
    _random_permutations,
    _resample_indices,
    bootstrap_interval,
    holm,
    permutation_test,
    spearman_rho,
    within_rho,
)

__all__ = [
    "CHECKPOINT_FEATURES",
    "DYNAMICS_FEATURES",
    "CORRELATION_COLUMNS",
    "VARIANT_KEYS",
    "WAVELET_COLUMN",
    "PermutationResult",
    "BootstrapResult",
    "spearman_rho",
    "within_rho",
    "permutation_test",
    "bootstrap_interval",
    "correlate",
    "holm",
    "variant_means",
    "final_accuracy",
    "checkpoint_correlations",
    "dynamics_features",
    "dynamics_correlations",
    "merge_final",
]
_ = (_random_permutations, _resample_indices)  # re-exported for the tests

#: Features measured at one checkpoint (columns of the correlation points table).
CHECKPOINT_FEATURES = [
    "alpha_last_inner",
    "alpha_last_inner_adj",
    "alpha_depth_slope",
    "ncc_mismatch_penultimate",
]
#: Per-run summaries of the dynamics (columns of :func:`dynamics_features`).
DYNAMICS_FEATURES = ["alpha_last_inner_change", "alpha_depth_slope_final", "ncc_epoch_below"]
#: Columns identifying a variant (a run without its fold and seed): the unit of inference.
VARIANT_KEYS = ["experiment", "dataset", "model", "activation", "loss", "noise"]
#: The wavelet count of the penultimate layer (points: per checkpoint; dynamics: last one).
WAVELET_COLUMN = "n_wavelets_last_inner"
#: Columns of the correlation tables.
CORRELATION_COLUMNS = [
    "scope",
    "experiment",
    "epoch",
    "headline",
    "feature",
    "outcome",
    "strata",
    "rho",
    "rho_pooled",
    "p_value",
    "p_holm",
    "p_min",
    "ci_low",
    "ci_high",
    "rho_n_wavelets",
    "n_variants",
    "n_runs",
    "n_permutations",
    "exact",
    "n_boot_valid",
    "status",
]
#: A row whose smallest attainable p exceeds this is ``underpowered``.
POWER_LEVEL = 0.05


def correlate(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    strata: Sequence[Any] | np.ndarray | None = None,
    min_runs: int = 3,
    n_permutations: int = 9999,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    wavelets: Sequence[float] | np.ndarray | None = None,
) -> dict[str, Any]:
    """rho_w, permutation p-value, smallest attainable p and bootstrap interval of one feature
    and one outcome over units (variants).

    ``x``, ``y`` : (n,), one value per unit; pairs with a NaN drop out (``+inf`` is a valid
    value: it ranks last). ``wavelets`` (n,): the wavelet count per unit, for
    ``rho_n_wavelets``. Returns ``rho, rho_pooled, p_value, p_min, ci_low, ci_high,
    rho_n_wavelets, n_variants, n_permutations, exact, n_boot_valid, status`` with ``status``
    one of ``ok``, ``underpowered`` (``p_min`` above 0.05; numbers kept), ``no_data`` (no
    complete pair), ``too_few_variants`` (fewer than ``min_runs`` units),
    ``too_few_per_stratum`` (no stratum with two units: nothing to compare within a stratum)
    and ``constant`` (no stratum with two distinct values of both); numbers are NaN for the
    last four.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = ~np.isnan(x) & ~np.isnan(y)
    st = None if strata is None else np.asarray(list(strata), dtype=object)[ok]
    w = None if wavelets is None else np.asarray(wavelets, float)[ok]
    x, y, n = x[ok], y[ok], int(ok.sum())
    out: dict[str, Any] = {
        "rho": math.nan,
        "rho_pooled": math.nan,
        "p_value": math.nan,
        "p_min": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "rho_n_wavelets": math.nan,
        "n_variants": n,
        "n_permutations": 0,
        "exact": False,
        "n_boot_valid": 0,
    }
    if n == 0:
        return {**out, "status": "no_data"}
    if n < min_runs:
        return {**out, "status": "too_few_variants"}
    if st is not None and np.unique(st, return_counts=True)[1].max() < 2:
        return {**out, "status": "too_few_per_stratum"}
    perm = permutation_test(x, y, st, n_permutations, seed)
    if not np.isfinite(perm.rho):
        return {**out, "status": "constant"}
    boot = bootstrap_interval(x, y, st, n_boot, level, seed)
    rho_w = math.nan
    if w is not None:
        fin = np.isfinite(w)
        rho_w = within_rho(x[fin], w[fin], None if st is None else st[fin]) if fin.any() else rho_w
    return {
        **out,
        "rho": perm.rho,
        "rho_pooled": spearman_rho(x, y),
        "p_value": perm.p_value,
        "p_min": perm.p_min,
        "ci_low": boot.low,
        "ci_high": boot.high,
        "rho_n_wavelets": rho_w,
        "n_permutations": perm.n_permutations,
        "exact": perm.exact,
        "n_boot_valid": boot.n_valid,
        "status": "underpowered" if perm.p_min > POWER_LEVEL else "ok",
    }


def variant_means(
    part: pd.DataFrame,
    columns: Sequence[str],
    extra: Sequence[str] = (),
    keys: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per variant of ``part`` (a per-run table): the mean of each of ``columns`` over
    the variant's runs in which all of them are non-NaN (``+inf`` kept: a mean with it is
    ``+inf``), and of each of ``extra`` over the same runs (NaN values skipped).

    ``keys`` : the variant columns (default: :data:`VARIANT_KEYS` present in ``part``). Returns
    the keys, ``columns``, ``extra`` and ``n_runs`` (runs averaged); variants without a
    complete run are left out.
    """
    keys = [k for k in (VARIANT_KEYS if keys is None else keys) if k in part.columns]
    names = list(dict.fromkeys([*columns, *extra]))
    vals = pd.DataFrame(
        {c: pd.to_numeric(part[c], errors="coerce") if c in part else np.nan for c in names},
        index=part.index,
    )
    frame = pd.concat([part[keys], vals], axis=1)[vals[list(columns)].notna().all(axis=1)]
    if frame.empty:
        return pd.DataFrame(columns=[*keys, *names, "n_runs"])
    if not keys:
        means = frame[names].mean().to_frame().T
        means["n_runs"] = len(frame)
        return means
    g = frame.groupby(keys, sort=False, dropna=False)
    means = g[names].mean()
    means["n_runs"] = g.size()
    return means.reset_index()


def final_accuracy(epochs: pd.DataFrame, column: str = "target_acc") -> pd.DataFrame:
    """Per run, the accuracy ``column`` at its last epoch of the epochs table.

    Returns ``run, final_epoch, final_accuracy`` (one row per run, in order of appearance).
    """
    if epochs.empty:
        return pd.DataFrame(columns=["run", "final_epoch", "final_accuracy"])
    last = epochs.loc[epochs.groupby("run", sort=False)["epoch"].idxmax()]
    return pd.DataFrame(
        {
            "run": last["run"].to_numpy(),
            "final_epoch": last["epoch"].astype(int).to_numpy(),
            "final_accuracy": pd.to_numeric(last[column], errors="coerce").to_numpy(float),
        }
    )


def _num(part: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(part[column], errors="coerce").to_numpy(float)


def _check_one_row_per_run(part: pd.DataFrame, what: str) -> None:
    dup = part["run"][part["run"].duplicated()]
    if len(dup):
        raise ValueError(f"{what}: run {dup.iloc[0]!r} has more than one row")


def _check_strata(strata: Sequence[str]) -> None:
    bad = [c for c in strata if c not in VARIANT_KEYS]
    if bad:
        raise ValueError(
            f"config key 'aggregate.strata': {bad} is not a variant column {VARIANT_KEYS} "
            "(runs of one variant differ only in fold and seed and are averaged)"
        )


def _add_rows(
    rows: list[dict[str, Any]],
    part: pd.DataFrame,
    head: dict[str, Any],
    pairs: Sequence[tuple[str, str]],
    strata_cols: Sequence[str],
    opts: dict[str, Any],
) -> None:
    """Append one row per (feature, outcome) of ``pairs``: variant means of ``part`` (one row
    per run), then :func:`correlate` over the variants within ``strata_cols``."""
    for feature, outcome in pairs:
        cols = [feature, outcome] if feature != outcome else [feature]
        means = variant_means(part, cols, extra=[WAVELET_COLUMN])
        st = (
            means[list(strata_cols)].astype(str).agg("|".join, axis=1).to_numpy()
            if strata_cols and len(means)
            else None
        )
        res = correlate(
            _num(means, feature),
            _num(means, outcome),
            st,
            wavelets=_num(means, WAVELET_COLUMN),
            **opts,
        )
        rows.append(
            {
                **head,
                "feature": feature,
                "outcome": outcome,
                "strata": ",".join(strata_cols),
                **res,
                "n_runs": int(means["n_runs"].sum()) if len(means) else 0,
            }
        )


def _finish(rows: list[dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=CORRELATION_COLUMNS)
    if table.empty:
        return table
    table["p_holm"] = np.nan
    for _, idx in table.groupby(["scope", "experiment"], sort=False).groups.items():
        table.loc[idx, "p_holm"] = holm(table.loc[idx, "p_value"].to_numpy(float))
    return table


def checkpoint_correlations(
    points: pd.DataFrame,
    features: Sequence[str] = CHECKPOINT_FEATURES,
    outcomes: Sequence[str] = ("accuracy", "final_accuracy"),
    strata: Sequence[str] = (),
    min_runs: int = 3,
    n_permutations: int = 9999,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per experiment, checkpoint epoch, feature and outcome: the correlation across variants.

    Parameters
    ----------
    points : one row per (run, checkpoint epoch) with ``experiment, run, epoch``, the variant
        columns present of :data:`VARIANT_KEYS`, the ``features`` and the ``outcomes``
        columns (``accuracy``: at that checkpoint; ``final_accuracy``: the run's last epoch;
        outcomes and features missing from the table are skipped) and, when present,
        :data:`WAVELET_COLUMN`.
    strata : variant columns within which variants are exchanged / resampled (e.g.
        ``["model"]``); the row's ``rho`` is then the within-stratum rho_w.
    min_runs : fewer variants with both values give ``status = too_few_variants``.

    Returns
    -------
    :data:`CORRELATION_COLUMNS`: ``scope = within experiment`` rows per experiment and epoch
    (``headline`` marks the experiment's last checkpoint); with several experiments also
    ``scope = across experiments`` rows (``experiment = all``, each run at its own last
    checkpoint, strata ``experiment`` + ``strata``). ``p_holm`` is Holm-adjusted over the rows
    of one (scope, experiment).
    """
    _check_strata(strata)
    outcomes = [o for o in outcomes if o in points.columns]
    features = [f for f in features if f in points.columns]
    pairs = [(f, o) for f in features for o in outcomes]
    rows: list[dict[str, Any]] = []
    opts = {"min_runs": min_runs, "n_permutations": n_permutations, "n_boot": n_boot}
    opts.update(level=level, seed=seed)
    for name, exp in points.groupby("experiment", sort=False):
        last = int(exp["epoch"].max())
        for epoch, part in exp.groupby("epoch", sort=True):
            _check_one_row_per_run(part, f"experiment {name!r}, epoch {epoch}")
            head = {
                "scope": "within experiment",
                "experiment": str(name),
                "epoch": int(epoch),
                "headline": int(epoch) == last,
            }
            _add_rows(rows, part, head, pairs, strata, opts)
    if points["experiment"].nunique() > 1:
        finals = points.loc[points.groupby("run", sort=False)["epoch"].idxmax()]
        head = {"scope": "across experiments", "experiment": "all", "epoch": -1, "headline": True}
        _add_rows(rows, finals, head, pairs, ["experiment", *strata], opts)
    return _finish(rows)


def dynamics_features(points: pd.DataFrame, ncc_threshold: float = 0.1) -> pd.DataFrame:
    """One row per run: summaries of its layer dynamics over its checkpoints.

    Parameters
    ----------
    points : one row per (run, checkpoint epoch) with ``run, epoch``, the
        :data:`CHECKPOINT_FEATURES` and, when present, ``final_accuracy`` (other run columns
        are kept).
    ncc_threshold : train NCC mismatch (a fraction of samples, in [0, 1]) below which the
        penultimate layer counts as simplified.

    Returns
    -------
    The run columns, ``first_epoch, last_epoch, n_checkpoints``,
    ``alpha_last_inner_change`` (alpha of the last inner layer at the last checkpoint minus at
    the first; NaN with one checkpoint or a missing value), ``alpha_depth_slope_final`` (slope
    of alpha over the inner layers' depth at the last checkpoint), ``ncc_epoch_below`` (the
    first checkpoint epoch at which the penultimate layer's NCC mismatch is below
    ``ncc_threshold``; NaN if never or without NCC values), ``ncc_never_below`` (True if it
    has NCC values and never falls below; NaN without values), :data:`WAVELET_COLUMN` (at the
    last checkpoint), ``final_accuracy``.
    """
    keep = [
        c
        for c in points.columns
        if c
        not in {"epoch", "accuracy", "target", "penultimate_layer", WAVELET_COLUMN}
        | set(CHECKPOINT_FEATURES)
        and not c.startswith("final_")
    ]
    rows = []
    for _, part in points.groupby("run", sort=False):
        part = part.sort_values("epoch", kind="stable")
        first, last = part.iloc[0], part.iloc[-1]
        alpha = pd.to_numeric(part["alpha_last_inner"], errors="coerce").to_numpy(float)
        mism = pd.to_numeric(part["ncc_mismatch_penultimate"], errors="coerce").to_numpy(float)
        finite = np.isfinite(mism)
        below = np.flatnonzero(finite & (mism < ncc_threshold))
        rows.append(
            {
                **{c: first[c] for c in keep},
                "first_epoch": int(first["epoch"]),
                "last_epoch": int(last["epoch"]),
                "n_checkpoints": len(part),
                "alpha_last_inner_change": float(alpha[-1] - alpha[0])
                if len(part) > 1
                else math.nan,
                "alpha_depth_slope_final": float(
                    pd.to_numeric(pd.Series([last["alpha_depth_slope"]]), errors="coerce")[0]
                ),
                "ncc_epoch_below": float(part["epoch"].iloc[below[0]]) if len(below) else math.nan,
                "ncc_never_below": (len(below) == 0) if finite.any() else math.nan,
                WAVELET_COLUMN: float(
                    pd.to_numeric(pd.Series([last.get(WAVELET_COLUMN, math.nan)]), errors="coerce")[
                        0
                    ]
                ),
                "final_accuracy": float(last["final_accuracy"])
                if "final_accuracy" in part
                else math.nan,
            }
        )
    return pd.DataFrame(rows)


def dynamics_correlations(
    dynamics: pd.DataFrame,
    features: Sequence[str] = DYNAMICS_FEATURES,
    outcome: str = "final_accuracy",
    strata: Sequence[str] = (),
    min_runs: int = 3,
    n_permutations: int = 9999,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per experiment and dynamics feature: the correlation across variants with ``outcome``.

    ``dynamics`` is :func:`dynamics_features` output. A run whose penultimate NCC mismatch never
    falls below the threshold counts as later than every observed ``ncc_epoch_below`` (+inf for
    the ranks) rather than dropping out. Rows as :func:`checkpoint_correlations` (``epoch`` is
    -1, ``headline`` True), with ``scope = across experiments`` rows when there are several.
    """
    frame = dynamics.copy()
    if "ncc_epoch_below" in frame and "ncc_never_below" in frame:
        never = frame["ncc_never_below"].map(lambda v: v is True or v == 1.0)
        frame["ncc_epoch_below"] = frame["ncc_epoch_below"].astype(float).mask(never, np.inf)
    _check_strata(strata)
    rows: list[dict[str, Any]] = []
    opts = {"min_runs": min_runs, "n_permutations": n_permutations, "n_boot": n_boot}
    opts.update(level=level, seed=seed)
    pairs = [(f, outcome) for f in features if f in frame.columns]
    for name, part in frame.groupby("experiment", sort=False):
        _check_one_row_per_run(part, f"experiment {name!r}")
        head = {"scope": "within experiment", "experiment": str(name), "epoch": -1}
        _add_rows(rows, part, {**head, "headline": True}, pairs, strata, opts)
    if frame["experiment"].nunique() > 1:
        head = {"scope": "across experiments", "experiment": "all", "epoch": -1, "headline": True}
        _add_rows(rows, frame, head, pairs, ["experiment", *strata], opts)
    return _finish(rows)


def merge_final(points: pd.DataFrame, finals: pd.DataFrame) -> pd.DataFrame:
    """``points`` with the ``final_epoch, final_accuracy`` of :func:`final_accuracy` by run."""
    return points.merge(finals, on="run", how="left")
