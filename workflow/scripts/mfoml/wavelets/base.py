"""The decomposition machinery shared by the wavelet-forest estimators (``WaveletForestBase``).

Fits a multi-output ``RandomForestRegressor``, decomposes every tree into geometric wavelets
(:mod:`mfoml.wavelets.trees`), orders them by norm for M-term approximations and computes
M-term predictions and error curves in bounded-memory chunks (``docs/methods.md``).
The public estimators are in :mod:`mfoml.wavelets.forest`.
"""

from __future__ import annotations

import numbers
import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestRegressor
from sklearn.utils.validation import check_is_fitted, validate_data

from mfoml.wavelets.decompose import FittedWavelets, fit_decompose, resolve_backend
from mfoml.wavelets.params import FOREST_PARAMS, sklearn_constraints
from mfoml.wavelets.scaling import minmax_transform
from mfoml.wavelets.trees import node_means, tie_argmax, tie_argmax_rows

__all__ = ["WaveletForestBase"]

#: Bound on (entries x outputs) held at once by ``mterm_curve``.
_CURVE_CHUNK_ELEMENTS = 2_000_000


class WaveletForestBase(BaseEstimator):
    """Shared implementation; use :class:`WaveletForestRegressor` or the classifier."""

    #: checked by ``fit`` (scikit-learn's ``_validate_params``); the same table as the probe's
    _parameter_constraints: dict = sklearn_constraints(FOREST_PARAMS)

    def __init__(
        self,
        n_estimators: int = 100,
        *,
        max_depth: int | None = None,
        min_samples_split: int | float = 2,
        min_samples_leaf: int | float = 1,
        max_features: int | float | str | None = None,
        bootstrap: bool = True,
        max_samples: int | float | None = None,
        random_state: int | np.random.RandomState | None = None,
        n_jobs: int | None = None,
        norm_weight: str = "num_samples",
        importance_tau: float = 1.0,
        backend: str = "auto",
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.max_samples = max_samples
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.norm_weight = norm_weight
        self.importance_tau = importance_tau
        self.backend = backend

    # ---- fitting -------------------------------------------------------------------------
    #: the task, which decides the builder ``backend="auto"`` selects (``resolve_backend``)
    _task = "regression"

    def _make_forest(self) -> Any:
        """The forest to fit: ``RandomForestRegressor(criterion="squared_error")`` with the
        estimator's parameters, or for ``backend="fast"`` the same forest built by
        :class:`mfoml.wavelets.fasttree.FastForestRegressor` (equal trees, one-hot targets)."""
        params = {
            name: getattr(self, name)
            for name in (
                "n_estimators",
                "max_depth",
                "min_samples_split",
                "min_samples_leaf",
                "max_features",
                "bootstrap",
                "max_samples",
                "random_state",
                "n_jobs",
            )
        }
        if self.backend_ == "fast":
            from mfoml.wavelets.fasttree import FastForestRegressor

            return FastForestRegressor(**params)
        return RandomForestRegressor(criterion="squared_error", **params)

    def _fit_targets(self, X: Any, targets: np.ndarray) -> None:
        """Scale X, fit the forest on (scaled X, targets) and decompose it (parameters and X
        already validated by ``fit``)."""
        self.backend_ = resolve_backend(self.backend, self._task)
        fitted = fit_decompose(X, targets, self._make_forest(), self.norm_weight)
        t0 = time.perf_counter()
        self.data_min_, self.scale_, self.forest_ = fitted.data_min, fitted.scale, fitted.forest
        self._order_wavelets(fitted)
        self.fit_seconds_ = fitted.fit_seconds
        self.decompose_seconds_ = fitted.decompose_seconds + time.perf_counter() - t0

    def _order_wavelets(self, fitted: FittedWavelets) -> None:
        """Store the wavelets of ``fitted``; compute their M-term order, ranks, importances."""
        J = len(fitted.parents)
        self._parents: list[np.ndarray] = fitted.parents
        self.wavelet_norms_ = fitted.norms
        self.wavelet_tree_ = fitted.tree
        self.wavelet_node_ = fitted.node
        self.wavelet_feature_ = fitted.feature
        self.n_wavelets_ = int(self.wavelet_norms_.shape[0])
        self.root_mean_ = fitted.root_mean
        # Global order: norm descending, ties by (tree, node) ascending (stable sort).
        order = np.argsort(-self.wavelet_norms_, kind="stable")
        self.wavelet_order_ = order
        self.sorted_norms_ = self.wavelet_norms_[order]
        rank = np.empty(self.n_wavelets_, dtype=np.int64)
        rank[order] = np.arange(self.n_wavelets_, dtype=np.int64)
        self._ranks = []
        offset = 0
        for parent in self._parents:
            r = np.full(parent.shape[0], -1, dtype=np.int64)  # root: always included
            r[1:] = rank[offset : offset + parent.shape[0] - 1]
            offset += parent.shape[0] - 1
            self._ranks.append(r)
        tau = float(self.importance_tau)
        self.feature_importances_ = (
            np.bincount(
                self.wavelet_feature_,
                weights=self.wavelet_norms_**tau,
                minlength=self.n_features_in_,
            )
            / J
        )
        self.n_terms_ = self.n_wavelets_
        self.threshold_norm_ = 0.0

    def _validate_X_y(self, X: Any, y: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Check the parameters and (X, y) with scikit-learn (numeric, dense, 2-D X; sets
        ``n_features_in_``); X keeps its dtype and is not copied (a float16 memmap stays one),
        its NaN/inf are reported by the scaling, naming row and feature."""
        self._validate_params()
        return validate_data(self, X, y, dtype="numeric", ensure_all_finite=False, **kwargs)

    # ---- helpers -------------------------------------------------------------------------
    def scale_inputs(self, X: Any) -> np.ndarray:
        """The inputs as the trees see them.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_features), float32: ``clip((X − data_min_) · scale_, 0, 1)``.
        """
        check_is_fitted(self, "forest_")
        X = validate_data(self, X, reset=False, dtype="numeric", ensure_all_finite=False)
        return minmax_transform(X, self.data_min_, self.scale_)

    def _coefficients(self, t: int) -> np.ndarray:
        """(n_nodes, L): row 0 = Q_root, row Ω = Q_Ω − Q_parent(Ω)."""
        q = node_means(self.forest_.estimators_[t].tree_)
        parent = self._parents[t]
        q[1:] -= q[parent[1:]].copy()
        return q

    def _resolve_n_terms(self, n_terms: int | str | None) -> int:
        if n_terms is None:
            return int(self.n_terms_)
        if isinstance(n_terms, str):
            if n_terms == "all":
                return self.n_wavelets_
            raise ValueError(f"n_terms must be an int, 'all' or None, got {n_terms!r}")
        if not isinstance(n_terms, numbers.Integral) or n_terms < 0:
            raise ValueError(f"n_terms must be a non-negative integer, got {n_terms!r}")
        return int(min(n_terms, self.n_wavelets_))

    def _wavelet_sum(
        self, X: Any, n_terms: int | str | None, chunk_rows: int = 65536
    ) -> np.ndarray:
        """M-term forest output f_M(x), shape (n_samples, L)."""
        check_is_fitted(self, "forest_")
        M = self._resolve_n_terms(n_terms)
        Xs = self.scale_inputs(X)
        estimators = self.forest_.estimators_
        J = len(estimators)
        coefs = []
        for t in range(J):
            c = self._coefficients(t)
            if M < self.n_wavelets_:
                c *= (self._ranks[t] < M)[:, None]
            coefs.append(c)
        out = np.zeros((Xs.shape[0], coefs[0].shape[1]))
        for start in range(0, Xs.shape[0], chunk_rows):
            block = Xs[start : start + chunk_rows]
            acc = out[start : start + block.shape[0]]
            for t, est in enumerate(estimators):
                acc += est.tree_.decision_path(block) @ coefs[t]
        out /= J
        return out

    def _curve(
        self, X: Any, Y: np.ndarray, n_terms: np.ndarray, labels: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        """Held-out squared error (and misclassification) for sorted unique ``n_terms``.

        Each (sample, node) pair of the decision paths contributes ``(Q_Ω − Q_parent)/J`` once
        ``M > rank(Ω)``. Entries are ordered per sample by global rank; a cumulative sum gives
        the sample's prediction after each entry, hence the change of its squared error (and of
        its correctness), which is binned by the first M that includes the entry. A cumulative
        sum over the bins gives the error at every M, in O(nnz · L) for the whole curve, where
        nnz = n_samples x path length x J (sparse decision paths, never n_samples x nodes).
        Arrays are kept as (L, nnz) so that every pass runs over contiguous rows.
        """
        Xs = self.scale_inputs(X)
        n, L = Y.shape
        estimators = self.forest_.estimators_
        J = len(estimators)
        # One (L, total nodes) table of (Q_Ω − Q_parent)/J over all trees; offsets per tree.
        sizes = [p.shape[0] for p in self._parents]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        coef_t = np.concatenate([self._coefficients(t).T for t in range(J)], axis=1) / J
        rank_all = np.concatenate(self._ranks)
        # bucket of a node = index of the first M in n_terms that includes it (M > rank);
        # roots (rank -1) are never entries.
        bucket_all = np.searchsorted(n_terms, rank_all + 1, side="left")
        T = n_terms.shape[0]
        f0 = self.root_mean_
        base_sq_rows = np.sum((Y - f0) ** 2, axis=1)
        base_sq = float(base_sq_rows.sum())
        d_sq = np.zeros(T + 1)
        base_wrong = 0.0
        d_wrong = np.zeros(T + 1)
        if labels is not None:
            f0_class = tie_argmax(f0[None, :])[0]
            base_wrong = float(np.sum(labels != f0_class))
        depth_guess = sum(int(est.tree_.max_depth) + 1 for est in estimators)
        chunk = max(1, _CURVE_CHUNK_ELEMENTS // max(1, depth_guess * L))
        K1 = self.n_wavelets_ + 1
        for start in range(0, n, chunk):
            block = Xs[start : start + chunk]
            m = block.shape[0]
            rows_l, src_l = [], []
            for t, est in enumerate(estimators):
                ind = est.tree_.decision_path(block)
                nodes = ind.indices.astype(np.int64, copy=False)
                rows = np.repeat(np.arange(m, dtype=np.int64), np.diff(ind.indptr))
                keep = nodes != 0
                rows_l.append(rows[keep])
                src_l.append(nodes[keep] + offsets[t])
            rows = np.concatenate(rows_l)
            src = np.concatenate(src_l)
            del rows_l, src_l
            if rows.size == 0:
                continue
            # Stable sort: each tree's block is already sorted by sample (timsort/radix runs).
            order = np.argsort(rows * K1 + rank_all[src], kind="stable")
            rows, src = rows[order], src[order]
            del order
            bucket = bucket_all[src]
            use = bucket < T  # entries beyond the largest M never count (they end each sample)
            rows, bucket, src = rows[use], bucket[use], src[use]
            if rows.size == 0:
                continue
            # Lay each sample's entries out along a "position in its path" axis and take the
            # cumulative sum along it: every sample's sum starts from 0 (no rounding carried
            # from one sample to the next). grid: (L, P, m), P = longest sample path.
            nnz = rows.size
            counts = np.bincount(rows, minlength=m)
            pos = np.arange(nnz) - (np.cumsum(counts) - counts)[rows]
            grid = np.zeros((L, int(counts.max()), m))
            grid[:, pos, rows] = coef_t[:, src]
            np.cumsum(grid, axis=1, out=grid)
            # Only the last entry of each (sample, bucket) run matters.
            end = np.ones(nnz, dtype=bool)
            end[:-1] = (rows[1:] != rows[:-1]) | (bucket[1:] != bucket[:-1])
            idx = np.flatnonzero(end)
            r_rows, r_bucket = rows[idx], bucket[idx]
            new_sample = np.ones(idx.size, dtype=bool)
            new_sample[1:] = r_rows[1:] != r_rows[:-1]
            pred = grid[:, pos[idx], r_rows]  # (L, R)
            del grid
            pred += f0[:, None]
            sq = np.einsum("ij,ij->j", pred, pred)
            if labels is not None:
                lab = labels[start + r_rows]
                flat = np.maximum(lab, 0) * idx.size + np.arange(idx.size)
                sq += np.where(lab >= 0, 1.0 - 2.0 * pred.ravel()[flat], 0.0)
            else:
                y_t = Y[start + r_rows].T
                sq += np.einsum("ij,ij->j", y_t, y_t) - 2.0 * np.einsum("ij,ij->j", y_t, pred)
                del y_t
            sq_before = np.empty_like(sq)
            sq_before[1:] = sq[:-1]
            sq_before[new_sample] = base_sq_rows[start + r_rows[new_sample]]
            d_sq += np.bincount(r_bucket, weights=sq - sq_before, minlength=T + 1)
            if labels is not None:
                right = (tie_argmax_rows(pred) == lab).astype(np.float64)
                right_before = np.empty_like(right)
                right_before[1:] = right[:-1]
                right_before[new_sample] = (f0_class == lab[new_sample]).astype(np.float64)
                d_wrong += np.bincount(r_bucket, weights=right_before - right, minlength=T + 1)
        out = {
            "n_terms": n_terms,
            "threshold": self._threshold_for(n_terms),
            "mse": (base_sq + np.cumsum(d_sq)[:T]) / (n * L),
        }
        if labels is not None:
            out["error"] = (base_wrong + np.cumsum(d_wrong)[:T]) / n
        return out

    def _threshold_for(self, n_terms: np.ndarray) -> np.ndarray:
        """Norm of the M-th wavelet (inf for M = 0)."""
        thr = np.full(n_terms.shape[0], np.inf)
        pos = n_terms > 0
        thr[pos] = self.sorted_norms_[n_terms[pos] - 1]
        return thr

    def _check_n_terms_grid(self, n_terms: Any) -> tuple[np.ndarray, np.ndarray]:
        if n_terms is None:
            grid = np.arange(self.n_wavelets_ + 1, dtype=np.int64)
        else:
            grid = np.asarray(n_terms)
            if grid.ndim == 0:
                grid = grid[None]
            if grid.ndim != 1 or not np.issubdtype(grid.dtype, np.integer) or np.any(grid < 0):
                raise ValueError("n_terms must be a 1-D array of non-negative integers")
            grid = np.minimum(grid.astype(np.int64), self.n_wavelets_)
        uniq, inverse = np.unique(grid, return_inverse=True)
        return uniq, inverse

    def _select(
        self, curve: dict[str, np.ndarray], metric: str, set_default: bool
    ) -> tuple[int, float]:
        err = curve[metric]
        best = int(np.flatnonzero(err <= err.min())[0])  # smallest M reaching the minimum
        M = int(curve["n_terms"][best])
        thr = float(curve["threshold"][best])
        if set_default:
            self.n_terms_ = M
            self.threshold_norm_ = thr
        return M, thr
