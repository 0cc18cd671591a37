"""The course's study tables from the aggregated per-run tables.

- :func:`training_phases`: per run, the interpolation threshold (IT, the first epoch with zero
  training error of the end-of-epoch model in eval mode, ``train_eval_acc``), the end of
  training (EOT), the best test epoch and whether it lies in the terminal phase of training
  (TPT, every epoch after IT; METHODS section 11; NaN with status ``tpt_not_reached`` for a run
  without IT), and :func:`phases_pivot`, the workshop's table of vanilla vs SVSL per data set
  (mean +- std over folds and seeds, with the number of runs without IT);
- :func:`noise_table`: alpha of the last inner layer by label-noise level and data set (the
  lecture's table; METHODS section 10), mean +- std over folds;
- :func:`confused_pairs`: the most-confused (true, predicted) class pairs per experiment, from the
  final models' confusion matrices.

Statistics over the runs (folds and seeds) of a variant follow the pipeline's convention
(``{v}_mean``, ``{v}_std`` with ddof = 1 and NaN below two runs, ``{v}_n`` finite values;
:func:`fold_statistics`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mfoml.analysis.aggregate import VARIANT_COLUMNS
from mfoml.analysis.statistics import fold_statistics

__all__ = [
    "PHASE_VALUES",
    "training_phases",
    "phases_pivot",
    "noise_table",
    "confused_pairs",
    "format_mean_std",
]

#: Numeric columns of :func:`training_phases` summarised over folds.
PHASE_VALUES = [
    "it_epoch",
    "eot_epoch",
    "best_epoch",
    "best_acc",
    "acc_at_it",
    "acc_at_eot",
    "best_in_tpt",
]


def training_phases(
    epochs: pd.DataFrame,
    train_col: str = "train_eval_acc",
    test_col: str = "target_acc",
    tol: float = 0.0,
) -> pd.DataFrame:
    """Training phases of every run of an epochs table.

    Parameters
    ----------
    epochs : one row per (run, epoch) with ``run, epoch``, ``train_col`` and ``test_col``
        (accuracies, fractions in [0, 1]); other run columns are kept.
    train_col : accuracy on the training split (against the labels trained on) of the
        end-of-epoch model in eval mode (``train_eval_acc``); not the running mini-batch
        accuracy in training mode (``train_acc``), which lags the model and sees BatchNorm's
        batch statistics.
    test_col : accuracy on the test split (``target_acc``: test, or held-out fold).
    tol : training error at most ``tol`` counts as zero (0: exactly all samples right).

    Returns
    -------
    One row per run: the run columns, ``it_epoch`` (first epoch with training error <= ``tol``,
    NaN if never), ``eot_epoch`` (last epoch), ``best_epoch`` (first epoch of the highest test
    accuracy), ``best_acc``, ``acc_at_it`` (NaN without IT), ``acc_at_eot``, ``best_in_tpt``
    (1.0 if the best epoch lies after IT, 0.0 if not, NaN without IT; a number so that it
    averages to a fraction of runs), ``tpt_epochs`` (epochs after IT, NaN without IT),
    ``status`` (``ok``, or ``tpt_not_reached`` without IT).
    """
    keep = [c for c in VARIANT_COLUMNS + ["seed", "fold", "run"] if c in epochs.columns]
    if train_col not in epochs.columns:
        raise KeyError(
            f"training_phases: the epochs table has no {train_col!r} column (the end-of-epoch "
            "eval-mode training accuracy, metrics.csv of mfoml.nets.training.train with "
            "eval_train=True); retrain the runs to record it"
        )
    rows = []
    for _, part in epochs.groupby("run", sort=False):
        part = part.sort_values("epoch", kind="stable")
        ep = part["epoch"].to_numpy(int)
        train = pd.to_numeric(part[train_col], errors="coerce").to_numpy(float)
        test = pd.to_numeric(part[test_col], errors="coerce").to_numpy(float)
        zero = np.flatnonzero(np.isfinite(train) & (1.0 - train <= tol))
        it = int(ep[zero[0]]) if len(zero) else None
        finite = np.isfinite(test)
        best = int(np.flatnonzero(finite)[np.argmax(test[finite])]) if finite.any() else None
        rows.append(
            {
                **{c: part[c].iloc[0] for c in keep},
                "it_epoch": math.nan if it is None else float(it),
                "eot_epoch": float(ep[-1]),
                "best_epoch": math.nan if best is None else float(ep[best]),
                "best_acc": math.nan if best is None else float(test[best]),
                "acc_at_it": math.nan if it is None else float(test[zero[0]]),
                "acc_at_eot": float(test[-1]),
                "best_in_tpt": math.nan if it is None or best is None else float(ep[best] > it),
                "tpt_epochs": math.nan if it is None else float((ep > it).sum()),
                "status": "tpt_not_reached" if it is None else "ok",
            }
        )
    return pd.DataFrame(rows)


def phases_pivot(
    phases: pd.DataFrame,
    compare: str = "loss",
    by: Sequence[str] = ("dataset", "model", "activation", "noise"),
    values: Sequence[str] = PHASE_VALUES,
) -> pd.DataFrame:
    """Mean +- std over the folds and seeds of the training phases, one column block per
    ``compare`` value.

    Parameters
    ----------
    phases : :func:`training_phases` output.
    compare : the column whose values become column blocks (``loss``: vanilla CE vs SVSL).
    by : the rows (data set and the other variant columns present).

    Returns
    -------
    One row per ``by`` group; columns ``{compare value}:{v}_{mean|std|n}`` for each value, then
    ``{compare value}:n_runs`` and ``{compare value}:n_tpt_not_reached`` (runs without IT: their
    ``best_in_tpt`` and ``acc_at_it`` are NaN and left out of the means).
    """
    by = [c for c in by if c in phases.columns and c != compare]
    stats = fold_statistics(phases, [*by, compare], list(values))
    if not stats.empty:
        not_reached = (
            phases["status"].eq("tpt_not_reached")
            if "status" in phases
            else phases["it_epoch"].isna()
        )
        g = not_reached.groupby([phases[c] for c in [*by, compare]], sort=False, dropna=False)
        counts = pd.DataFrame({"n_runs": g.size(), "n_tpt_not_reached": g.sum()}).reset_index()
        stats = stats.merge(counts, on=[*by, compare], how="left")
    if stats.empty:
        return pd.DataFrame(columns=by)
    wide = stats.set_index([*by, compare]).unstack(compare)  # only the groups that occur
    wide.columns = [f"{cmp}:{stat}" for stat, cmp in wide.columns]
    order = [
        name
        for cmp in pd.unique(stats[compare])
        for name in [
            *(f"{cmp}:{v}_{s}" for v in values for s in ("mean", "std", "n")),
            f"{cmp}:n_runs",
            f"{cmp}:n_tpt_not_reached",
        ]
    ]
    wide = wide.reindex(columns=order)
    return wide.reset_index()


def noise_table(
    layers: pd.DataFrame,
    penultimate: Mapping[str, str] | None = None,
    value: str = "alpha",
    by: Sequence[str] = ("experiment", "dataset", "model", "activation", "loss"),
    extra: Sequence[str] = ("n_wavelets", "alpha_random"),
) -> pd.DataFrame:
    """Alpha of the last inner layer at each run's last checkpoint, by noise level (and data set,
    model, ...), mean +- std over the folds and seeds of a variant.

    Parameters
    ----------
    layers : the layers table (one row per run, epoch, layer) with ``layer``, ``noise`` and
        ``value``.
    penultimate : run id -> name of its last inner layer; without it, the rows with a true
        ``is_penultimate`` column.
    extra : further columns summarised the same way when present (the wavelet count, the
        random-label baseline).

    Returns
    -------
    One row per (``by`` columns present, ``noise``): ``{v}_mean, {v}_std, {v}_n``; sorted by
    the groups and the noise level.
    """
    if penultimate is not None:
        pen = layers[layers["layer"] == layers["run"].map(penultimate)]
    else:
        pen = layers[layers["is_penultimate"].astype(bool)]
    last = pen.groupby("run", sort=False)["epoch"].transform("max")
    final = pen[pen["epoch"] == last]
    by = [c for c in by if c in final.columns]
    if value not in final.columns:  # the probe did not analyse the layer
        return pd.DataFrame(columns=[*by, "noise"])
    values = [value, *[c for c in extra if c in final.columns]]
    out = fold_statistics(final, [*by, "noise"], values)
    return out.sort_values([*by, "noise"], kind="stable").reset_index(drop=True)


def confused_pairs(
    confusion: pd.DataFrame,
    by: Sequence[str] = ("experiment", "dataset"),
    top: int = 5,
) -> pd.DataFrame:
    """The most-confused (true, predicted) class pairs per group of runs.

    Parameters
    ----------
    confusion : long confusion matrices (``run, true, predicted, count`` + run columns), one
        matrix per run (the final model).
    by : the groups (the pipeline: per experiment and data set, whose classes agree).
    top : pairs per group.

    Returns
    -------
    Per group, the ``top`` off-diagonal pairs with the largest ``count`` summed over the runs:
    ``true, predicted, count``, ``rate`` (count / number of samples of the true class, summed
    over the runs), ``share_of_errors`` (count / all misclassified samples of the group),
    ``rate_mean, rate_std, rate_n`` (the per-run rate over runs, ddof = 1), ``n_runs``, ``rank``
    (1 = most confused). Pairs that never occur are left out.
    """
    by = [c for c in by if c in confusion.columns]
    frame = confusion.copy()
    frame["count"] = pd.to_numeric(frame["count"], errors="coerce").fillna(0)
    support = frame.groupby(["run", "true"], sort=False)["count"].transform("sum")
    frame["rate"] = np.where(support > 0, frame["count"] / support.where(support > 0, 1), np.nan)
    off = frame[frame["true"] != frame["predicted"]]
    out = []
    for key, part in frame.groupby(by, sort=False) if by else [((), frame)]:
        key = key if isinstance(key, tuple) else (key,)
        off_part = off.loc[off.index.intersection(part.index)]
        total_err = float(off_part["count"].sum())
        per_true = part.groupby("true")["count"].sum()
        pairs = off_part.groupby(["true", "predicted"], sort=True)["count"].sum()
        pairs = pairs[pairs > 0].sort_values(ascending=False, kind="stable").head(top)
        for rank, ((t, p), count) in enumerate(pairs.items(), start=1):
            rates = off_part.loc[
                (off_part["true"] == t) & (off_part["predicted"] == p), "rate"
            ].to_numpy(float)
            rates = rates[np.isfinite(rates)]
            out.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "rank": rank,
                    "true": t,
                    "predicted": p,
                    "count": float(count),
                    "rate": float(count / per_true[t]) if per_true[t] > 0 else math.nan,
                    "share_of_errors": float(count / total_err) if total_err > 0 else math.nan,
                    "rate_mean": float(rates.mean()) if len(rates) else math.nan,
                    "rate_std": float(rates.std(ddof=1)) if len(rates) > 1 else math.nan,
                    "rate_n": len(rates),
                    "n_runs": int(part["run"].nunique()),
                }
            )
    cols = [
        *by,
        "rank",
        "true",
        "predicted",
        "count",
        "rate",
        "share_of_errors",
        "rate_mean",
        "rate_std",
        "rate_n",
        "n_runs",
    ]
    return pd.DataFrame(out, columns=cols)


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``"m +- s"`` (``"m"`` alone when the std is undefined, ``""`` when the mean is)."""
    if not np.isfinite(mean):
        return ""
    if not np.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} +- {std:.{digits}f}"
