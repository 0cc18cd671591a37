"""The wavelet forest under the stored folds, with the number of wavelets M chosen on a validation split."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from mfoml.data.folds import split_indices
from mfoml.tabular.data import (
    DatasetJob,
    TabularData,
    check_folds,
    folds_array,
    forest_params,
)
from mfoml.tabular.models import evaluate, impute_in_fold, scalar_metrics
from mfoml.wavelets.forest import WaveletForestClassifier, WaveletForestRegressor

log = logging.getLogger(__name__)


def make_wavelet_forest(task: str, params: Mapping[str, Any], seed: int, n_jobs: int = 1) -> Any:
    cls = WaveletForestClassifier if task == "classification" else WaveletForestRegressor
    return cls(random_state=seed, n_jobs=n_jobs, **params)


def n_terms_grid(n_max: int, size: int = 40) -> np.ndarray:
    """``0`` plus ``size`` roughly log-spaced integers from 1 to ``n_max`` (unique, sorted)."""
    if n_max <= 0:
        return np.zeros(1, dtype=np.int64)
    g = np.unique(np.round(np.geomspace(1, n_max, num=max(size, 2))).astype(np.int64))
    return np.concatenate([[0], g]).astype(np.int64)


def _curve_error(task: str, curve: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.asarray(curve["error"] if task == "classification" else curve["mse"], float)


def _split_validation(data: TabularData, tr: np.ndarray, fraction: float, seed: int):
    strat = data.y[tr] if data.is_classification else None
    if strat is not None and np.min(np.bincount(strat)[np.unique(strat)]) < 2:
        strat = None  # a class with a single training sample cannot be stratified
    fit_idx, val_idx = train_test_split(tr, test_size=fraction, stratify=strat, random_state=seed)
    return np.sort(fit_idx), np.sort(val_idx)


def wavelet_cv(
    data: TabularData,
    folds: np.ndarray | Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    val_fraction: float = 0.2,
    select_metric: str = "error",
    curve_points: int = 40,
    trees_grid: Sequence[int] = (1, 2, 5, 10),
    seed: int = 0,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Wavelet forest with validation-chosen M, compression curves vs M and vs trees.

    Per outer fold k: the outer training fold is split into a fit part and a validation part
    (``val_fraction``, stratified); the forest is fit on the fit part, M chosen on the
    validation part (:meth:`select_n_terms`; the smallest M with the lowest validation error),
    and the M-term forest and the full forest are scored on the outer test fold.

    Parameters
    ----------
    params : constructor parameters of the wavelet forest (n_estimators, max_depth, ...).
    select_metric : classification only: ``"error"`` (misclassification) or ``"mse"``.
    curve_points : number of M values of the compression curve (log-spaced, plus 0).
    trees_grid : forest sizes of the curve vs number of trees (each fit on the fit part, M
        chosen on the validation part again).

    Returns
    -------
    dict with ``rows`` (per fold: metrics at M* and with all wavelets, ``n_terms``,
    ``n_wavelets``, ``kept_fraction``, ``threshold``), ``curve`` (per fold and M: held-out
    error on the test fold and on the validation part), ``trees`` (per fold and forest size),
    ``error_kind``.
    """
    fold_arr, n_splits = folds_array(folds)
    check_folds(data, fold_arr)
    clf = data.is_classification
    sel_kw = {"metric": select_metric} if clf else {}
    rows, curve_rows, tree_rows = [], [], []
    fitted = []
    for k in range(n_splits):
        tr, te = split_indices(fold_arr, k)
        fit_idx, val_idx = _split_validation(data, tr, val_fraction, seed + k)
        wf = make_wavelet_forest(data.task, params, seed + k, n_jobs)
        X = impute_in_fold(data, fit_idx)  # missing values: statistics of the fit rows only
        t0 = time.perf_counter()
        with threadpool_limits(n_jobs):
            wf.fit(X[fit_idx], data.y[fit_idx])
        fit_s = time.perf_counter() - t0
        m_star, thr = wf.select_n_terms(X[val_idx], data.y[val_idx], **sel_kw)
        m_sel = evaluate(data, data.y[te], wf.predict(X[te], n_terms=m_star))
        m_all = evaluate(data, data.y[te], wf.predict(X[te], n_terms="all"))
        rows.append(
            {
                "dataset": data.name,
                "fold": k,
                "n_terms": int(m_star),
                "n_wavelets": int(wf.n_wavelets_),
                "kept_fraction": float(m_star) / max(int(wf.n_wavelets_), 1),
                "threshold": float(thr),
                "fit_seconds": fit_s,
                **{f"{key}": v for key, v in scalar_metrics(m_sel).items()},
                **{f"full_{key}": v for key, v in scalar_metrics(m_all).items()},
            }
        )
        fitted.append((k, wf, te, val_idx, X))
        log.info(
            f"{data.name}: wavelet fold {k}: M*={m_star}/{wf.n_wavelets_} "
            f"score {m_sel['score']:.4f} (all wavelets {m_all['score']:.4f})"
        )
    # one M grid for all folds (M beyond a fold's K is that fold's full forest)
    grid = n_terms_grid(max(int(wf.n_wavelets_) for _, wf, _, _, _ in fitted), curve_points)
    for k, wf, te, val_idx, X in fitted:
        test_c = wf.mterm_curve(X[te], data.y[te], grid)
        val_c = wf.mterm_curve(X[val_idx], data.y[val_idx], grid)
        for M, et, ev in zip(
            grid, _curve_error(data.task, test_c), _curve_error(data.task, val_c), strict=True
        ):
            curve_rows.append(
                {
                    "dataset": data.name,
                    "fold": k,
                    "n_terms": int(M),
                    "test_error": float(et),
                    "val_error": float(ev),
                }
            )
    for k in range(n_splits):
        tr, te = split_indices(fold_arr, k)
        fit_idx, val_idx = _split_validation(data, tr, val_fraction, seed + k)
        X = impute_in_fold(data, fit_idx)
        for J in trees_grid:
            wf = make_wavelet_forest(
                data.task, {**params, "n_estimators": int(J)}, seed + k, n_jobs
            )
            with threadpool_limits(n_jobs):
                wf.fit(X[fit_idx], data.y[fit_idx])
            m_star, _ = wf.select_n_terms(X[val_idx], data.y[val_idx], **sel_kw)
            c = wf.mterm_curve(X[te], data.y[te], np.array([m_star, wf.n_wavelets_]))
            err = _curve_error(data.task, c)
            tree_rows.append(
                {
                    "dataset": data.name,
                    "fold": k,
                    "n_trees": int(J),
                    "n_terms": int(m_star),
                    "n_wavelets": int(wf.n_wavelets_),
                    "test_error_selected": float(err[0]),
                    "test_error_full": float(err[1]),
                }
            )
    return {
        "rows": rows,
        "curve": curve_rows,
        "trees": tree_rows,
        "error_kind": "misclassification rate" if clf else "mean squared error",
    }


def wavelet_job(job: DatasetJob) -> dict[str, Any]:
    """The computation of rule ``tabular_wavelet``: :func:`wavelet_cv` with the settings of the
    job's ``tabular`` slice (``forest``, ``seed`` and ``wavelet``: ``val_fraction``,
    ``select_metric``, ``curve_points``, ``trees_grid``); returns its result.
    """
    w, params = job.cfg["wavelet"], forest_params(job.cfg["forest"])
    log.info("%s: wavelet forest %s", job.data.name, params)
    keys = ("val_fraction", "select_metric", "curve_points", "trees_grid")
    kwargs = {k: w[k] for k in keys}
    return wavelet_cv(
        job.data, job.folds, params, **kwargs, seed=job.cfg["seed"], n_jobs=job.n_jobs
    )
