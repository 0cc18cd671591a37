"""The tabular track: cross-validated baselines, nested random-forest search, the wavelet forest,
feature importances and the label-noise study (issue 6; METHODS.md sections 3, 4, 10).

Every driver takes the full training set ``(X, y)`` and the stored fold assignment (``folds``,
an int array ``(N,)`` as written by :mod:`mfoml.folds`) and returns plain records (lists of
dicts, one per fold and item) that :func:`aggregate` turns into mean/std tables. Nothing here
reads config files or knows about Snakemake; the rule scripts ``workflow/scripts/tabular_*.py``
are thin wrappers.

Scores
------
The *primary score* (higher is better) used for model selection is accuracy for classification
and R^2 for regression; every record also carries the full metric dict of
:mod:`mfoml.metrics` (macro precision/recall, MAE and its std, RMSE, ...). The wavelet-forest
*error* curves are misclassification rate (classification) and mean squared error (regression),
as :meth:`mfoml.wavelets.WaveletForestClassifier.mterm_curve` returns them.

Leakage
-------
In :func:`nested_rf_search` the inner search only ever sees the outer training indices of the
fold: the inner K-fold split is made on ``train_idx`` and every inner fit/evaluation indexes
``X[train_idx[...]]``. In :func:`wavelet_cv` the validation split that chooses M is carved out of
the outer training fold. Label / target noise is applied to the training part only; test labels
stay clean.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, ParameterGrid, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from mfoml.aggregate import fold_statistics
from mfoml.folds import split_indices
from mfoml.metrics import classification_metrics, regression_metrics

__all__ = [
    "TabularPlan",
    "table_meta",
    "forest_params",
    "mean_std",
    "hparam_effects",
    "make_synthetic",
    "BASELINES",
    "SEARCH_PARAMS",
    "TabularData",
    "load_tabular",
    "make_baseline",
    "primary_score",
    "evaluate",
    "run_baselines",
    "nested_rf_search",
    "wavelet_cv",
    "importance_cv",
    "rank_agreement",
    "synthetic_importance",
    "noise_study",
    "n_terms_grid",
    "aggregate",
]

BASELINES = ("decision_tree", "random_forest", "hist_gradient_boosting", "linear")
SEARCH_PARAMS = ("n_estimators", "max_depth", "max_features", "min_samples_leaf")
IMPORTANCE_METHODS = ("wavelet", "impurity", "permutation")


def _log(msg: str) -> None:
    print(f"[tabular] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# data


class TabularData:
    """A tabular data set in memory.

    Attributes
    ----------
    X : float64 ``(N, d)`` (images and signals are flattened).
    y : int64 ``(N,)`` class labels in ``[0, n_classes)``, or float64 ``(N,)`` targets.
    task : ``"classification"`` or ``"regression"``.
    n_classes : number of classes (0 for regression).
    name : data-set name; ``feature_names`` : d names.
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        task: str,
        n_classes: int,
        name: str = "",
        feature_names: Sequence[str] | None = None,
    ) -> None:
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        X = np.asarray(X, dtype=np.float64)
        self.X = X.reshape(X.shape[0], -1)
        self.y = np.asarray(y, dtype=np.int64 if task == "classification" else np.float64)
        if self.y.shape != (self.X.shape[0],):
            raise ValueError(f"{name}: y has shape {self.y.shape}, expected ({self.X.shape[0]},)")
        if not np.all(np.isfinite(self.X)):
            raise ValueError(f"{name}: X contains NaN or inf")
        self.task = task
        self.n_classes = int(n_classes) if task == "classification" else 0
        self.name = name
        d = self.X.shape[1]
        if feature_names is None or len(feature_names) != d:
            feature_names = [f"x{i}" for i in range(d)]
        self.feature_names = [str(f) for f in feature_names]

    @property
    def is_classification(self) -> bool:
        """Whether the task is classification."""
        return self.task == "classification"


def load_tabular(path: str, name: str | None = None) -> TabularData:
    """Load a normalized data-set directory (``resources/data/{dataset}``) as a table.

    The training split only (the folds are defined on it); inputs flattened to ``(N, d)``.
    ``name`` (default: the meta's name) labels the results, e.g. the config's data-set id.
    """
    from mfoml.datasets import load_dataset

    ds = load_dataset(path)
    meta = ds.meta
    task = meta["task"]
    return TabularData(
        np.asarray(ds.x_train),
        np.asarray(ds.y_train),
        task,
        int(meta.get("n_classes") or 0),
        name=name if name is not None else str(meta.get("name", "")),
        feature_names=meta.get("feature_names"),
    )


def table_meta(data: TabularData) -> dict[str, Any]:
    """``{dataset, task, n_samples, n_features, n_classes}`` of a data set (for the tables)."""
    return {
        "dataset": data.name,
        "task": data.task,
        "n_samples": int(data.X.shape[0]),
        "n_features": int(data.X.shape[1]),
        "n_classes": int(data.n_classes),
    }


