"""Geometric wavelets of random forests (Elisha & Dekel, JMLR 2016).

A random forest of ``J`` regression trees is decomposed into *geometric wavelets*: for every
non-root node ``Ω`` of tree ``T_j`` the wavelet is ``ψ_Ω(x) = 1_Ω(x) (Q_Ω − Q_parent(Ω))`` where
``Q_Ω ∈ R^L`` is the node's mean target vector (sklearn's ``tree_.value``); the root contributes
``1_Ω0 Q_Ω0``. Summing the wavelets on the path of ``x`` telescopes to the leaf value, so with all
wavelets kept the decomposition reproduces ``RandomForestRegressor.predict`` exactly (up to
floating point). See ``/work/shared/METHODS.md`` sections 1-4 and ``docs/methods.md``.

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

import numbers
import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "WaveletForestRegressor",
    "WaveletForestClassifier",
    "minmax_fit",
    "minmax_transform",
    "tree_structure",
    "tree_wavelet_norms",
]

#: Bytes of the float64 block converted at once when scaling inputs (bounded temporary memory,
#: also for float16 memmaps); the row count per block is derived from the number of features.
_SCALE_CHUNK_BYTES = 4 * 2**20


def _chunk_rows(n_features: int, chunk_rows: int | None) -> int:
    if chunk_rows is not None:
        return max(1, int(chunk_rows))
    return max(16, _SCALE_CHUNK_BYTES // (8 * max(1, n_features)))


#: Bound on (entries x outputs) held at once by ``mterm_curve``.
_CURVE_CHUNK_ELEMENTS = 2_000_000
#: Scores within this absolute tolerance of the row maximum count as ties (lowest class wins).
_TIE_TOL = 1e-12


# --------------------------------------------------------------------------------------------
# Input scaling
# --------------------------------------------------------------------------------------------
def _as_2d(X: Any, what: str = "X") -> np.ndarray:
    """Return ``X`` as a 2-D numpy array without copying numpy arrays or memmaps."""
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {X.shape})")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
        raise ValueError(f"{what} must be numeric, got dtype {X.dtype}")
    return X


def minmax_fit(X: Any, chunk_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature minimum and inverse range of ``X``, computed in row chunks.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Any numeric dtype, including a float16 ``np.memmap``; it is read chunk by chunk.
    chunk_rows : rows converted to float64 at once (default: about 4 MB worth).

    Returns
    -------
    data_min : ndarray of shape (n_features,), float64
    scale : ndarray of shape (n_features,), float64
        ``1 / (max - min)``; 0 for a constant feature (which therefore maps to 0).

    Raises
    ------
    ValueError
        If ``X`` contains NaN or infinite values (the message names the first bad column).
    """
    X = _as_2d(X)
    n, d = X.shape
    chunk_rows = _chunk_rows(d, chunk_rows)
    lo = np.full(d, np.inf)
    hi = np.full(d, -np.inf)
    for start in range(0, n, chunk_rows):
        block = np.asarray(X[start : start + chunk_rows], dtype=np.float64)
        if not np.isfinite(block).all():
            bad = np.argwhere(~np.isfinite(block))[0]
            raise ValueError(
                f"X contains NaN or infinite values (first at row {start + bad[0]}, "
                f"feature {bad[1]}); the wavelet forest needs finite inputs"
            )
        np.minimum(lo, block.min(axis=0), out=lo)
        np.maximum(hi, block.max(axis=0), out=hi)
    rng = hi - lo
    scale = np.zeros(d)
    np.divide(1.0, rng, out=scale, where=rng > 0)
    return lo, scale


def minmax_transform(
    X: Any,
    data_min: np.ndarray,
    scale: np.ndarray,
    chunk_rows: int | None = None,
    check_finite: bool = True,
) -> np.ndarray:
    """Apply the min-max map ``clip((x − min) · scale, 0, 1)`` in row chunks.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), any numeric dtype (memmap allowed).
    data_min, scale : ndarrays of shape (n_features,), from :func:`minmax_fit`.

    Returns
    -------
    ndarray of shape (n_samples, n_features), float32, C-contiguous
        The representation the trees see (sklearn trees work in float32). A constant training
        feature maps to 0.
    """
    X = _as_2d(X)
    n, d = X.shape
    if d != data_min.shape[0]:
        raise ValueError(
            f"X has {d} features, but the wavelet forest was fitted with {data_min.shape[0]}"
        )
    chunk_rows = _chunk_rows(d, chunk_rows)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk_rows):
        # Always a copy: the block is modified in place below and X must stay untouched.
        block = np.array(X[start : start + chunk_rows], dtype=np.float64, copy=True)
        if check_finite and not np.isfinite(block).all():
            bad = np.argwhere(~np.isfinite(block))[0]
            raise ValueError(
                f"X contains NaN or infinite values (first at row {start + bad[0]}, feature {bad[1]})"
            )
        block -= data_min
        block *= scale
        np.clip(block, 0.0, 1.0, out=block)
        out[start : start + block.shape[0]] = block
    return out


