"""Aggregation of per-run results into tidy tables, fold summaries and correlation points.

All tables are tidy (one observation per row) and carry the run description columns
:data:`RUN_COLUMNS`. Summaries over folds group by :data:`VARIANT_COLUMNS` (+ the table's own
keys) and give ``{value}_mean``, ``{value}_std`` (sample standard deviation, ddof = 1; NaN when
``n = 1``) and ``{value}_n`` (number of folds with a finite value).

The correlation analysis follows the course's question: do layer dynamics measured on the
training data predict test accuracy? :func:`correlation_points` gives, for every (run,
checkpoint),

- ``alpha_last_inner``: alpha of the last inner (penultimate) layer, with its wavelet count
  ``n_wavelets_last_inner`` (K, the probe forest's number of wavelets),
- ``alpha_last_inner_adj``: alpha of the last inner layer adjusted for the wavelet count, the
  residual of the least-squares line of alpha on log(K) over the runs of one experiment,
  checkpoint and penultimate layer (NaN with fewer than 3 runs or a constant K); for a fixed
  depth and sample size alpha is nearly a function of K (METHODS section 11),
- ``alpha_depth_slope``: least-squares slope of alpha over the inner layers' depth index
  (layers strictly between ``input`` and ``logits``; NaN with fewer than 2 finite values),
- ``ncc_mismatch_penultimate``: train NCC mismatch at the penultimate layer,

with the accuracy target. The inference over these points, whose unit is the run (never the
pooled checkpoints), is :mod:`mfoml.analysis.runstats`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mfoml.analysis.metrics import classification_metrics
from mfoml.analysis.statistics import fold_statistics, slope
from mfoml.io import read_csv_checked
from mfoml.layer_measures import GEOMETRY, LAYER_MEASURES, NCC, PROBE, LayerMeasure

__all__ = [
    "RESULT_TABLES",
    "RUN_COLUMNS",
    "VARIANT_COLUMNS",
    "FEATURES",
    "layer_summary_columns",
    "stack_run_tables",
    "with_run_columns",
    "layers_table",
    "epochs_table",
    "checkpoint_metrics",
    "summarize",
    "correlation_points",
    "wavelet_adjusted",
    "missing_penultimate",
    "penultimate_gaps",
]

#: The per-run result tables the aggregation reads: ``{file name: (required columns, numeric
#: columns)}`` (for :func:`mfoml.io.read_csv_checked`, so that a corrupted file is named).
RESULT_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...] | str]] = {
    "probe.csv": (
        ("epoch", "split", "layer", "layer_index", "alpha", "alpha_min", "alpha_max", "status"),
        ("epoch", "layer_index", "dim", "n_samples", "alpha", "alpha_min", "alpha_max", "n_tau"),
    ),
    "ncc.csv": (
        ("epoch", "layer", "layer_index", "ncc_mismatch_train", "ncc_accuracy_test", "nc1"),
        # the measures of the table (mfoml.layer_measures), where present
        ("epoch", "layer_index", "dim", "n_train", "n_test", *NCC.summary, *GEOMETRY.summary),
    ),
    "metrics.csv": (
        ("epoch", "train_loss", "train_acc", "heldout_acc", "test_acc"),
        "all",  # every column of metrics.csv is a number
    ),
}

#: Columns describing a run (first columns of every per-run table).
RUN_COLUMNS = [
    "experiment",
    "dataset",
    "model",
    "activation",
    "loss",
    "noise",
    "seed",
    "fold",
    "run",
]
#: Columns identifying a variant (a run without its fold and seed); summaries aggregate over
#: the folds *and* seeds of a variant.
VARIANT_COLUMNS = ["experiment", "dataset", "model", "activation", "loss", "noise"]
#: Layer-dynamics features correlated with accuracy.
FEATURES = [
    "alpha_last_inner",
    "alpha_last_inner_adj",
    "alpha_depth_slope",
    "ncc_mismatch_penultimate",
]


def with_run_columns(frame: pd.DataFrame, meta: Mapping[str, Any]) -> pd.DataFrame:
    """A copy of ``frame`` with the run description columns :data:`RUN_COLUMNS` (values from
    ``meta``) in front."""
    out = frame.copy()
    for i, col in enumerate(RUN_COLUMNS):
        out.insert(i, col, meta[col])
    return out


def stack_run_tables(
    paths: Sequence[str | os.PathLike[str]],
    metas: Sequence[Mapping[str, Any]],
    kinds: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per-run tables stacked: each read checked (:func:`mfoml.io.read_csv_checked`) with the
    :data:`RUN_COLUMNS` of its run (``metas``, in the order of ``paths``) in front and, with
    ``kinds``, a ``kind`` column after them."""
    frames = []
    for i, (path, meta) in enumerate(zip(paths, metas, strict=True)):
        frame = with_run_columns(read_csv_checked(path), meta)
        if kinds is not None:
            frame.insert(len(RUN_COLUMNS), "kind", kinds[i])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def layer_summary_columns(
    columns: Sequence[str],
    splits: Sequence[str] = (),
    measures: Sequence[LayerMeasure] = LAYER_MEASURES,
) -> list[str]:
    """The columns of ``layers.csv`` (``columns``, in their order) that ``layers_summary.csv``
    summarizes: the ``summary`` columns of every registered per-layer measure
    (:data:`mfoml.layer_measures.LAYER_MEASURES`), those of a per-split measure (the probe)
    also with the suffix ``_{split}`` of every split in ``splits`` (the probed splits other
    than ``train``, :func:`layers_table`)."""
    chosen = set()
    for m in measures:
        chosen.update(m.summary)
        if m.per_split:
            chosen.update(f"{c}_{s}" for c in m.summary for s in splits if s != "train")
    return [c for c in map(str, columns) if c in chosen]