def forest_params(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Wavelet-forest constructor parameters from the ``tabular.forest`` config block.

    Keys ``n_estimators, max_depth, min_samples_leaf, max_features, norm_weight, bootstrap``;
    ``max_features: "all"`` or None means all features at every split.
    """
    known = (
        "n_estimators",
        "max_depth",
        "min_samples_leaf",
        "max_features",
        "norm_weight",
        "bootstrap",
    )
    unknown = set(cfg) - set(known)
    if unknown:
        raise ValueError(f"config key 'tabular.forest': unknown keys {sorted(unknown)}")
    out = {k: cfg[k] for k in known if k in cfg}
    if out.get("max_features") == "all":
        out["max_features"] = None
    return out


def _folds_array(folds: np.ndarray | Mapping[str, Any]) -> tuple[np.ndarray, int]:
    if isinstance(folds, Mapping):
        arr = np.asarray(folds["fold"], dtype=np.int64)
        return arr, int(folds["n_splits"])
    arr = np.asarray(folds, dtype=np.int64)
    return arr, int(arr.max()) + 1


def _check_folds(data: TabularData, fold_arr: np.ndarray) -> None:
    if fold_arr.shape[0] != data.X.shape[0]:
        raise ValueError(
            f"{data.name}: fold assignment has {fold_arr.shape[0]} entries but the data set has "
            f"{data.X.shape[0]} training samples (stale results/folds file?)"
        )


# ---------------------------------------------------------------------------------------------
# models and scores


def make_baseline(name: str, task: str, seed: int = 0, n_jobs: int = 1, **params: Any) -> Any:
    """A scikit-learn baseline estimator.

    Parameters
    ----------
    name : one of :data:`BASELINES`: ``decision_tree``, ``random_forest``,
        ``hist_gradient_boosting``, ``linear`` (standardized inputs then LogisticRegression for
        classification, Ridge for regression).
    task : ``"classification"`` or ``"regression"``.
    seed : ``random_state``; n_jobs : forest parallelism.
    **params : passed to the estimator (e.g. ``n_estimators`` of the forest).
    """
    clf = task == "classification"
    if name == "decision_tree":
        cls = DecisionTreeClassifier if clf else DecisionTreeRegressor
        return cls(random_state=seed, **params)
    if name == "random_forest":
        cls = RandomForestClassifier if clf else RandomForestRegressor
        return cls(random_state=seed, n_jobs=n_jobs, **params)
    if name == "hist_gradient_boosting":
        cls = HistGradientBoostingClassifier if clf else HistGradientBoostingRegressor
        return cls(random_state=seed, **params)
    if name == "linear":
        if clf:
            model = LogisticRegression(max_iter=params.pop("max_iter", 2000), **params)
        else:
            model = Ridge(**params)
        return make_pipeline(StandardScaler(), model)
    raise ValueError(f"unknown baseline model {name!r}; known: {', '.join(BASELINES)}")


def evaluate(data: TabularData, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Metric dict of :mod:`mfoml.metrics` plus ``score`` (accuracy or R^2)."""
    if data.is_classification:
        m = classification_metrics(y_true, y_pred, data.n_classes)
        m["score"] = m["accuracy"]
    else:
        m = regression_metrics(y_true, y_pred)
        m["score"] = m["r2"]
    return m


def primary_score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Accuracy (classification) or R^2 (regression) — higher is better."""
    if task == "classification":
        return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))
    yt, yp = np.asarray(y_true, float), np.asarray(y_pred, float)
    ss_tot = float(np.sum((yt - yt.mean()) ** 2))
    ss_res = float(np.sum((yt - yp) ** 2))
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return 1.0 - ss_res / ss_tot


_SCALAR_CLF = ("score", "accuracy", "precision_macro", "recall_macro", "f1_macro")
_SCALAR_REG = ("score", "mae", "mae_std", "mean_error", "error_std", "mse", "rmse", "r2")
#: Table column names; ``abs_error_sd`` is the per-fold standard deviation of |y - y_hat|
#: (``regression_metrics``'s ``mae_std``), renamed so it does not collide with the
#: ``<metric>_std`` columns (std over folds) of the aggregated tables.
_RENAME = {"mae_std": "abs_error_sd", "error_std": "error_sd"}


def _scalars(m: Mapping[str, Any]) -> dict[str, float]:
    keys = _SCALAR_CLF if "accuracy" in m else _SCALAR_REG
    return {_RENAME.get(k, k): float(m[k]) for k in keys}


def _inner_cv(task: str, n_splits: int, seed: int) -> KFold | StratifiedKFold:
    if task == "classification":
        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return KFold(n_splits=n_splits, shuffle=True, random_state=seed)


def _jsonable_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v if not isinstance(v, np.generic) else v.item()) for k, v in params.items()}


def _param_values(params: Mapping[str, Any]) -> dict[str, str]:
    """Parameter values as labels (``None`` -> ``"None"``, ``4`` -> ``"4"``), for tables."""
    return {k: str(v) for k, v in _jsonable_params(params).items()}


# ---------------------------------------------------------------------------------------------
# baselines


def run_baselines(
    data: TabularData,
    folds: np.ndarray | Mapping[str, Any],
    models: Sequence[str] = BASELINES,
    *,
    model_params: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Cross-validate the baseline models on the stored folds.

    Returns
    -------
    dict with ``rows``: one record per (model, fold) with the scalar metrics and ``fit_seconds``;
    ``details``: per (model, fold) the full metric dict (per-class report, confusion matrix).
    """
    fold_arr, n_splits = _folds_array(folds)
    _check_folds(data, fold_arr)
    model_params = model_params or {}
    rows, details = [], []
    for name in models:
        for k in range(n_splits):
            tr, te = split_indices(fold_arr, k)
            est = make_baseline(
                name, data.task, seed=seed, n_jobs=n_jobs, **model_params.get(name, {})
            )
            t0 = time.perf_counter()
            with threadpool_limits(n_jobs):
                est.fit(data.X[tr], data.y[tr])
                pred = est.predict(data.X[te])
            seconds = time.perf_counter() - t0
            m = evaluate(data, data.y[te], pred)
            rows.append(
                {
                    "dataset": data.name,
                    "model": name,
                    "fold": k,
                    **_scalars(m),
                    "fit_seconds": seconds,
                }
            )
            details.append({"model": name, "fold": k, "metrics": m})
        _log(
            f"{data.name}: baseline {name}: mean score "
            f"{np.mean([r['score'] for r in rows if r['model'] == name]):.4f}"
        )
    return {"rows": rows, "details": details}


# ---------------------------------------------------------------------------------------------
# nested random-forest search


def _candidates(grid: Mapping[str, Sequence[Any]], n_iter: int | None, seed: int) -> list[dict]:
    unknown = set(grid) - set(SEARCH_PARAMS)
    if unknown:
        raise ValueError(f"rf_search grid: unknown hyper-parameters {sorted(unknown)}")
    cands = [dict(p) for p in ParameterGrid({k: list(v) for k, v in sorted(grid.items())})]
    if n_iter is not None and n_iter < len(cands):
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(cands), size=n_iter, replace=False))
        cands = [cands[i] for i in pick]
    return cands


