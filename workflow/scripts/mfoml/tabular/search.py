"""Nested random-forest hyper-parameter search: the inner search sees only the outer training fold."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import ParameterGrid
from threadpoolctl import threadpool_limits

from mfoml.analysis.metrics import primary_score
from mfoml.data.folds import split_indices
from mfoml.tabular.data import DatasetJob, TabularData, check_folds, folds_array
from mfoml.tabular.models import (
    data_options,
    evaluate,
    inner_cv,
    jsonable_params,
    make_baseline,
    param_values,
    scalar_metrics,
)

log = logging.getLogger(__name__)


SEARCH_PARAMS = ("n_estimators", "max_depth", "max_features", "min_samples_leaf")
#: Hyper-parameters of the XGBoost search (``tabular.xgb_search.grid``).
XGB_SEARCH_PARAMS = ("n_estimators", "max_depth", "learning_rate", "subsample", "min_child_weight")
#: The searched model -> (its hyper-parameters, the config key of its search).
SEARCHES = {
    "random_forest": (SEARCH_PARAMS, "rf_search"),
    "xgboost": (XGB_SEARCH_PARAMS, "xgb_search"),
}


def _candidates(
    grid: Mapping[str, Sequence[Any]], n_iter: int | None, seed: int, model: str = "random_forest"
) -> list[dict]:
    allowed, key = SEARCHES[model]
    unknown = set(grid) - set(allowed)
    if unknown:
        raise ValueError(f"{key} grid: unknown hyper-parameters {sorted(unknown)}")
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
    model: str = "random_forest",
) -> dict[str, Any]:
    """Random-forest (or XGBoost) hyper-parameter search with nested cross-validation.

    For each outer fold k the candidates are scored by an inner (stratified) K-fold on the outer
    training indices only; the best candidate (highest mean inner score, first on ties) is refit
    on the whole outer training fold and scored once on the outer test fold. The reported score
    is thus never tuned on its own test fold.

    Parameters
    ----------
    data : the data set; folds : outer fold assignment ``(N,)`` (or the load_folds dict).
    grid : ``{hyper-parameter: values}`` over ``n_estimators, max_depth, max_features,
        min_samples_leaf`` (random forest) or :data:`XGB_SEARCH_PARAMS` (XGBoost).
    inner_splits : inner folds; n_iter : score a seeded random subset of this many candidates
        (None = the whole grid).
    estimator_factory : ``(task, params, seed) -> estimator``; default the baseline ``model``
        of the task. Tests pass a recording forest here.
    model : ``"random_forest"`` or ``"xgboost"`` (:func:`nested_xgb_search`).

    Returns
    -------
    dict with ``candidates`` (list of param dicts), ``inner``: one record per (outer fold,
    candidate) with ``inner_mean``/``inner_std`` and the params, ``outer``: one record per outer
    fold with the chosen params and the test metrics, ``details`` (full metric dicts).
    """
    fold_arr, n_splits = folds_array(folds)
    check_folds(data, fold_arr)
    if model not in SEARCHES:
        raise ValueError(f"unknown searched model {model!r}; known: {', '.join(SEARCHES)}")
    params_of_model, key = SEARCHES[model]
    cands = _candidates(grid, n_iter, seed, model)
    if not cands:
        raise ValueError(f"{key}: empty grid")

    def factory(params: dict[str, Any]) -> Any:
        if estimator_factory is not None:
            return estimator_factory(data.task, params, seed)
        return make_baseline(
            model, data.task, seed=seed, n_jobs=n_jobs, **data_options(data), **params
        )

    inner_rows, outer_rows, details = [], [], []
    for k in range(n_splits):
        tr, te = split_indices(fold_arr, k)
        cv = inner_cv(data.task, inner_splits, seed + 1000 + k)
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
                    **param_values(params),
                    "inner_mean": means[-1],
                    # the one convention of every summary: ddof = 1, NaN below two values
                    "inner_std": float(np.std(scores, ddof=1)) if len(scores) > 1 else math.nan,
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
                "best_params": param_label(cands[best]),
                "inner_best": means[best],
                **{f"best_{p}": param_values(cands[best]).get(p, "") for p in params_of_model},
                **scalar_metrics(m),
            }
        )
        details.append({"fold": k, "metrics": m})
        log.info(
            f"{data.name}: nested {model} search fold {k}: best {param_label(cands[best])} "
            f"inner {means[best]:.4f} outer {m['score']:.4f}"
        )
    return {
        "candidates": [jsonable_params(c) for c in cands],
        "inner": inner_rows,
        "outer": outer_rows,
        "details": details,
    }


def nested_xgb_search(
    data: TabularData,
    folds: np.ndarray | Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`nested_rf_search` of the XGBoost baseline (grid over :data:`XGB_SEARCH_PARAMS`),
    with the same folds, inner splits and scores."""
    return nested_rf_search(data, folds, grid, model="xgboost", **kwargs)


def search_job(job: DatasetJob, model: str) -> dict[str, Any]:
    """The computation of rules ``tabular_rf_search`` (``model="random_forest"``) and
    ``tabular_xgb_search`` (``"xgboost"``): :func:`nested_rf_search` with the settings of the
    job's ``tabular`` slice (its ``seed`` and the search's own key, :data:`SEARCHES`: ``grid``,
    ``inner_splits``, ``n_iter``); returns its result.
    """
    s = job.cfg[SEARCHES[model][1]]
    log.info(
        "%s: nested %s search, grid %s, n_iter %s", job.data.name, model, s["grid"], s["n_iter"]
    )
    return nested_rf_search(
        job.data,
        job.folds,
        s["grid"],
        inner_splits=s["inner_splits"],
        n_iter=s["n_iter"],
        seed=job.cfg["seed"],
        n_jobs=job.n_jobs,
        model=model,
    )


def param_label(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={params[k]}" for k in sorted(params))


def hparam_effects(inner: pd.DataFrame, params: Sequence[str] = SEARCH_PARAMS) -> pd.DataFrame:
    """How each hyper-parameter moves the inner CV score.

    For each outer fold, parameter and value: the mean inner score over the candidates having
    that value (a marginal mean); then mean and std over outer folds (ddof = 1, NaN with a
    single fold).

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
                    "score_std": r["std"],  # ddof = 1; NaN with one outer fold, not 0
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