def layers_table(
    runs: Sequence[Mapping[str, Any]],
    probe: Mapping[str, pd.DataFrame],
    ncc: Mapping[str, pd.DataFrame],
) -> pd.DataFrame:
    """Per run, checkpoint epoch and layer: alpha (+ band, status) and NCC/collapse metrics.

    Parameters
    ----------
    runs : run descriptions (dicts with :data:`RUN_COLUMNS`).
    probe : run id -> probe table (``epoch, split, layer, layer_index`` and the columns of
        :data:`mfoml.layer_measures.PROBE`: ``alpha, alpha_min, alpha_max, status, n_tau,
        n_wavelets`` and, with the random-label baseline, ``alpha_random,
        alpha_random_status, n_wavelets_random``); the ``train`` split gives these columns
        (``status`` as ``alpha_status``), any other split the same with the suffix ``_{split}``
        (``alpha_test``, ``alpha_status_test``, ``n_wavelets_test`` ...).
    ncc : run id -> NCC table (``epoch, layer, layer_index, ncc_mismatch_train, ...``).

    Returns
    -------
    DataFrame, one row per (run, epoch, layer), sorted by run order, epoch, layer index.
    """
    frames = []
    for order, meta in enumerate(runs):
        rid = meta["run"]
        p = probe[rid]
        wide = None
        for split, part in p.groupby("split", sort=False):
            suffix = "" if split == "train" else f"_{split}"
            values = [c for c in part.columns if c in PROBE.columns]
            part = part.rename(columns={"status": "alpha_status"})
            values = ["alpha_status" if c == "status" else c for c in values]
            part = part[["epoch", "layer", "layer_index", *values]].rename(
                columns={c: f"{c}{suffix}" for c in values}
            )
            wide = (
                part
                if wide is None
                else wide.merge(part, on=["epoch", "layer", "layer_index"], how="outer")
            )
        n = ncc[rid].drop(columns=["reduction"], errors="ignore")
        n = n.rename(columns={"status": "collapse_status"})  # beside the probe's alpha_status
        merged = (
            n.merge(wide, on=["epoch", "layer", "layer_index"], how="outer")
            if wide is not None
            else n
        )
        merged = merged.sort_values(["epoch", "layer_index"], kind="stable")
        merged = with_run_columns(merged, meta)
        merged["_order"] = order
        frames.append(merged)
    if not frames:
        return pd.DataFrame(columns=RUN_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    return (
        out.sort_values(["_order", "epoch", "layer_index"], kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )


def epochs_table(
    runs: Sequence[Mapping[str, Any]], metrics: Mapping[str, pd.DataFrame]
) -> pd.DataFrame:
    """Per run and epoch: the training metrics table (loss and accuracy of every split).

    ``target_acc`` is ``test_acc``, or ``heldout_acc`` for data sets without a test split.
    """
    frames = []
    for meta in runs:
        m = metrics[meta["run"]].copy()
        if "test_acc" in m and m["test_acc"].notna().any():
            m["target_acc"] = m["test_acc"]
        else:
            m["target_acc"] = m.get("heldout_acc", np.nan)
        frames.append(with_run_columns(m, meta))
    if not frames:
        return pd.DataFrame(columns=RUN_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def checkpoint_metrics(
    meta: Mapping[str, Any],
    epoch: int,
    split: str,
    labels: np.ndarray,
    predictions: np.ndarray,
    n_classes: int,
    cross_entropy: float | None = math.nan,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Classification metrics of one checkpoint on one split, and its confusion matrix.

    Parameters
    ----------
    meta : run description.
    epoch, split : checkpoint epoch and split name.
    labels, predictions : int arrays (N,).
    n_classes : C.
    cross_entropy : mean cross-entropy of the same eval-mode pass against the same labels (the
        dump's manifest; ``None``/NaN when not recorded).

    Returns
    -------
    (row, confusion) : the row ``{run columns, epoch, split, accuracy, precision_macro,
    recall_macro, f1_macro, cross_entropy, n_samples}`` and the confusion matrix in long format
    (``true, predicted, count``; C*C rows).
    """
    m = classification_metrics(np.asarray(labels), np.asarray(predictions), n_classes)
    row = {col: meta[col] for col in RUN_COLUMNS}
    row.update(
        {
            "epoch": int(epoch),
            "split": split,
            "accuracy": m["accuracy"],
            "precision_macro": m["precision_macro"],
            "recall_macro": m["recall_macro"],
            "f1_macro": m["f1_macro"],
            "cross_entropy": math.nan if cross_entropy is None else float(cross_entropy),
            "n_samples": m["n_samples"],
        }
    )
    cm = np.asarray(m["confusion_matrix"])
    t, p = np.meshgrid(np.arange(n_classes), np.arange(n_classes), indexing="ij")
    conf = pd.DataFrame({"true": t.ravel(), "predicted": p.ravel(), "count": cm.ravel()})
    return row, conf


def summarize(
    frame: pd.DataFrame, keys: Sequence[str], values: Sequence[str] | None = None
) -> pd.DataFrame:
    """Mean, standard deviation and count over the folds and seeds of each variant.

    Parameters
    ----------
    frame : a per-run table with :data:`VARIANT_COLUMNS`, ``seed`` and ``fold``.
    keys : further grouping columns (e.g. ``["epoch", "layer", "layer_index"]``).
    values : numeric columns to summarize (default: every numeric column that is not a key,
        ``fold`` or ``seed``).

    Returns
    -------
    DataFrame with the group columns and ``{v}_mean, {v}_std, {v}_n`` per value column, over
    the variant's folds and seeds (``_n`` counts runs with a finite value; ``_std`` uses
    ddof = 1, NaN when ``_n < 2``).
    """
    group = [c for c in VARIANT_COLUMNS if c in frame.columns] + list(keys)
    if values is None:
        skip = set(group) | {"fold", "seed", "run"}
        values = [
            c for c in frame.columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])
        ]
    return fold_statistics(frame, group, values)


def correlation_points(
    layers: pd.DataFrame,
    epochs: pd.DataFrame,
    penultimate: Mapping[str, str],
    target: str = "test_acc",
    checkpoints: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (run, checkpoint epoch): the :data:`FEATURES` and the accuracy target.

    Parameters
    ----------
    layers : :func:`layers_table` output (train-split ``alpha`` and ``ncc_mismatch_train``).
    epochs : :func:`epochs_table` output.
    penultimate : run id -> name of its penultimate (last inner) layer.
    target : ``test_acc`` (falls back to ``heldout_acc`` where the run has no test split) or
        ``heldout_acc``.
    checkpoints : the checkpoints table (``run, epoch, split, accuracy`` from the dumped
        predictions). A checkpoint without a row in the training metrics (epoch 0, the
        initialization) takes its accuracy from the dump of the ``test`` split (``heldout`` for
        ``target="heldout_acc"``), with the target name of the run's other epochs; without
        this table such a point has no accuracy and drops out of the correlation.
    """
    rows = []
    for (rid, epoch), part in layers.groupby(["run", "epoch"], sort=False):
        pen = penultimate[rid]
        inner = part[~part["layer"].isin(["input", "logits"])]
        pen_row = part[part["layer"] == pen]
        meta = {c: part[c].iloc[0] for c in RUN_COLUMNS}
        alpha_col = part["alpha"] if "alpha" in part else pd.Series(np.nan, index=part.index)
        rows.append(
            {
                **meta,
                "epoch": int(epoch),
                "penultimate_layer": pen,
                "alpha_last_inner": float(pen_row["alpha"].iloc[0])
                if len(pen_row) and "alpha" in pen_row
                else math.nan,
                "n_wavelets_last_inner": float(pen_row["n_wavelets"].iloc[0])
                if len(pen_row) and "n_wavelets" in pen_row
                else math.nan,
                "alpha_depth_slope": slope(
                    inner["layer_index"].to_numpy(float),
                    alpha_col.loc[inner.index].to_numpy(float),
                ),
                "ncc_mismatch_penultimate": float(pen_row["ncc_mismatch_train"].iloc[0])
                if len(pen_row)
                else math.nan,
            }
        )
    points = pd.DataFrame(rows)
    if points.empty:
        return pd.DataFrame(columns=[*RUN_COLUMNS, "epoch", *FEATURES, "target", "accuracy"])
    points.insert(
        points.columns.get_loc("n_wavelets_last_inner") + 1,
        "alpha_last_inner_adj",
        wavelet_adjusted(points),
    )
    acc = epochs[["run", "epoch", "test_acc", "heldout_acc"]].copy()
    if target == "test_acc":
        acc["accuracy"] = acc["test_acc"].where(acc["test_acc"].notna(), acc["heldout_acc"])
        acc["target"] = np.where(acc["test_acc"].notna(), "test_acc", "heldout_acc")
    else:
        acc["accuracy"] = acc["heldout_acc"]
        acc["target"] = "heldout_acc"
    points = points.merge(
        acc[["run", "epoch", "target", "accuracy"]], on=["run", "epoch"], how="left"
    )
    no_row = ~points.set_index(["run", "epoch"]).index.isin(acc.set_index(["run", "epoch"]).index)
    if checkpoints is not None and no_row.any():
        split = "test" if target == "test_acc" else "heldout"
        ck = checkpoints[checkpoints["split"] == split].set_index(["run", "epoch"])["accuracy"]
        run_target = acc.dropna(subset=["accuracy"]).groupby("run")["target"].first()
        for i in np.flatnonzero(no_row):
            key = (points.at[i, "run"], int(points.at[i, "epoch"]))
            if key in ck.index:
                points.at[i, "accuracy"] = float(ck.loc[key])
                points.at[i, "target"] = run_target.get(
                    key[0], "heldout_acc" if split == "heldout" else "test_acc"
                )
    return points


def wavelet_adjusted(
    points: pd.DataFrame,
    value: str = "alpha_last_inner",
    count: str = "n_wavelets_last_inner",
    by: Sequence[str] = ("experiment", "epoch", "penultimate_layer"),
) -> np.ndarray:
    """``value`` adjusted for the wavelet count: its residual from the least-squares line of
    ``value`` on log(``count``) within each group of ``by`` (experiment, checkpoint, layer).

    Returns (n,) aligned with ``points``; NaN where either is missing, ``count`` is not
    positive, or the group has fewer than 3 such rows or a constant count.
    """
    out = np.full(len(points), math.nan)
    y = pd.to_numeric(points[value], errors="coerce").to_numpy(float)
    k = pd.to_numeric(points[count], errors="coerce").to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.where(k > 0, np.log(k), np.nan)
    by = [c for c in by if c in points.columns]
    groups = (
        points.groupby(by, sort=False, dropna=False).indices if by else {0: np.arange(len(points))}
    )
    for idx in groups.values():
        idx = np.asarray(idx)
        ok = idx[np.isfinite(x[idx]) & np.isfinite(y[idx])]
        if len(ok) < 3 or np.ptp(x[ok]) == 0:
            continue
        b = slope(x[ok], y[ok])
        a = y[ok].mean() - b * x[ok].mean()
        out[ok] = y[ok] - (a + b * x[ok])
    return out


def missing_penultimate(
    layers: pd.DataFrame, penultimate: Mapping[str, str]
) -> dict[str, list[str]]:
    """Runs whose penultimate layer lacks the analyses the correlation features need.

    Parameters
    ----------
    layers : :func:`layers_table` output.
    penultimate : run id -> name of its penultimate (last inner) layer.

    Returns
    -------
    ``{run id: ["probe", "ncc"]}`` (whichever is missing) for every run whose penultimate layer
    has no finite train-split ``alpha`` row (probe) or ``ncc_mismatch_train`` row (ncc), e.g.
    because ``probe.layers`` or ``ncc.layers`` left it out; empty when nothing is missing.
    """
    missing: dict[str, list[str]] = {}
    for rid, pen in penultimate.items():
        rows = layers[(layers["run"] == rid) & (layers["layer"] == pen)]
        lacks = [
            what
            for what, col in (("probe", "alpha"), ("ncc", "ncc_mismatch_train"))
            if col not in rows or not np.isfinite(pd.to_numeric(rows[col], errors="coerce")).any()
        ]
        if lacks:
            missing[rid] = lacks
    return missing


def penultimate_gaps(
    layers: pd.DataFrame, penultimate: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """Why the penultimate layer of a run lacks a result: ``{run: {"probe"|"ncc": reason}}``.

    The reason says whether the layer was not analysed (left out by ``probe.layers`` /
    ``ncc.layers``) or was analysed without a finite value (then with the probe's status, e.g.
    ``no_wavelets`` when a subsample keeps too few samples per class); see
    :func:`missing_penultimate` for which runs are listed.
    """
    out: dict[str, dict[str, str]] = {}
    marks = {"probe": ("alpha", "alpha_status"), "ncc": ("ncc_mismatch_train", "nc1")}
    for rid, lacks in missing_penultimate(layers, penultimate).items():
        rows = layers[(layers["run"] == rid) & (layers["layer"] == penultimate[rid])]
        out[rid] = {}
        for what in lacks:
            value, mark = marks[what]
            analysed = any(c in rows and rows[c].notna().any() for c in (value, mark))
            if not analysed:
                out[rid][what] = f"not analysed: config key '{what}.layers' leaves it out"
            else:
                status = (
                    sorted(set(rows[mark].dropna().astype(str)))
                    if what == "probe" and mark in rows
                    else []
                )
                out[rid][what] = (
                    f"analysed, but {value} is not finite"
                    + (f" (probe status {', '.join(status)})" if status else "")
                    + "; too few samples per class? (config keys 'activations.max_samples', "
                    "'probe.max_samples')"
                )
    return out
