"""Cross-validated baselines of the tabular track (decision tree, random forest, gradient boosting, linear)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mfoml.data.folds import split_indices
from mfoml.tabular.data import DatasetJob, TabularData, check_folds, folds_array
from mfoml.tabular.models import (
    BASELINES,
    data_options,
    evaluate,
    make_baseline,
    scalar_metrics,
)

log = logging.getLogger(__name__)


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
    fold_arr, n_splits = folds_array(folds)
    check_folds(data, fold_arr)
    model_params = model_params or {}
    rows, details = [], []
    for name in models:
        for k in range(n_splits):
            tr, te = split_indices(fold_arr, k)
            est = make_baseline(
                name,
                data.task,
                seed=seed,
                n_jobs=n_jobs,
                **data_options(data),  # imputation fitted in the fold, one-hot for linear
                **model_params.get(name, {}),
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
                    **scalar_metrics(m),
                    "fit_seconds": seconds,
                }
            )
            details.append({"model": name, "fold": k, "metrics": m})
        log.info(
            f"{data.name}: baseline {name}: mean score "
            f"{np.mean([r['score'] for r in rows if r['model'] == name]):.4f}"
        )
    return {"rows": rows, "details": details}


def baselines_job(job: DatasetJob) -> dict[str, Any]:
    """The computation of rule ``tabular_baselines``: :func:`run_baselines` with the settings of
    the job's ``tabular`` slice (``seed`` and ``baselines``: ``models``, the forest's
    ``n_estimators``, ``hgb_max_iter`` and XGBoost's ``xgb_n_estimators``, ``xgb_max_depth``,
    ``xgb_learning_rate``); returns its result.
    """
    b = job.cfg["baselines"]
    log.info(
        "%s: baselines %s on %s samples x %s features",
        job.data.name,
        b["models"],
        *job.data.X.shape,
    )
    xgb = ("n_estimators", "max_depth", "learning_rate")
    model_params = {
        "random_forest": {"n_estimators": b["n_estimators"]},
        "hist_gradient_boosting": {"max_iter": b["hgb_max_iter"]},
        "xgboost": {k: b[f"xgb_{k}"] for k in xgb},
    }
    return run_baselines(
        job.data,
        job.folds,
        b["models"],
        model_params=model_params,
        seed=job.cfg["seed"],
        n_jobs=job.n_jobs,
    )
