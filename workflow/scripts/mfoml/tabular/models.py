"""The baseline model zoo of the tabular track, scores and table helpers (scikit-learn).

Missing values (NaN in :attr:`TabularData.X`) are imputed inside each training fold, never over
all rows: every model is fitted on a fold's training rows only, and its imputation statistics
with it. :class:`FoldImputer` fills numeric features with the median and nominal ones with the
most frequent code (scikit-learn's ``SimpleImputer``), keeping the column order (the wavelet
importances are per column); :func:`impute_in_fold` applies it to the whole table with
statistics from the given rows. The baselines are pipelines: the trees and the random forest
get a :class:`FoldImputer` when the data have missing values; the linear model imputes, one-hot
encodes the nominal features (``OneHotEncoder``, unknown categories ignored) and standardizes
the numeric ones (``ColumnTransformer``); histogram gradient boosting and XGBoost handle NaN
natively.
Without missing values and nominal features the models are exactly the plain estimators.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from mfoml.analysis.metrics import classification_metrics, regression_metrics
from mfoml.tabular.data import TabularData

log = logging.getLogger(__name__)


BASELINES = ("decision_tree", "random_forest", "hist_gradient_boosting", "linear", "xgboost")


class XGBoostModel:
    """XGBoost classifier or regressor of the tabular track (its scikit-learn API).

    Class labels are mapped to the codes of ``np.unique(y)`` before fitting (XGBoost needs the
    consecutive codes ``0..K-1``, and a training part may lack a class); :meth:`predict` maps
    them back. ``xgboost`` is imported on the first fit, so that the other models do not pay
    for it.

    Parameters
    ----------
    task : ``"classification"`` or ``"regression"``.
    seed : ``random_state``; n_jobs : threads.
    **params : passed to ``XGBClassifier`` / ``XGBRegressor`` (``n_estimators``, ``max_depth``,
        ``learning_rate``, ``subsample``, ``min_child_weight``, ...).

    Attributes
    ----------
    model_ : the fitted XGBoost model; classes_ : (L,) the labels of the codes (classification).
    """

    def __init__(self, task: str, seed: int = 0, n_jobs: int = 1, **params: Any) -> None:
        self.task, self.seed, self.n_jobs, self.params = task, seed, n_jobs, dict(params)

    def fit(self, X: np.ndarray, y: np.ndarray) -> XGBoostModel:
        """Fit on ``X`` (n, d) and labels or targets ``y`` (n,)."""
        import xgboost as xgb

        kw = dict(random_state=self.seed, n_jobs=self.n_jobs, verbosity=0, **self.params)
        if self.task == "classification":
            self.classes_, codes = np.unique(y, return_inverse=True)
            self.model_ = xgb.XGBClassifier(**kw).fit(X, codes)
        else:
            self.model_ = xgb.XGBRegressor(**kw).fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Labels (classification) or values, shape (n,)."""
        pred = self.model_.predict(X)
        if self.task == "classification":
            return self.classes_[np.asarray(pred, dtype=np.int64)]
        return np.asarray(pred, dtype=np.float64)


class FoldImputer(TransformerMixin, BaseEstimator):
    """Fill NaN with statistics of the rows it is fitted on, keeping the column order.

    Numeric columns get the median, the columns in ``nominal`` the most frequent value
    (``SimpleImputer``; a column with no observed value gets 0). ``statistics_`` (d,) holds the
    fill values.
    """

    def __init__(self, nominal: Sequence[int] = ()) -> None:
        self.nominal = nominal

    def fit(self, X: Any, y: Any = None) -> FoldImputer:  # noqa: D102
        X = np.asarray(X, dtype=np.float64)
        d = X.shape[1]
        nominal = sorted({int(i) for i in self.nominal})
        numeric = [i for i in range(d) if i not in set(nominal)]
        fill = np.zeros(d)
        for cols, strategy in ((numeric, "median"), (nominal, "most_frequent")):
            if cols:
                imp = SimpleImputer(strategy=strategy, keep_empty_features=True)
                fill[cols] = imp.fit(X[:, cols]).statistics_
        self.statistics_ = fill
        self.n_features_in_ = d
        return self

    def transform(self, X: Any) -> np.ndarray:  # noqa: D102
        X = np.asarray(X, dtype=np.float64)
        return np.where(np.isnan(X), self.statistics_[None, :], X)


