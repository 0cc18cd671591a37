"""The baseline model zoo of the tabular track, scores and table helpers (scikit-learn)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from mfoml.analysis.metrics import classification_metrics, regression_metrics
from mfoml.tabular.data import TabularData

log = logging.getLogger(__name__)


BASELINES = ("decision_tree", "random_forest", "hist_gradient_boosting", "linear")


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
    """Metric dict of :mod:`mfoml.analysis.metrics` plus ``score`` (accuracy or R^2)."""
    if data.is_classification:
        m = classification_metrics(y_true, y_pred, data.n_classes)
        m["score"] = m["accuracy"]
    else:
        m = regression_metrics(y_true, y_pred)
        m["score"] = m["r2"]
    return m


_SCALAR_CLF = ("score", "accuracy", "precision_macro", "recall_macro", "f1_macro")
_SCALAR_REG = ("score", "mae", "mae_std", "mean_error", "error_std", "mse", "rmse", "r2")
#: Table column names; ``abs_error_sd`` is the per-fold standard deviation of |y - y_hat|
#: (``regression_metrics``'s ``mae_std``), renamed so it does not collide with the
#: ``<metric>_std`` columns (std over folds) of the aggregated tables.
_RENAME = {"mae_std": "abs_error_sd", "error_std": "error_sd"}


def scalar_metrics(m: Mapping[str, Any]) -> dict[str, float]:
    keys = _SCALAR_CLF if "accuracy" in m else _SCALAR_REG
    return {_RENAME.get(k, k): float(m[k]) for k in keys}


def inner_cv(task: str, n_splits: int, seed: int) -> KFold | StratifiedKFold:
    if task == "classification":
        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return KFold(n_splits=n_splits, shuffle=True, random_state=seed)


def jsonable_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v if not isinstance(v, np.generic) else v.item()) for k, v in params.items()}


def param_values(params: Mapping[str, Any]) -> dict[str, str]:
    """Parameter values as labels (``None`` -> ``"None"``, ``4`` -> ``"4"``), for tables."""
    return {k: str(v) for k, v in jsonable_params(params).items()}