def nested_rf_search(
    data: TabularData,
    folds: np.ndarray | Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    *,
    inner_splits: int = 3,
    n_iter: int | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    estimator_factory: Callable[[str, dict[str, Any], int], Any] | None = None,
) -> dict[str, Any]:
    """Random-forest hyper-parameter search with nested cross-validation.

    For each outer fold k the candidates are scored by an inner (stratified) K-fold on the outer
    training indices only; the best candidate (highest mean inner score, first on ties) is refit
    on the whole outer training fold and scored once on the outer test fold. The reported score
    is thus never tuned on its own test fold.

    Parameters
    ----------
    data : the data set; folds : outer fold assignment ``(N,)`` (or the load_folds dict).
    grid : ``{hyper-parameter: values}`` over ``n_estimators, max_depth, max_features,
        min_samples_leaf``.
    inner_splits : inner folds; n_iter : score a seeded random subset of this many candidates
        (None = the whole grid).
    estimator_factory : ``(task, params, seed) -> estimator``; default a random forest of the
        task. Tests pass a recording forest here.

    Returns
    -------
    dict with ``candidates`` (list of param dicts), ``inner``: one record per (outer fold,
    candidate) with ``inner_mean``/``inner_std`` and the params, ``outer``: one record per outer
    fold with the chosen params and the test metrics, ``details`` (full metric dicts).
    """
    fold_arr, n_splits = _folds_array(folds)
    _check_folds(data, fold_arr)
    cands = _candidates(grid, n_iter, seed)
    if not cands:
        raise ValueError("rf_search: empty grid")

    def factory(params: dict[str, Any]) -> Any:
        if estimator_factory is not None:
            return estimator_factory(data.task, params, seed)
        return make_baseline("random_forest", data.task, seed=seed, n_jobs=n_jobs, **params)

    inner_rows, outer_rows, details = [], [], []
    for k in range(n_splits):
        tr, te = split_indices(fold_arr, k)
        cv = _inner_cv(data.task, inner_splits, seed + 1000 + k)
        inner = [(tr[a], tr[b]) for a, b in cv.split(data.X[tr], data.y[tr])]
        means = []
        for ci, params in enumerate(cands):
            scores = []
            for fit_idx, val_idx in inner:
                est = factory(params)
                with threadpool_limits(n_jobs):
                    est.fit(data.X[fit_idx], data.y[fit_idx])
                    scores.append(
                        primary_score(data.task, data.y[val_idx], est.predict(data.X[val_idx]))
                    )
            means.append(float(np.mean(scores)))
            inner_rows.append(
                {
                    "dataset": data.name,
                    "fold": k,
                    "candidate": ci,
                    **_param_values(params),
                    "inner_mean": means[-1],
                    "inner_std": float(np.std(scores)),
                }
            )
        best = int(np.argmax(means))
        est = factory(cands[best])
        with threadpool_limits(n_jobs):
            est.fit(data.X[tr], data.y[tr])
            pred = est.predict(data.X[te])
        m = evaluate(data, data.y[te], pred)
        outer_rows.append(
            {
                "dataset": data.name,
                "fold": k,
                "best_candidate": best,
                "best_params": _param_label(cands[best]),
                "inner_best": means[best],
                **{f"best_{p}": _param_values(cands[best]).get(p, "") for p in SEARCH_PARAMS},
                **_scalars(m),
            }
        )
        details.append({"fold": k, "metrics": m})
        _log(
            f"{data.name}: nested search fold {k}: best {_param_label(cands[best])} "
            f"inner {means[best]:.4f} outer {m['score']:.4f}"
        )
    return {
        "candidates": [_jsonable_params(c) for c in cands],
        "inner": inner_rows,
        "outer": outer_rows,
        "details": details,
    }