# --------------------------------------------------------------------------------------------
# Tree structure and norms (vectorized over nodes, loops only over depth levels)
# --------------------------------------------------------------------------------------------
def tree_structure(tree: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    """Parent array and breadth-first levels of a fitted sklearn ``Tree`` object.

    Parameters
    ----------
    tree : sklearn.tree._tree.Tree (``estimator.tree_``)

    Returns
    -------
    parent : ndarray of shape (n_nodes,), int64; ``parent[0] = -1``.
    levels : list of int64 arrays; ``levels[k]`` holds the node ids at depth ``k``.
    """
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    n_nodes = left.shape[0]
    parent = np.full(n_nodes, -1, dtype=np.int64)
    internal = np.flatnonzero(left >= 0)
    parent[left[internal]] = internal
    parent[right[internal]] = internal
    levels = [np.zeros(1, dtype=np.int64)]
    while True:
        frontier = levels[-1]
        inner = frontier[left[frontier] >= 0]
        if inner.size == 0:
            break
        levels.append(np.concatenate([left[inner], right[inner]]))
    return parent, levels


def _node_counts(
    tree: Any, Xs: np.ndarray, parent: np.ndarray, levels: list[np.ndarray]
) -> np.ndarray:
    """|Ω|_N for every node: leaf counts of the whole training set, accumulated bottom-up."""
    n_nodes = parent.shape[0]
    counts = np.bincount(tree.apply(Xs), minlength=n_nodes).astype(np.float64)
    for nodes in reversed(levels[1:]):
        counts += np.bincount(parent[nodes], weights=counts[nodes], minlength=n_nodes)
    return counts


def _node_volumes(tree: Any, parent: np.ndarray, levels: list[np.ndarray]) -> np.ndarray:
    """Volume of every node's box inside ``[0, 1]^d``.

    Top-down pass that stores, for each node, only the interval along its *parent's* split
    feature (O(n_nodes) memory, never an n_nodes x d box array). The interval of a node along a
    feature ``f`` is the stored interval of its nearest ancestor-or-self created by a split on
    ``f`` ([0, 1] when there is none); this ancestor walk is vectorized over a whole level.
    """
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    feature = np.asarray(tree.feature, dtype=np.int64)
    threshold = np.asarray(tree.threshold, dtype=np.float64)
    n_nodes = parent.shape[0]
    vol = np.zeros(n_nodes)
    vol[0] = 1.0
    ivl_lo = np.zeros(n_nodes)
    ivl_hi = np.ones(n_nodes)
    for nodes in levels:
        p = nodes[left[nodes] >= 0]
        if p.size == 0:
            continue
        f = feature[p]
        lo = np.zeros(p.size)
        hi = np.ones(p.size)
        cur = p.copy()
        pending = np.ones(p.size, dtype=bool)
        while pending.any():
            idx = np.flatnonzero(pending)
            par = parent[cur[idx]]
            at_root = par < 0
            pending[idx[at_root]] = False
            idx, par = idx[~at_root], par[~at_root]
            hit = feature[par] == f[idx]
            h = idx[hit]
            lo[h] = ivl_lo[cur[h]]
            hi[h] = ivl_hi[cur[h]]
            pending[h] = False
            cur[idx[~hit]] = par[~hit]
        t = np.clip(threshold[p], lo, hi)
        width = hi - lo
        frac_left = np.zeros(p.size)
        np.divide(t - lo, width, out=frac_left, where=width > 0)
        frac_right = np.zeros(p.size)
        np.divide(hi - t, width, out=frac_right, where=width > 0)
        lc, rc = left[p], right[p]
        vol[lc] = vol[p] * frac_left
        vol[rc] = vol[p] * frac_right
        ivl_lo[lc], ivl_hi[lc] = lo, t
        ivl_lo[rc], ivl_hi[rc] = t, hi
    return vol


def _node_means(tree: Any) -> np.ndarray:
    """Q_Ω for every node: ``tree_.value[:, :, 0]``, shape (n_nodes, n_outputs), float64."""
    # ``tree.value`` is a view of the tree's own memory: always copy before modifying.
    return np.array(tree.value[:, :, 0], dtype=np.float64, order="C", copy=True)


def tree_wavelet_norms(
    tree: Any,
    Xs: np.ndarray | None = None,
    norm_weight: str = "num_samples",
    structure: tuple[np.ndarray, list[np.ndarray]] | None = None,
) -> np.ndarray:
    """Norms of the wavelets of one tree, per node.

    Parameters
    ----------
    tree : sklearn ``Tree`` (``estimator.tree_``) fitted on scaled inputs in ``[0, 1]^d``.
    Xs : ndarray of shape (n_samples, n_features), float32
        The whole (scaled) training set; required for ``norm_weight="num_samples"``.
    norm_weight : ``"num_samples"`` (``w = |Ω|_N / N``) or ``"volume"`` (box volume).
    structure : optional ``(parent, levels)`` from :func:`tree_structure`.

    Returns
    -------
    ndarray of shape (n_nodes,), float64
        ``‖Q_Ω − Q_parent‖_2 · sqrt(w_Ω)``; entry 0 (the root) is 0 and is not a wavelet.
    """
    parent, levels = structure if structure is not None else tree_structure(tree)
    if norm_weight == "num_samples":
        if Xs is None:
            raise ValueError("norm_weight='num_samples' needs the training inputs Xs")
        weight = _node_counts(tree, Xs, parent, levels) / Xs.shape[0]
    elif norm_weight == "volume":
        weight = _node_volumes(tree, parent, levels)
    else:
        raise ValueError(f"norm_weight must be 'num_samples' or 'volume', got {norm_weight!r}")
    q = _node_means(tree)
    diff = q.copy()
    diff[1:] -= q[parent[1:]]
    norms = np.sqrt(np.einsum("ij,ij->i", diff, diff) * weight)
    norms[0] = 0.0
    return norms


def _tie_argmax(scores: np.ndarray, tol: float = _TIE_TOL) -> np.ndarray:
    """Row-wise argmax where scores within ``tol`` of the row maximum tie (lowest index wins)."""
    top = scores.max(axis=1, keepdims=True)
    return np.argmax(scores >= top - tol, axis=1)


def _tie_argmax_rows(scores_t: np.ndarray, tol: float = _TIE_TOL) -> np.ndarray:
    """:func:`_tie_argmax` of the columns of ``scores_t`` (L, n), with passes over rows."""
    top = scores_t[0].copy()
    for row in scores_t[1:]:
        np.maximum(top, row, out=top)
    top -= tol
    idx = np.zeros(scores_t.shape[1], dtype=np.int64)
    for j in range(scores_t.shape[0] - 1, 0, -1):
        idx[scores_t[j] >= top] = j
    idx[scores_t[0] >= top] = 0
    return idx


# --------------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------------
class _WaveletForestBase(BaseEstimator):
    """Shared implementation; use :class:`WaveletForestRegressor` or the classifier."""

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

    # ---- fitting -------------------------------------------------------------------------
    def _make_forest(self) -> RandomForestRegressor:
        return RandomForestRegressor(
            n_estimators=self.n_estimators,
            criterion="squared_error",
            max_depth=self.max_depth,
            min_samples_split=self.min_samples_split,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            bootstrap=self.bootstrap,
            max_samples=self.max_samples,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        )

    def _validate_params_local(self) -> None:
        if self.norm_weight not in ("num_samples", "volume"):
            raise ValueError(
                f"norm_weight must be 'num_samples' or 'volume', got {self.norm_weight!r}"
            )
        if not (isinstance(self.importance_tau, numbers.Real) and self.importance_tau > 0):
            raise ValueError(
                f"importance_tau must be a positive number, got {self.importance_tau!r}"
            )

    def _fit_targets(self, X: Any, targets: np.ndarray) -> None:
        """Scale X, fit the forest on (scaled X, targets) and decompose it."""
        self._validate_params_local()
        X = _as_2d(X)
        if targets.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {targets.shape[0]}")
        self.n_features_in_ = X.shape[1]
        self.data_min_, self.scale_ = minmax_fit(X)
        Xs = minmax_transform(X, self.data_min_, self.scale_, check_finite=False)
        t0 = time.perf_counter()
        self.forest_ = self._make_forest().fit(Xs, targets)
        t1 = time.perf_counter()
        self._decompose(Xs)
        self.fit_seconds_ = t1 - t0
        self.decompose_seconds_ = time.perf_counter() - t1

    def _decompose(self, Xs: np.ndarray) -> None:
        """Compute norms, ranks, importances. ``Xs``: scaled training inputs (N, d) float32."""
        trees = [est.tree_ for est in self.forest_.estimators_]
        J = len(trees)
        self._parents: list[np.ndarray] = []
        norms_all, tree_idx, node_idx, feat_all = [], [], [], []
        root_means = []
        for t, tree in enumerate(trees):
            structure = tree_structure(tree)
            parent = structure[0]
            self._parents.append(parent)
            norms = tree_wavelet_norms(tree, Xs, self.norm_weight, structure)
            n_nodes = parent.shape[0]
            norms_all.append(norms[1:])
            tree_idx.append(np.full(n_nodes - 1, t, dtype=np.int64))
            node_idx.append(np.arange(1, n_nodes, dtype=np.int64))
            feat_all.append(np.asarray(tree.feature, dtype=np.int64)[parent[1:]])
            root_means.append(_node_means(tree)[0])
        self.wavelet_norms_ = np.concatenate(norms_all)
        self.wavelet_tree_ = np.concatenate(tree_idx)
        self.wavelet_node_ = np.concatenate(node_idx)
        self.wavelet_feature_ = np.concatenate(feat_all)
        self.n_wavelets_ = int(self.wavelet_norms_.shape[0])
        self.root_mean_ = np.mean(root_means, axis=0)
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
        return minmax_transform(X, self.data_min_, self.scale_)

    def _coefficients(self, t: int) -> np.ndarray:
        """(n_nodes, L): row 0 = Q_root, row Ω = Q_Ω − Q_parent(Ω)."""
        q = _node_means(self.forest_.estimators_[t].tree_)
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
            f0_class = _tie_argmax(f0[None, :])[0]
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
                right = (_tie_argmax_rows(pred) == lab).astype(np.float64)
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


class WaveletForestRegressor(RegressorMixin, _WaveletForestBase):
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
    importance_tau : exponent τ of the wavelet feature importance (METHODS section 4).

    Attributes
    ----------
    forest_ : RandomForestRegressor
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
        y = np.asarray(y, dtype=np.float64)
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}")
        if not np.isfinite(y).all():
            raise ValueError("y contains NaN or infinite values")
        self._y_1d = y.ndim == 1
        self._fit_targets(X, y)
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        return self

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


