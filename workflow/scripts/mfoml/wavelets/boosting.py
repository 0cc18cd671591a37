"""Wavelet decomposition of scikit-learn's gradient boosting (``GradientBoosting*`` and, read from
its ``_predictors``, ``HistGradientBoosting*``), and the scikit-learn estimators
:class:`WaveletBoostingRegressor` / :class:`WaveletBoostingClassifier` (METHODS.md section 13).

The decomposition itself (node values, norms, M-term order, curves, importances, smoothness) is
:class:`mfoml.wavelets.boosted_trees.BoostedTreeWavelets`; this module turns a fitted
``GradientBoostingRegressor`` / ``GradientBoostingClassifier`` into its tree arrays
(:func:`from_sklearn`: ``estimators_`` of shape (stages, K) with K = 1 for regression and binary
log-odds, K = n_classes otherwise; ``f0`` from the init estimator) and wraps the pair in
estimators that, like the wavelet forest, fit on min-max-scaled inputs (so that box volumes live
in ``[0, 1]^d``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from mfoml.wavelets.boosted_trees import BoostedTreeWavelets
from mfoml.wavelets.params import BOOSTING_PARAMS, sklearn_constraints
from mfoml.wavelets.scaling import minmax_fit, minmax_transform
from mfoml.wavelets.tree_arrays import TreeArrays, tree_from_hist_predictor, tree_from_sklearn

__all__ = [
    "BoostedTreeWavelets",
    "TreeArrays",
    "WaveletBoostingClassifier",
    "WaveletBoostingRegressor",
    "from_sklearn",
]


def from_sklearn(
    model: Any,
    X_train: Any,
    *,
    norm_weight: str = "num_samples",
    importance_tau: float = 1.0,
) -> BoostedTreeWavelets:
    """Decompose a fitted ``GradientBoostingRegressor`` / ``GradientBoostingClassifier`` or
    ``HistGradientBoostingRegressor`` / ``HistGradientBoostingClassifier``.

    Parameters
    ----------
    model : the fitted model: ``estimators_`` (S, K) of regression trees, ``learning_rate``,
        ``init_``; or a histogram model: ``_predictors`` (S lists of K trees, leaf values with
        the learning rate included), ``_baseline_prediction``; its ``poisson`` and ``gamma``
        losses predict ``exp(raw)``, so the decomposition gets ``link="log"`` (curves on the
        response scale). Categorical splits are refused.
    X_train : (N, d) its whole training set, in the model's input units (for the
        ``num_samples`` counts and the min-max box of the volumes).
    norm_weight, importance_tau : see :class:`BoostedTreeWavelets`.

    ``f0`` is constant for the default (``Dummy*``) and ``"zero"`` init estimators (read once
    from the model's ``_raw_predict_init``) and is otherwise evaluated through it per sample.
    """
    from sklearn.base import is_classifier
    from sklearn.dummy import DummyClassifier, DummyRegressor

    if hasattr(model, "_predictors"):
        return _from_hist(model, X_train, norm_weight, importance_tau)
    if not hasattr(model, "estimators_"):
        raise TypeError(
            f"from_sklearn: {type(model).__name__} is not a fitted GradientBoosting* or "
            "HistGradientBoosting* model (no estimators_ / _predictors); fit it first"
        )
    est = np.asarray(model.estimators_)
    S, K = est.shape
    trees = [tree_from_sklearn(est[s, k]) for s in range(S) for k in range(K)]
    X_train = np.asarray(X_train)
    init = model.init_
    if isinstance(init, str) or isinstance(init, DummyClassifier | DummyRegressor):
        kw: dict[str, Any] = {"f0": model._raw_predict_init(X_train[:1])[0]}
    else:
        kw = {"init_fn": model._raw_predict_init}
    return BoostedTreeWavelets(
        trees,
        np.tile(np.arange(K), S),
        np.repeat(np.arange(S), K),
        np.full(S * K, float(model.learning_rate)),
        K,
        X_train,
        task="classification" if is_classifier(model) else "regression",
        norm_weight=norm_weight,
        importance_tau=importance_tau,
        **kw,
    )


def _from_hist(
    model: Any, X_train: Any, norm_weight: str, importance_tau: float
) -> BoostedTreeWavelets:
    """:func:`from_sklearn` for a fitted ``HistGradientBoosting*`` model."""
    from sklearn.base import is_classifier

    preds = model._predictors
    S, K = len(preds), int(model.n_trees_per_iteration_)
    trees = [tree_from_hist_predictor(preds[s][k], f"stage {s} tree {k}") for s in range(S)
             for k in range(K)]  # fmt: skip
    clf = is_classifier(model)
    return BoostedTreeWavelets(
        trees,
        np.tile(np.arange(K), S),
        np.repeat(np.arange(S), K),
        np.ones(S * K),
        K,
        np.asarray(X_train),
        f0=np.asarray(model._baseline_prediction, dtype=np.float64).reshape(K),
        task="classification" if clf else "regression",
        link="log" if not clf and model.loss in ("poisson", "gamma") else "identity",
        norm_weight=norm_weight,
        importance_tau=importance_tau,
    )


class _WaveletBoostingBase(BaseEstimator):
    """Shared implementation; use :class:`WaveletBoostingRegressor` or the classifier."""

    #: checked by ``fit`` (scikit-learn's ``_validate_params``)
    _parameter_constraints: dict = sklearn_constraints(BOOSTING_PARAMS)

    def __init__(
        self,
        n_estimators: int = 100,
        *,
        learning_rate: float = 0.1,
        max_depth: int | None = 3,
        subsample: float = 1.0,
        min_samples_leaf: int | float = 1,
        max_features: int | float | str | None = None,
        random_state: int | np.random.RandomState | None = None,
        norm_weight: str = "num_samples",
        importance_tau: float = 1.0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.random_state = random_state
        self.norm_weight = norm_weight
        self.importance_tau = importance_tau

    def _gb_params(self) -> dict[str, Any]:
        return dict(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            subsample=self.subsample,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            random_state=self.random_state,
        )

    def _validate_X_y(self, X: Any, y: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Check the parameters and (X, y) with scikit-learn (numeric, dense, 2-D X, 1-D y; sets
        ``n_features_in_``); NaN/inf in X are reported by the scaling, naming row and feature."""
        self._validate_params()
        return validate_data(self, X, y, dtype="numeric", ensure_all_finite=False, **kwargs)

    def _fit_model(self, X: Any, targets: np.ndarray, model: Any) -> None:
        self.data_min_, self.scale_ = minmax_fit(X)
        Xs = minmax_transform(X, self.data_min_, self.scale_, check_finite=False)
        t0 = time.perf_counter()
        self.model_ = model.fit(Xs, targets)
        t1 = time.perf_counter()
        self.wavelets_ = from_sklearn(
            self.model_, Xs, norm_weight=self.norm_weight, importance_tau=self.importance_tau
        )
        self.fit_seconds_ = t1 - t0
        self.decompose_seconds_ = time.perf_counter() - t1
        w = self.wavelets_
        self.wavelet_norms_ = w.wavelet_norms_
        self.n_wavelets_ = w.n_wavelets_
        self.feature_importances_ = w.feature_importances_
        self.n_terms_ = w.n_wavelets_
        self.threshold_norm_ = 0.0

    def scale_inputs(self, X: Any) -> np.ndarray:
        """The inputs as the trees see them: ``clip((X − data_min_) · scale_, 0, 1)``, float32,
        shape (n_samples, n_features)."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype="numeric", ensure_all_finite=False)
        return minmax_transform(X, self.data_min_, self.scale_)

    def _raw(self, X: Any, n_terms: int | str | None) -> np.ndarray:
        check_is_fitted(self, "model_")
        M = self.n_terms_ if n_terms is None else n_terms
        return self.wavelets_.raw_predict(self.scale_inputs(X), M)

    def _targets(self, y: Any) -> np.ndarray:
        return np.asarray(y, dtype=np.float64)

    def mterm_curve(self, X: Any, y: Any, n_terms: Any = None) -> dict[str, np.ndarray]:
        """Held-out errors of the M-term model for the M in ``n_terms`` (clipped to W, in the
        given order; None = 0..W); see :meth:`BoostedTreeWavelets.mterm_curve` for the keys."""
        check_is_fitted(self, "model_")
        return self.wavelets_.mterm_curve(self.scale_inputs(X), self._targets(y), n_terms)

    def staged_curve(self, X: Any, y: Any) -> dict[str, np.ndarray]:
        """Errors of the first s stages, s = 0..n_estimators (see
        :meth:`BoostedTreeWavelets.staged_curve`)."""
        check_is_fitted(self, "model_")
        return self.wavelets_.staged_curve(self.scale_inputs(X), self._targets(y))

    def select_n_terms(
        self,
        X_val: Any,
        y_val: Any,
        n_terms: Any = None,
        *,
        metric: str | None = None,
        set_default: bool = True,
    ) -> tuple[int, float]:
        """Choose M minimizing the validation ``metric`` (regression ``"mse"``, classification
        ``"error"`` by default; the smallest such M). Returns ``(M, threshold_norm)``; with
        ``set_default`` they become ``n_terms_`` / ``threshold_norm_`` (the default M of
        ``predict``)."""
        check_is_fitted(self, "model_")
        M, thr = self.wavelets_.select_n_terms(
            self.scale_inputs(X_val), self._targets(y_val), n_terms, metric
        )
        if set_default:
            self.n_terms_, self.threshold_norm_ = M, thr
        return M, thr

    def smoothness(self, method: str = "angle", X: Any = None, y: Any = None, **kwargs: Any):
        """Besov smoothness α of the boosted model (an ``AlphaResult``; J = 1 since the model
        is a sum). ``method="loglog"`` needs (X, y), normally the training data."""
        check_is_fitted(self, "model_")
        if method == "loglog" and X is not None and y is not None:
            X, y = self.scale_inputs(X), self._targets(y)
        return self.wavelets_.smoothness(method, X, y, **kwargs)


class WaveletBoostingRegressor(RegressorMixin, _WaveletBoostingBase):
    """Gradient-boosted regression trees decomposed into geometric wavelets.

    ``model_`` is exactly ``sklearn.ensemble.GradientBoostingRegressor`` with the given
    parameters fitted on the min-max-scaled inputs (:meth:`scale_inputs`); ``wavelets_`` its
    :class:`BoostedTreeWavelets`.

    Parameters
    ----------
    n_estimators, learning_rate, max_depth, subsample, min_samples_leaf, max_features,
    random_state, loss : passed to ``GradientBoostingRegressor``.
    norm_weight : ``"num_samples"`` (default) or ``"volume"``.
    importance_tau : exponent τ of the wavelet importance.

    Attributes
    ----------
    model_, wavelets_, data_min_, scale_, n_features_in_.
    wavelet_norms_ (W,), n_wavelets_, feature_importances_ (d,) : from ``wavelets_``.
    n_terms_, threshold_norm_ : the default M of :meth:`predict` (all after ``fit``).
    fit_seconds_, decompose_seconds_ : wall times of the boosting fit and the decomposition.
    """

    _parameter_constraints: dict = sklearn_constraints(
        {
            **BOOSTING_PARAMS,
            "loss": [frozenset({"squared_error", "absolute_error", "huber", "quantile"})],
        }
    )

    def __init__(
        self,
        n_estimators: int = 100,
        *,
        learning_rate: float = 0.1,
        max_depth: int | None = 3,
        subsample: float = 1.0,
        min_samples_leaf: int | float = 1,
        max_features: int | float | str | None = None,
        loss: str = "squared_error",
        random_state: int | np.random.RandomState | None = None,
        norm_weight: str = "num_samples",
        importance_tau: float = 1.0,
    ) -> None:
        super().__init__(
            n_estimators,
            learning_rate=learning_rate,
            max_depth=max_depth,
            subsample=subsample,
            min_samples_leaf=min_samples_leaf,
            max_features=max_features,
            random_state=random_state,
            norm_weight=norm_weight,
            importance_tau=importance_tau,
        )
        self.loss = loss

    def fit(self, X: Any, y: Any) -> WaveletBoostingRegressor:
        """Fit on ``X`` (n_samples, n_features) and targets ``y`` (n_samples,)."""
        from sklearn.ensemble import GradientBoostingRegressor

        X, y = self._validate_X_y(X, y, y_numeric=True)  # y: one output, finite
        y = np.asarray(y, dtype=np.float64)
        self._fit_model(X, y, GradientBoostingRegressor(loss=self.loss, **self._gb_params()))
        return self

    def predict(self, X: Any, n_terms: int | str | None = None) -> np.ndarray:
        """M-term prediction, shape (n_samples,); ``n_terms``: M, ``"all"`` (the boosted model
        itself) or None (``n_terms_``)."""
        return self._raw(X, n_terms)[:, 0]


class WaveletBoostingClassifier(ClassifierMixin, _WaveletBoostingBase):
    """Gradient-boosted classifier (log-loss) decomposed into geometric wavelets.

    ``model_`` is ``GradientBoostingClassifier(loss="log_loss")`` fitted on the scaled inputs and
    the class codes ``0..L-1`` of ``classes_ = np.unique(y)``: binary problems have one tree per
    stage (log-odds of ``classes_[1]``), L > 2 classes have L trees per stage. Parameters and
    attributes as :class:`WaveletBoostingRegressor` (no ``loss``).
    """

    def fit(self, X: Any, y: Any) -> WaveletBoostingClassifier:
        """Fit on ``X`` (n_samples, n_features) and labels ``y`` (n_samples,), >= 2 classes."""
        from sklearn.ensemble import GradientBoostingClassifier

        X, y = self._validate_X_y(X, y)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if self.classes_.shape[0] < 2:
            raise ValueError("the classifier needs at least 2 classes in y, got 1 class")
        model = GradientBoostingClassifier(loss="log_loss", **self._gb_params())
        self._fit_model(X, codes.astype(np.int64), model)
        return self

    def _targets(self, y: Any) -> np.ndarray:
        """Class codes of the labels; -1 for a label not seen in fit (always an error)."""
        y = np.asarray(y)
        idx = np.clip(np.searchsorted(self.classes_, y), 0, self.classes_.shape[0] - 1)
        return np.where(self.classes_[idx] == y, idx, -1).astype(np.int64)

    def decision_function(self, X: Any, n_terms: int | str | None = None) -> np.ndarray:
        """M-term raw prediction (log-odds): (n_samples,) for two classes, else (n, L)."""
        raw = self._raw(X, n_terms)
        return raw[:, 0] if raw.shape[1] == 1 else raw

    def predict_proba(self, X: Any, n_terms: int | str | None = None) -> np.ndarray:
        """Class probabilities of the M-term model (sigmoid / softmax), shape (n, L)."""
        raw = self._raw(X, n_terms)
        if raw.shape[1] == 1:
            p = expit(raw[:, 0])
            return np.column_stack([1.0 - p, p])
        return softmax(raw, axis=1)

    def predict(self, X: Any, n_terms: int | str | None = None) -> np.ndarray:
        """Labels: ``classes_[1]`` iff the log-odds are >= 0 (binary), else the argmax."""
        raw = self._raw(X, n_terms)
        code = (raw[:, 0] >= 0).astype(np.int64) if raw.shape[1] == 1 else raw.argmax(axis=1)
        return self.classes_[code]