def _param_label(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={params[k]}" for k in sorted(params))


def hparam_effects(inner: pd.DataFrame, params: Sequence[str] = SEARCH_PARAMS) -> pd.DataFrame:
    """How each hyper-parameter moves the inner CV score.

    For each outer fold, parameter and value: the mean inner score over the candidates having
    that value (a marginal mean); then mean and std over outer folds.

    Returns
    -------
    DataFrame with columns ``dataset, param, value, score_mean, score_std, n_folds``.
    """
    out = []
    for p in params:
        if p not in inner.columns:
            continue
        vals = inner[p].astype(str)
        per_fold = (
            inner.assign(value=vals).groupby(["dataset", "fold", "value"])["inner_mean"].mean()
        )
        agg = per_fold.groupby(["dataset", "value"]).agg(["mean", "std", "count"]).reset_index()
        for _, r in agg.iterrows():
            out.append(
                {
                    "dataset": r["dataset"],
                    "param": p,
                    "value": r["value"],
                    "score_mean": r["mean"],
                    "score_std": 0.0 if pd.isna(r["std"]) else r["std"],
                    "n_folds": int(r["count"]),
                }
            )
    out.sort(key=lambda r: (r["dataset"], params.index(r["param"]), _value_key(r["value"])))
    return pd.DataFrame(
        out, columns=["dataset", "param", "value", "score_mean", "score_std", "n_folds"]
    )


def _value_key(label: str) -> tuple[int, float, str]:
    """Order of hyper-parameter labels: None, then numbers ascending, then strings."""
    if label == "None":
        return (0, 0.0, "")
    try:
        return (1, float(label), "")
    except ValueError:
        return (2, 0.0, label)


# ---------------------------------------------------------------------------------------------
# wavelet forest


def _wavelet_forest(task: str, params: Mapping[str, Any], seed: int, n_jobs: int = 1) -> Any:
    from mfoml.wavelets import WaveletForestClassifier, WaveletForestRegressor

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
    fold_arr, n_splits = _folds_array(folds)
    _check_folds(data, fold_arr)
    clf = data.is_classification
    sel_kw = {"metric": select_metric} if clf else {}
    rows, curve_rows, tree_rows = [], [], []
    fitted = []
    for k in range(n_splits):
        tr, te = split_indices(fold_arr, k)
        fit_idx, val_idx = _split_validation(data, tr, val_fraction, seed + k)
        wf = _wavelet_forest(data.task, params, seed + k, n_jobs)
        t0 = time.perf_counter()
        with threadpool_limits(n_jobs):
            wf.fit(data.X[fit_idx], data.y[fit_idx])
        fit_s = time.perf_counter() - t0
        m_star, thr = wf.select_n_terms(data.X[val_idx], data.y[val_idx], **sel_kw)
        m_sel = evaluate(data, data.y[te], wf.predict(data.X[te], n_terms=m_star))
        m_all = evaluate(data, data.y[te], wf.predict(data.X[te], n_terms="all"))
        rows.append(
            {
                "dataset": data.name,
                "fold": k,
                "n_terms": int(m_star),
                "n_wavelets": int(wf.n_wavelets_),
                "kept_fraction": float(m_star) / max(int(wf.n_wavelets_), 1),
                "threshold": float(thr),
                "fit_seconds": fit_s,
                **{f"{key}": v for key, v in _scalars(m_sel).items()},
                **{f"full_{key}": v for key, v in _scalars(m_all).items()},
            }
        )
        fitted.append((k, wf, te, val_idx))
        _log(
            f"{data.name}: wavelet fold {k}: M*={m_star}/{wf.n_wavelets_} "
            f"score {m_sel['score']:.4f} (all wavelets {m_all['score']:.4f})"
        )
    # one M grid for all folds (M beyond a fold's K is that fold's full forest)
    grid = n_terms_grid(max(int(wf.n_wavelets_) for _, wf, _, _ in fitted), curve_points)
    for k, wf, te, val_idx in fitted:
        test_c = wf.mterm_curve(data.X[te], data.y[te], grid)
        val_c = wf.mterm_curve(data.X[val_idx], data.y[val_idx], grid)
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
        for J in trees_grid:
            wf = _wavelet_forest(data.task, {**params, "n_estimators": int(J)}, seed + k, n_jobs)
            with threadpool_limits(n_jobs):
                wf.fit(data.X[fit_idx], data.y[fit_idx])
            m_star, _ = wf.select_n_terms(data.X[val_idx], data.y[val_idx], **sel_kw)
            c = wf.mterm_curve(data.X[te], data.y[te], np.array([m_star, wf.n_wavelets_]))
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


# ---------------------------------------------------------------------------------------------
# feature importance


def _ranks(values: np.ndarray) -> np.ndarray:
    """Rank 1 = most important (ties share the average rank)."""
    return stats.rankdata(-np.asarray(values, float), method="average")


def rank_agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Spearman rho and Kendall tau-b between two importance vectors (NaN if one is constant)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"spearman": float("nan"), "kendall": float("nan")}
    return {
        "spearman": float(stats.spearmanr(a, b).statistic),
        "kendall": float(stats.kendalltau(a, b).statistic),
    }


def _importances(
    data: TabularData,
    fit_idx: np.ndarray,
    test_idx: np.ndarray,
    params: Mapping[str, Any],
    *,
    tau: float,
    n_repeats: int,
    seed: int,
    n_jobs: int,
) -> dict[str, np.ndarray]:
    wf = _wavelet_forest(data.task, {**params, "importance_tau": tau}, seed, n_jobs)
    with threadpool_limits(n_jobs):
        wf.fit(data.X[fit_idx], data.y[fit_idx])
    scoring = "accuracy" if data.is_classification else "r2"
    with threadpool_limits(n_jobs):
        perm = permutation_importance(
            wf,
            data.X[test_idx],
            data.y[test_idx],
            scoring=scoring,
            n_repeats=n_repeats,
            random_state=seed,
            n_jobs=1,
        )
    return {
        "wavelet": np.asarray(wf.feature_importances_, float),
        "impurity": np.asarray(wf.forest_.feature_importances_, float),
        "permutation": np.asarray(perm.importances_mean, float),
    }