class WaveletForestClassifier(ClassifierMixin, _WaveletForestBase):
    """Wavelet forest for classification: a multi-output regression forest on one-hot targets.

    Labels (any sortable values) are mapped to ``classes_ = np.unique(y)`` and to one-hot vectors
    ``e_k ∈ R^L`` (the simplex-vertex mapping). ``forest_`` is a
    ``RandomForestRegressor(criterion="squared_error")`` fitted on the scaled inputs and the
    one-hot matrix; parameters and attributes are those of :class:`WaveletForestRegressor`.
    Class decisions take the argmax of the M-term output, ties (within 1e-12) going to the
    lowest class index.
    """

    def fit(self, X: Any, y: Any) -> WaveletForestClassifier:
        """Fit on ``X`` (n_samples, n_features) and labels ``y`` (n_samples,)."""
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y must be a 1-D array of labels, got shape {y.shape}")
        self.classes_, codes = np.unique(y, return_inverse=True)
        onehot = np.zeros((y.shape[0], self.classes_.shape[0]))
        onehot[np.arange(y.shape[0]), codes] = 1.0
        # A single class gives one output: pass it 1-D (sklearn warns on a column vector y).
        self._fit_targets(X, onehot[:, 0] if onehot.shape[1] == 1 else onehot)
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
        return self.classes_[_tie_argmax(self._wavelet_sum(X, n_terms))]

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