def impute_in_fold(data: TabularData, fit_idx: np.ndarray) -> np.ndarray:
    """``data.X`` with missing values filled from the rows ``fit_idx`` only (``data.X`` itself
    when nothing is missing)."""
    if not data.has_missing:
        return data.X
    return FoldImputer(data.nominal).fit(data.X[fit_idx]).transform(data.X)


def make_baseline(
    name: str,
    task: str,
    seed: int = 0,
    n_jobs: int = 1,
    *,
    nominal: Sequence[int] = (),
    missing: bool = False,
    n_features: int | None = None,
    **params: Any,
) -> Any:
    """A scikit-learn baseline estimator (a pipeline where the data need one).

    Parameters
    ----------
    name : one of :data:`BASELINES`: ``decision_tree``, ``random_forest``,
        ``hist_gradient_boosting``, ``linear`` (standardized inputs, one-hot nominal features,
        then LogisticRegression for classification, Ridge for regression), ``xgboost``
        (:class:`XGBoostModel`; like histogram gradient boosting it handles NaN itself).
    task : ``"classification"`` or ``"regression"``.
    seed : ``random_state``; n_jobs : forest parallelism.
    nominal : indices of the nominal features (one-hot for ``linear``; most frequent value
        when imputing); missing : the data have missing values (NaN), imputed in the fold.
    n_features : number of features (needed for ``linear`` with nominal features).
    **params : passed to the estimator (e.g. ``n_estimators`` of the forest).
    """
    clf = task == "classification"
    model: Any
    if name == "decision_tree":
        cls = DecisionTreeClassifier if clf else DecisionTreeRegressor
        model = cls(random_state=seed, **params)
    elif name == "random_forest":
        cls = RandomForestClassifier if clf else RandomForestRegressor
        model = cls(random_state=seed, n_jobs=n_jobs, **params)
    elif name == "hist_gradient_boosting":
        cls = HistGradientBoostingClassifier if clf else HistGradientBoostingRegressor
        return cls(random_state=seed, **params)  # handles NaN natively
    elif name == "linear":
        if clf:
            model = LogisticRegression(max_iter=params.pop("max_iter", 2000), **params)
        else:
            model = Ridge(**params)
        if not nominal and not missing:
            return make_pipeline(StandardScaler(), model)
        if n_features is None:
            raise ValueError("make_baseline('linear'): n_features is needed with nominal features")
        nom = sorted({int(i) for i in nominal})
        num = [i for i in range(n_features) if i not in set(nom)]
        parts = [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num)
        ]
        if nom:
            onehot = OneHotEncoder(handle_unknown="ignore")
            parts.append(
                ("nominal", make_pipeline(SimpleImputer(strategy="most_frequent"), onehot), nom)
            )
        return make_pipeline(ColumnTransformer(parts), model)
    elif name == "xgboost":
        return XGBoostModel(task, seed=seed, n_jobs=n_jobs, **params)  # handles NaN natively
    else:
        raise ValueError(f"unknown baseline model {name!r}; known: {', '.join(BASELINES)}")
    return make_pipeline(FoldImputer(nominal), model) if missing else model


def data_options(data: TabularData) -> dict[str, Any]:
    """The :func:`make_baseline` options describing ``data`` (nominal, missing, n_features)."""
    return {
        "nominal": data.nominal,
        "missing": data.has_missing,
        "n_features": int(data.X.shape[1]),
    }


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