def importance_cv(
    data: TabularData,
    folds: np.ndarray | Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    tau: float = 1.0,
    n_repeats: int = 5,
    seed: int = 0,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Wavelet vs impurity vs permutation importance of one forest per fold, with rank agreement.

    Per outer fold a wavelet forest is fit on the training fold; the wavelet importance
    (METHODS section 4, exponent ``tau``) and scikit-learn's impurity importance are read from
    that same forest, the permutation importance (mean drop of accuracy / R^2 over
    ``n_repeats`` shuffles) is measured on the test fold.

    Returns
    -------
    dict with ``rows`` (per fold, feature and method: ``importance`` normalized to sum 1 where
    the sum is positive, ``raw``, ``rank``) and ``agreement`` (per fold and method pair:
    ``spearman``, ``kendall``).
    """
    fold_arr, n_splits = _folds_array(folds)
    _check_folds(data, fold_arr)
    rows, agree = [], []
    for k in range(n_splits):
        tr, te = split_indices(fold_arr, k)
        imp = _importances(
            data, tr, te, params, tau=tau, n_repeats=n_repeats, seed=seed + k, n_jobs=n_jobs
        )
        for method, vals in imp.items():
            s = vals.sum()
            norm = vals / s if s > 0 else vals
            for i, (fname, v, nv, r) in enumerate(
                zip(data.feature_names, vals, norm, _ranks(vals), strict=True)
            ):
                rows.append(
                    {
                        "dataset": data.name,
                        "fold": k,
                        "method": method,
                        "feature": fname,
                        "feature_index": i,
                        "raw": float(v),
                        "importance": float(nv),
                        "rank": float(r),
                    }
                )
        for a, b in itertools.combinations(IMPORTANCE_METHODS, 2):
            agree.append(
                {
                    "dataset": data.name,
                    "fold": k,
                    "pair": f"{a}~{b}",
                    **rank_agreement(imp[a], imp[b]),
                }
            )
        _log(f"{data.name}: importance fold {k} done")
    return {"rows": rows, "agreement": agree}


def make_synthetic(
    kind: str, n_samples: int, n_features: int, n_informative: int, seed: int, noise: float = 0.0
) -> tuple[TabularData, np.ndarray]:
    """A synthetic data set with known relevant features.

    ``kind="classification"``: :func:`sklearn.datasets.make_classification` with
    ``shuffle=False`` and no redundant/repeated features, so features ``0..n_informative-1`` are
    the informative ones. ``kind="friedman1"``: :func:`sklearn.datasets.make_friedman1`
    (features 0-4 relevant; ``n_informative`` is ignored and set to 5).

    Returns
    -------
    (data, true_features): the data set and the indices of the relevant features.
    """
    from sklearn import datasets as skd

    if kind == "classification":
        X, y = skd.make_classification(
            n_samples=n_samples,
            n_features=n_features,
            n_informative=n_informative,
            n_redundant=0,
            n_repeated=0,
            n_classes=2,
            shuffle=False,
            random_state=seed,
            flip_y=noise,
        )
        true = np.arange(n_informative)
        return TabularData(X, y, "classification", 2, name="synthetic-classification"), true
    if kind == "friedman1":
        if n_features < 5:
            raise ValueError("friedman1 needs n_features >= 5")
        X, y = skd.make_friedman1(
            n_samples=n_samples, n_features=n_features, noise=noise, random_state=seed
        )
        return TabularData(X, y, "regression", 0, name="synthetic-friedman1"), np.arange(5)
    raise ValueError(f"synthetic kind must be 'classification' or 'friedman1', got {kind!r}")


def top_k_pessimistic(values: np.ndarray, true: Sequence[int], k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``values`` (shape (d,)), ties broken *against* the features
    in ``true``: a true feature ranks above an irrelevant one only with a strictly larger
    value, so tied (e.g. all-zero) importances never count as recovered features."""
    values = np.asarray(values, dtype=np.float64)
    is_true = np.isin(np.arange(values.shape[0]), np.asarray(true))
    order = np.lexsort((is_true, -values))  # primary: value descending; ties: irrelevant first
    return order[:k]


def synthetic_importance(
    kind: str = "classification",
    *,
    n_samples: int = 400,
    n_features: int = 10,
    n_informative: int = 3,
    noise: float = 0.0,
    params: Mapping[str, Any] | None = None,
    n_splits: int = 5,
    tau: float = 1.0,
    n_repeats: int = 5,
    seed: int = 0,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """How many of the truly relevant features each importance method ranks on top.

    Cross-validated (``n_splits`` folds, stratified for classification): per fold and method,
    ``recovered`` = |top-k features ∩ true features| with k = the number of true features.

    Returns
    -------
    dict with ``rows`` (per fold and method: ``recovered``, ``k``, ``top`` the top-k indices),
    ``importance`` (per fold, method, feature: normalized importance and ``relevant`` flag),
    ``true_features``.
    """
    data, true = make_synthetic(kind, n_samples, n_features, n_informative, seed, noise)
    params = dict(params or {"n_estimators": 50})
    fold_arr = np.empty(n_samples, dtype=np.int64)
    cv = _inner_cv(data.task, n_splits, seed)
    for k, (_, te) in enumerate(cv.split(data.X, data.y)):
        fold_arr[te] = k
    rows, imp_rows = [], []
    kk = len(true)
    for k in range(n_splits):
        tr, te = split_indices(fold_arr, k)
        imp = _importances(
            data, tr, te, params, tau=tau, n_repeats=n_repeats, seed=seed + k, n_jobs=n_jobs
        )
        for method, vals in imp.items():
            top = top_k_pessimistic(vals, true, kk)
            rows.append(
                {
                    "dataset": data.name,
                    "fold": k,
                    "method": method,
                    "k": kk,
                    "recovered": int(np.isin(top, true).sum()),
                    "top": top.tolist(),
                }
            )
            s = vals.sum()
            for i, v in enumerate(vals / s if s > 0 else vals):
                imp_rows.append(
                    {
                        "dataset": data.name,
                        "fold": k,
                        "method": method,
                        "feature_index": i,
                        "importance": float(v),
                        "relevant": bool(i in set(true.tolist())),
                    }
                )
    _log(
        f"{data.name}: recovered true features: "
        + ", ".join(
            f"{m} {np.mean([r['recovered'] for r in rows if r['method'] == m]):.2f}/{kk}"
            for m in IMPORTANCE_METHODS
        )
    )
    return {"rows": rows, "importance": imp_rows, "true_features": true.tolist(), "kind": kind}


# ---------------------------------------------------------------------------------------------
# label noise


def noise_study(
    data: TabularData,
    folds: np.ndarray | Mapping[str, Any],
    levels: Sequence[float],
    params: Mapping[str, Any],
    *,
    alpha_params: Mapping[str, Any] | None = None,
    seed: int = 0,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Scores and the forest's smoothness alpha as label / target noise grows.

    Per level and outer fold: classification relabels ``round(level * N_train)`` training labels
    (:func:`mfoml.noise.flip_labels`); regression adds Gaussian noise with standard deviation
    ``level * std(y_train)`` to the training targets (:func:`mfoml.noise.gaussian_target_noise`).
    A wavelet forest (``params``) is fit on the noisy training fold and scored on the clean
    test fold; ``forest_alpha`` is :func:`mfoml.smoothness.alpha_star` (angle estimator) of that
    forest's wavelet norms, and ``alpha`` the sparsity probe
    (:func:`mfoml.smoothness.sparsity_probe`, ``alpha_params`` overriding its defaults: 1 tree,
    depth 15) on the same noisy training fold.

    Returns
    -------
    dict with ``rows``: per (level, fold) the scalar metrics, ``alpha``, ``alpha_min``,
    ``alpha_max``, ``alpha_status``, ``forest_alpha``, ``forest_alpha_status``, ``noise_sigma`` (regression) and ``n_changed``
    (classification).
    """
    from mfoml.noise import flip_labels, gaussian_target_noise
    from mfoml.smoothness import alpha_star, sparsity_probe

    fold_arr, n_splits = _folds_array(folds)
    _check_folds(data, fold_arr)
    alpha_params = dict(alpha_params or {})
    rows = []
    for li, level in enumerate(levels):
        for k in range(n_splits):
            tr, te = split_indices(fold_arr, k)
            y_tr = data.y[tr]
            noise_seed = seed + 7919 * li + k
            extra: dict[str, Any] = {}
            if data.is_classification:
                y_noisy, changed = flip_labels(y_tr, float(level), data.n_classes, noise_seed)
                extra["n_changed"] = int(changed.sum())
            else:
                sigma = float(level) * float(np.std(y_tr))
                y_noisy = gaussian_target_noise(y_tr, sigma, noise_seed)
                extra["noise_sigma"] = sigma
            wf = _wavelet_forest(data.task, params, seed + k, n_jobs)
            with threadpool_limits(n_jobs):
                wf.fit(data.X[tr], y_noisy)
                m = evaluate(data, data.y[te], wf.predict(data.X[te], n_terms="all"))
                res = sparsity_probe(data.X[tr], y_noisy, task=data.task, **alpha_params)
            a = res.to_dict()
            fa = alpha_star(wf.wavelet_norms_, len(wf.forest_.estimators_)).to_dict()
            rows.append(
                {
                    "dataset": data.name,
                    "level": float(level),
                    "fold": k,
                    **extra,
                    **_scalars(m),
                    "alpha": _float_or_nan(a.get("alpha")),
                    "alpha_min": _float_or_nan(a.get("alpha_min")),
                    "alpha_max": _float_or_nan(a.get("alpha_max")),
                    "alpha_status": str(a.get("status", "")),
                    "forest_alpha": _float_or_nan(fa.get("alpha")),
                    "forest_alpha_status": str(fa.get("status", "")),
                }
            )
        lv = [r for r in rows if r["level"] == float(level)]
        _log(
            f"{data.name}: noise {level}: score {np.mean([r['score'] for r in lv]):.4f} "
            f"alpha {np.nanmean([r['alpha'] for r in lv]):.4f}"
        )
    return {"rows": rows}


def _float_or_nan(v: Any) -> float:
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


# ---------------------------------------------------------------------------------------------
# aggregation over folds


def mean_std(
    frame: pd.DataFrame, by: Sequence[str], columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Mean and (sample, ddof=1) standard deviation over folds of numeric ``columns``.

    Returns one row per group with ``<col>_mean``, ``<col>_std``, ``<col>_n`` (the folds with a
    finite value; NaN and inf are left out) and ``n_folds`` (the folds in the group). The
    standard deviation is NaN where fewer than two folds have a finite value (undefined, not 0),
    the same convention as :func:`mfoml.aggregate.summarize` (both use
    :func:`mfoml.aggregate.fold_statistics`).
    """
    if columns is None:
        columns = [
            c
            for c in frame.columns
            if c not in by and c != "fold" and pd.api.types.is_numeric_dtype(frame[c])
        ]
    out = fold_statistics(frame, by, columns)
    # same grouping, same order of appearance as fold_statistics
    out["n_folds"] = frame.groupby(list(by), sort=False, dropna=False).size().to_numpy()
    return out


def aggregate(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, pd.DataFrame]:
    """Build the tabular tables (mean and std over folds) from per-data-set result dicts.

    Parameters
    ----------
    results : ``{"baselines": [...], "rf_search": [...], "wavelet": [...], "importance": [...],
        "noise": [...], "synthetic": [...], "meta": [...]}``, each a list of the dicts the drivers
        returned (one per data set; ``meta`` entries are ``{dataset, task, n_samples,
        n_features, n_classes}``). Missing keys are skipped.

    Returns
    -------
    ``{table name: DataFrame}``; names are the ``results/tables/tabular_<name>.csv`` stems.
    """
    t: dict[str, pd.DataFrame] = {}
    meta = pd.DataFrame(list(results.get("meta", [])))
    if results.get("baselines"):
        rows = pd.DataFrame([r for res in results["baselines"] for r in res["rows"]])
        t["baselines"] = mean_std(rows, ["dataset", "model"])
        per_class, conf = [], []
        for res in results["baselines"]:
            for d in res["details"]:
                m = d["metrics"]
                if "per_class" not in m:
                    continue
                for pc in m["per_class"]:
                    per_class.append(
                        {"dataset": _ds(res), "model": d["model"], "fold": d["fold"], **pc}
                    )
                cm = np.asarray(m["confusion_matrix"])
                for i, j in itertools.product(range(cm.shape[0]), range(cm.shape[1])):
                    conf.append(
                        {
                            "dataset": _ds(res),
                            "model": d["model"],
                            "fold": d["fold"],
                            "true": i,
                            "predicted": j,
                            "count": int(cm[i, j]),
                        }
                    )
        if per_class:
            pc = pd.DataFrame(per_class)
            t["per_class"] = mean_std(
                pc, ["dataset", "model", "class"], ["precision", "recall", "f1", "support"]
            )
            cf = pd.DataFrame(conf)
            t["confusion"] = (
                cf.groupby(["dataset", "model", "true", "predicted"], sort=False)["count"]
                .sum()
                .reset_index()
            )
    if results.get("rf_search"):
        outer = pd.DataFrame([r for res in results["rf_search"] for r in res["outer"]])
        inner = pd.DataFrame([r for res in results["rf_search"] for r in res["inner"]])
        t["rf_search_folds"] = outer
        summ = mean_std(outer.drop(columns=["best_candidate"]), ["dataset"])
        summ = summ[[c for c in summ.columns if not c.startswith("best_")]]
        consensus = []
        for ds, grp in inner.groupby("dataset", sort=False):
            by_c = grp.groupby("candidate")["inner_mean"].mean()
            best_c = int(by_c.idxmax())
            row = grp[grp["candidate"] == best_c].iloc[0]
            label = _param_label({p: row[p] for p in SEARCH_PARAMS if p in grp.columns})
            chosen = outer[outer["dataset"] == ds]["best_params"]
            consensus.append(
                {
                    "dataset": ds,
                    "best_config": label,
                    "best_config_inner_mean": float(by_c.max()),
                    "most_chosen": chosen.mode().iloc[0],
                    "most_chosen_folds": int((chosen == chosen.mode().iloc[0]).sum()),
                }
            )
        t["rf_search"] = summ.merge(pd.DataFrame(consensus), on="dataset")
        t["hparams"] = hparam_effects(inner)
    if results.get("wavelet"):
        rows = pd.DataFrame([r for res in results["wavelet"] for r in res["rows"]])
        t["wavelet"] = mean_std(rows, ["dataset"])
        curve = pd.DataFrame([r for res in results["wavelet"] for r in res["curve"]])
        t["compression"] = mean_std(curve, ["dataset", "n_terms"], ["test_error", "val_error"])
        trees = pd.DataFrame([r for res in results["wavelet"] for r in res["trees"]])
        if not trees.empty:
            t["trees"] = mean_std(
                trees,
                ["dataset", "n_trees"],
                ["test_error_selected", "test_error_full", "n_terms", "n_wavelets"],
            )
        kinds = {_ds(res): res["error_kind"] for res in results["wavelet"]}
        for name in ("compression", "trees"):
            if name in t:
                t[name]["error_kind"] = t[name]["dataset"].map(kinds)
    if results.get("importance"):
        rows = pd.DataFrame([r for res in results["importance"] for r in res["rows"]])
        t["importance"] = mean_std(
            rows, ["dataset", "method", "feature", "feature_index"], ["importance", "rank"]
        )
        agree = pd.DataFrame([r for res in results["importance"] for r in res["agreement"]])
        t["rank_agreement"] = mean_std(agree, ["dataset", "pair"], ["spearman", "kendall"])
    if results.get("synthetic"):
        rows = pd.DataFrame([r for res in results["synthetic"] for r in res["rows"]])
        rows = rows.drop(columns=["top"])
        t["synthetic"] = mean_std(rows, ["dataset", "method", "k"], ["recovered"])
        t["synthetic"]["true_features"] = [
            " ".join(
                map(
                    str,
                    next(
                        res["true_features"]
                        for res in results["synthetic"]
                        if res["rows"][0]["dataset"] == ds
                    ),
                )
            )
            for ds in t["synthetic"]["dataset"]
        ]
        imp = pd.DataFrame([r for res in results["synthetic"] for r in res["importance"]])
        t["synthetic_importance"] = mean_std(
            imp, ["dataset", "method", "feature_index", "relevant"], ["importance"]
        )
    if results.get("noise"):
        rows = pd.DataFrame([r for res in results["noise"] for r in res["rows"]])
        status_cols = ["alpha_status", "forest_alpha_status"]
        t["noise"] = mean_std(rows.drop(columns=status_cols), ["dataset", "level"])
        st = rows.groupby(["dataset", "level"], sort=False)[status_cols].agg(
            lambda s: ";".join(sorted(set(s)))
        )
        t["noise"] = t["noise"].merge(st.reset_index(), on=["dataset", "level"])
    t["datasets"] = _dataset_summary(t, meta)
    return t


def _ds(res: Mapping[str, Any]) -> str:
    for key in ("rows", "outer"):
        if res.get(key):
            return str(res[key][0]["dataset"])
    return ""


def _dataset_summary(t: Mapping[str, pd.DataFrame], meta: pd.DataFrame) -> pd.DataFrame:
    """Small vs large vs noisy data sets side by side (one row per data set and noise level)."""
    if meta.empty:
        return pd.DataFrame()
    out = []
    for _, m in meta.iterrows():
        ds = m["dataset"]
        base = {
            "dataset": ds,
            "task": m["task"],
            "n_samples": int(m["n_samples"]),
            "n_features": int(m["n_features"]),
            "n_classes": int(m["n_classes"]),
            "size": m.get("size", ""),
        }
        rec = dict(base, condition="clean", noise_level=0.0)
        if "baselines" in t:
            b = t["baselines"][t["baselines"]["dataset"] == ds]
            if not b.empty:
                best = b.loc[b["score_mean"].idxmax()]
                rec["best_baseline"] = best["model"]
                rec["best_baseline_score"] = best["score_mean"]
                rf = b[b["model"] == "random_forest"]
                if not rf.empty:
                    rec["rf_score"] = float(rf["score_mean"].iloc[0])
        if "rf_search" in t:
            s = t["rf_search"][t["rf_search"]["dataset"] == ds]
            if not s.empty:
                rec["nested_rf_score"] = float(s["score_mean"].iloc[0])
        if "wavelet" in t:
            w = t["wavelet"][t["wavelet"]["dataset"] == ds]
            if not w.empty:
                rec["wavelet_score"] = float(w["score_mean"].iloc[0])
                rec["wavelet_kept_fraction"] = float(w["kept_fraction_mean"].iloc[0])
        noise = t.get("noise")
        if noise is not None and not noise[noise["dataset"] == ds].empty:
            nd = noise[noise["dataset"] == ds]
            for _, r in nd.iterrows():
                rr = dict(rec) if r["level"] == 0 else dict(base)
                rr.update(
                    condition="clean" if r["level"] == 0 else f"noise {r['level']:g}",
                    noise_level=float(r["level"]),
                    noisy_forest_score=r["score_mean"],
                    alpha=r["alpha_mean"],
                    alpha_std=r["alpha_std"],
                )
                out.append(rr)
        else:
            out.append(rec)
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------------
# workflow plan (used by workflow/rules/tabular.smk; no Snakemake import here)


class TabularPlan:
    """Which tabular jobs, tables and figures a validated ``config["tabular"]`` asks for.

    Used by ``workflow/rules/tabular.smk`` so that the rule file holds only rules.

    Parameters
    ----------
    cfg : the validated ``tabular`` configuration block (defaults filled).
    fig_ext : figure file extension (``figures.format``).

    Raises
    ------
    ValueError naming the config key when a part's ``datasets`` is not a subset of
    ``tabular.datasets``.
    """

    PARTS = ("baselines", "rf_search", "wavelet", "importance", "noise")
    #: mfoml modules that mfoml.tabular imports lazily, listed only for the parts running them.
    LAZY = frozenset({"wavelets.py", "smoothness.py", "noise.py", "tabular_plots.py", "plots.py"})
    EXTRA = {
        "baselines": (),
        "rf_search": (),
        "wavelet": ("wavelets.py",),
        "importance": ("wavelets.py",),
        "synthetic": ("wavelets.py",),
        "noise": ("wavelets.py", "smoothness.py", "noise.py"),
        "tables": (),
        "figures": ("tabular_plots.py", "plots.py"),
    }
    #: figure name -> the table it needs
    FIGURE_TABLES = {
        "baselines": "baselines",
        "confusion": "confusion",
        "hparams": "hparams",
        "compression": "compression",
        "trees": "trees",
        "importance": "rank_agreement",
        "synthetic": "synthetic",
        "noise": "noise",
    }

    def __init__(self, cfg: Mapping[str, Any], fig_ext: str = "png") -> None:
        self.cfg = cfg
        self.fig_ext = fig_ext
        for part in self.PARTS:
            subset = cfg[part].get("datasets")
            if subset is None:
                continue
            unknown = [d for d in subset if d not in cfg["datasets"]]
            if unknown:
                raise ValueError(
                    f"config key 'tabular.{part}.datasets': {unknown} are not in "
                    f"tabular.datasets {list(cfg['datasets'])}"
                )

    @property
    def enabled(self) -> bool:
        """``tabular.enabled``."""
        return bool(self.cfg["enabled"])

    def datasets(self, part: str) -> list[str]:
        """Data sets ``part`` runs on (empty when the part is disabled).

        The track's ``enabled`` switch only decides whether :meth:`targets` asks for outputs;
        the rules exist either way.
        """
        if not self.cfg[part]["enabled"]:
            return []
        subset = self.cfg[part].get("datasets")
        return [d for d in self.cfg["datasets"] if subset is None or d in subset]

    @property
    def synthetic_enabled(self) -> bool:
        """Whether the synthetic importance check runs."""
        return bool(self.cfg["importance"]["synthetic"]["enabled"])

    def table_names(self) -> list[str]:
        """Stems of ``results/tables/tabular_<name>.csv`` written by rule tabular_tables."""
        names = []
        if self.datasets("baselines"):
            names += ["baselines", "per_class", "confusion"]
        if self.datasets("rf_search"):
            names += ["rf_search", "rf_search_folds", "hparams"]
        if self.datasets("wavelet"):
            names += ["wavelet", "compression"]
            if self.cfg["wavelet"]["trees_grid"]:
                names.append("trees")
        if self.datasets("importance"):
            names += ["importance", "rank_agreement"]
        if self.synthetic_enabled:
            names += ["synthetic", "synthetic_importance"]
        if self.datasets("noise"):
            names.append("noise")
        return names + ["datasets"]

    def figure_names(self) -> list[str]:
        """Stems of ``results/figures/tabular_<name>.<ext>`` (rule tabular_figures)."""
        tables = set(self.table_names())
        return [f for f, t in self.FIGURE_TABLES.items() if t in tables]

    def table_paths(self) -> dict[str, str]:
        """``{table name: results/tables/tabular_<name>.csv}``."""
        return {t: f"results/tables/tabular_{t}.csv" for t in self.table_names()}

    def figure_paths(self) -> dict[str, str]:
        """``{figure name: results/figures/tabular_<name>.<ext>}``."""
        return {f: f"results/figures/tabular_{f}.{self.fig_ext}" for f in self.figure_names()}

    def targets(self) -> list[str]:
        """Final targets of the track (empty when ``tabular.enabled`` is false)."""
        if not self.enabled:
            return []
        return list(self.table_paths().values()) + list(self.figure_paths().values())

    def results(self, part: str) -> list[str]:
        """Per-data-set result files of ``part`` (``synthetic``: the single synthetic file)."""
        if part == "synthetic":
            return ["results/tabular/synthetic.json"] if self.synthetic_enabled else []
        return [f"results/tabular/{d}/{part}.json" for d in self.datasets(part)]

    def code(self, script_modules: Sequence[str], part: str) -> list[str]:
        """Module inputs of a rule: the script's transitive mfoml imports without the lazily
        imported ones, plus those ``part`` executes (same directory as the others)."""
        mods = [m for m in script_modules if os.path.basename(m) not in self.LAZY]
        base = os.path.dirname(next(iter(script_modules), "workflow/scripts/mfoml/io.py"))
        mods += [os.path.join(base, name) for name in self.EXTRA[part]]
        return sorted(set(mods))

    def params(self, part: str) -> str:
        """The config slice rule ``part`` depends on, as canonical JSON."""
        from mfoml.config import canonical_json

        c = self.cfg
        if part in ("baselines", "rf_search"):
            sl = {part: c[part], "seed": c["seed"]}
        elif part in ("wavelet", "noise"):
            sl = {part: c[part], "forest": c["forest"], "seed": c["seed"]}
        elif part == "importance":
            imp = {k: v for k, v in c["importance"].items() if k != "synthetic"}
            sl = {"importance": imp, "forest": c["forest"], "seed": c["seed"]}
        elif part == "synthetic":
            imp = c["importance"]
            sl = {
                "importance": {k: imp[k] for k in ("synthetic", "tau", "n_repeats")},
                "forest": c["forest"],
                "seed": c["seed"],
            }
        elif part == "tables":
            sl = {"datasets": c["datasets"], "size_threshold": c["size_threshold"]}
        else:
            raise ValueError(f"TabularPlan.params: unknown part {part!r}")
        return canonical_json(sl)
