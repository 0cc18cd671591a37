"""Geometric wavelets of random forests (Elisha & Dekel, JMLR 2016).

A random forest of ``J`` regression trees is decomposed into *geometric wavelets*: for every
non-root node ``Ω`` of tree ``T_j`` the wavelet is ``ψ_Ω(x) = 1_Ω(x) (Q_Ω − Q_parent(Ω))`` where
``Q_Ω ∈ R^L`` is the node's mean target vector (sklearn's ``tree_.value``); the root contributes
``1_Ω0 Q_Ω0``. Summing the wavelets on the path of ``x`` telescopes to the leaf value, so with all
wavelets kept the decomposition reproduces ``RandomForestRegressor.predict`` exactly (up to
floating point). See ``docs/methods.md`` (geometric wavelets).

Conventions (all documented in ``docs/methods.md``):

- Inputs are min-max scaled per feature over the training set into ``[0, 1]`` (a constant feature
  maps to 0, never NaN); the same affine map (clipped to ``[0, 1]``) is applied at predict time.
  Clipping never changes the leaf a point falls into because every split threshold lies inside
  ``(0, 1)``.
- Classification targets are one-hot vectors (the vertices of a regular simplex); the forest is a
  multi-output ``RandomForestRegressor(criterion="squared_error")`` on them.
- Wavelet norms are *per tree*: ``‖ψ_Ω‖ = ‖Q_Ω − Q_parent‖_2 · sqrt(w_Ω)`` with
  ``w_Ω = |Ω|_N / N`` ("num_samples", counting the whole training set, not the bootstrap sample)
  or ``w_Ω`` = volume of the box ``Ω`` in ``[0, 1]^d`` ("volume"). The forest's ``1/J`` factor is
  applied in the M-term forest and in ``N_τ`` / the importances, never inside the norms; it does
  not change the order of the wavelets.
- The M-term order sorts all non-root wavelets of all trees together by norm, descending; ties are
  broken stably by (tree index, node id), i.e. the order of ``wavelet_norms_``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from mfoml.wavelets.base import WaveletForestBase
from mfoml.wavelets.decompose import onehot_labels
from mfoml.wavelets.trees import tie_argmax

__all__ = ["WaveletForestClassifier", "WaveletForestRegressor"]


class WaveletForestRegressor(RegressorMixin, WaveletForestBase):
    """Random-forest regressor decomposed into geometric wavelets.

    The fitted forest (``forest_``) is exactly ``sklearn.ensemble.RandomForestRegressor(
    criterion="squared_error", ...)`` with the same parameters, fitted on the min-max-scaled
    inputs (:meth:`scale_inputs`).

    Parameters
    ----------
    n_estimators : number of trees J.
    max_depth, min_samples_split, min_samples_leaf, max_features, bootstrap, max_samples,
    random_state, n_jobs : passed to ``RandomForestRegressor``. ``max_features=None`` considers
        all features at every split.
    norm_weight : ``"num_samples"`` (default; ``w_Ω = |Ω|_N / N`` with the whole training set) or
        ``"volume"`` (volume of the node's box in ``[0, 1]^d``).
    importance_tau : exponent τ of the wavelet feature importance (``docs/methods.md``, feature importance).
    backend : ``"auto"`` (default: scikit-learn here, the fast builder for the classifier),
        ``"sklearn"`` or ``"fast"``. ``"fast"`` builds the same forest, tree for tree, with
        :class:`mfoml.wavelets.fasttree.FastForestRegressor`; it needs one-hot targets, so for
        regression it is refused unless ``y`` is one-hot.

    Attributes
    ----------
    forest_ : RandomForestRegressor (or ``FastForestRegressor``, same trees and tree arrays)
    backend_ : the builder used, ``"sklearn"`` or ``"fast"``.
    data_min_, scale_ : ndarray (n_features,), the min-max map.
    wavelet_norms_ : ndarray (K,), per-tree norms of all non-root wavelets of all trees, ordered
        by (tree, node id). ``wavelet_tree_``, ``wavelet_node_``, ``wavelet_feature_`` (the
        parent's split feature) are aligned with it.
    wavelet_order_ : ndarray (K,), indices into ``wavelet_norms_`` sorted by norm descending
        (stable); ``sorted_norms_`` = ``wavelet_norms_[wavelet_order_]``.
    n_wavelets_ : K.  ``root_mean_`` : ndarray (L,), the average root mean (the 0-term forest).
    feature_importances_ : ndarray (n_features,), ``S_i = (1/J) Σ_j Σ_{Ω∈T_j, parent split on i}
        ‖ψ_Ω‖^τ`` (not normalized to sum 1).
    fit_seconds_, decompose_seconds_ : wall time of the forest fit and of the decomposition
        (structure, counts or volumes, norms, order, importances).
    n_terms_, threshold_norm_ : the default M of :meth:`predict` (all wavelets after ``fit``;
        set by :meth:`select_n_terms`) and the norm of the M-th wavelet.
    """

    def fit(self, X: Any, y: Any) -> WaveletForestRegressor:
        """Fit the forest on scaled ``X`` (n_samples, n_features) and ``y`` (n_samples,) or
        (n_samples, n_outputs), then compute the wavelet decomposition."""
        X, y = self._validate_X_y(X, y, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        self._fit_targets(X, y)
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        return self

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y of shape (n_samples, n_outputs) is fitted
        return tags

    def predict(self, X: Any, n_terms: int | str | None = None) -> np.ndarray:
        """M-term forest prediction.

        Parameters
        ----------
        X : array-like (n_samples, n_features), raw (unscaled) inputs.
        n_terms : M, the number of largest wavelets kept (over all trees); ``"all"`` keeps all
            (the forest itself); ``None`` uses ``n_terms_`` (all, unless
            :meth:`select_n_terms` changed it).

        Returns
        -------
        ndarray (n_samples,) or (n_samples, n_outputs), float64.
        """
        out = self._wavelet_sum(X, n_terms)
        return out[:, 0] if self._y_1d else out

    def mterm_curve(self, X: Any, y: Any, n_terms: Any = None) -> dict[str, np.ndarray]:
        """Mean squared error of the M-term forest on (X, y) for many M at once.

        Parameters
        ----------
        X : array-like (n_samples, n_features); y : (n_samples,) or (n_samples, n_outputs).
        n_terms : 1-D integer array of M values (clipped to K); None = every M in 0..K.

        Returns
        -------
        dict with ``n_terms`` (T,), ``threshold`` (T,) the norm of the M-th wavelet
        (inf for M = 0) and ``mse`` (T,), the mean over samples and outputs of the squared error
        (sklearn's ``mean_squared_error`` convention).
        """
        check_is_fitted(self, "forest_")
        uniq, inverse = self._check_n_terms_grid(n_terms)
        Y = np.asarray(y, dtype=np.float64)
        Y = Y[:, None] if Y.ndim == 1 else Y
        curve = self._curve(X, Y, uniq, None)
        return {k: v[inverse] for k, v in curve.items()}

    def select_n_terms(
        self, X_val: Any, y_val: Any, n_terms: Any = None, *, set_default: bool = True
    ) -> tuple[int, float]:
        """Choose M minimizing the validation MSE (the smallest such M).

        Returns ``(M, threshold_norm)``; with ``set_default`` also stores them as ``n_terms_``
        and ``threshold_norm_`` so that ``predict(X)`` uses M.
        """
        check_is_fitted(self, "forest_")
        uniq, _ = self._check_n_terms_grid(n_terms)
        Y = np.asarray(y_val, dtype=np.float64)
        Y = Y[:, None] if Y.ndim == 1 else Y
        return self._select(self._curve(X_val, Y, uniq, None), "mse", set_default)


class WaveletForestClassifier(ClassifierMixin, WaveletForestBase):
    """Wavelet forest for classification: a multi-output regression forest on one-hot targets.

    Labels (any sortable values) are mapped to ``classes_ = np.unique(y)`` and to one-hot vectors
    ``e_k ∈ R^L`` (the simplex-vertex mapping). ``forest_`` is a
    ``RandomForestRegressor(criterion="squared_error")`` fitted on the scaled inputs and the
    one-hot matrix; parameters and attributes are those of :class:`WaveletForestRegressor`.
    Class decisions take the argmax of the M-term output, ties (within 1e-12) going to the
    lowest class index.

    ``backend="auto"`` (the default) fits that forest with the fast exact builder
    (:mod:`mfoml.wavelets.fasttree`: the same trees as scikit-learn's, array for array, many
    times faster); ``backend="sklearn"`` fits it with scikit-learn.
    """

    _task = "classification"

    def fit(self, X: Any, y: Any) -> WaveletForestClassifier:
        """Fit on ``X`` (n_samples, n_features) and labels ``y`` (n_samples,)."""
        X, y = self._validate_X_y(X, y)
        check_classification_targets(y)
        self.classes_, targets = onehot_labels(y)
        self._fit_targets(X, targets)
        self.n_outputs_ = self.classes_.shape[0]
        return self

    def predict_proba(
        self, X: Any, n_terms: int | str | None = None, *, normalize: bool = False
    ) -> np.ndarray:
        """M-term forest output, shape (n_samples, n_classes).

        With all wavelets this is the forest's average of leaf class frequencies, a probability
        vector. For M < K it is a truncated wavelet sum: entries can be negative or exceed 1 and
        rows need not sum to 1 (this raw vector is what telescopes). ``normalize=True`` clips to
        ``[0, ∞)`` and renormalizes each row (uniform where a row clips to all zeros).
        """
        out = self._wavelet_sum(X, n_terms)
        if normalize:
            np.clip(out, 0.0, None, out=out)
            s = out.sum(axis=1, keepdims=True)
            out = np.divide(out, s, out=np.full_like(out, 1.0 / out.shape[1]), where=s > 0)
        return out

    def predict(self, X: Any, n_terms: int | str | None = None) -> np.ndarray:
        """Class labels ``classes_[argmax f_M(x)]``, shape (n_samples,)."""
        check_is_fitted(self, "forest_")
        return self.classes_[tie_argmax(self._wavelet_sum(X, n_terms))]

    def _encode(self, y: Any) -> tuple[np.ndarray, np.ndarray]:
        y = np.asarray(y)
        idx = np.clip(np.searchsorted(self.classes_, y), 0, self.classes_.shape[0] - 1)
        known = self.classes_[idx] == y
        labels = np.where(known, idx, -1)
        onehot = np.zeros((y.shape[0], self.classes_.shape[0]))
        onehot[np.flatnonzero(known), idx[known]] = 1.0
        return onehot, labels

    def mterm_curve(self, X: Any, y: Any, n_terms: Any = None) -> dict[str, np.ndarray]:
        """Held-out errors of the M-term forest for many M at once.

        Parameters
        ----------
        X : array-like (n_samples, n_features); y : labels (n_samples,) (unknown labels count
            as errors and as the zero target vector).
        n_terms : 1-D integer array of M values (clipped to K); None = every M in 0..K.

        Returns
        -------
        dict with ``n_terms`` (T,), ``threshold`` (T,), ``error`` (T,) the misclassification
        rate of ``predict(X, n_terms=M)`` and ``mse`` (T,) the squared error of the M-term output
        to the one-hot targets, averaged over samples and classes.
        """
        check_is_fitted(self, "forest_")
        uniq, inverse = self._check_n_terms_grid(n_terms)
        Y, labels = self._encode(y)
        curve = self._curve(X, Y, uniq, labels)
        return {k: v[inverse] for k, v in curve.items()}

    def select_n_terms(
        self,
        X_val: Any,
        y_val: Any,
        n_terms: Any = None,
        *,
        metric: str = "error",
        set_default: bool = True,
    ) -> tuple[int, float]:
        """Choose M minimizing the validation ``metric`` (``"error"`` or ``"mse"``).

        The smallest M reaching the minimum is taken. Returns ``(M, threshold_norm)``; with
        ``set_default`` also stores them as ``n_terms_`` / ``threshold_norm_``.
        """
        check_is_fitted(self, "forest_")
        if metric not in ("error", "mse"):
            raise ValueError(f"metric must be 'error' or 'mse', got {metric!r}")
        uniq, _ = self._check_n_terms_grid(n_terms)
        Y, labels = self._encode(y_val)
        return self._select(self._curve(X_val, Y, uniq, labels), metric, set_default)
