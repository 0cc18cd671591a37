"""A fast, exact fit of scikit-learn's regression forest on one-hot targets (the probe's forest).

The sparsity probe and the wavelet classifiers fit ``RandomForestRegressor(criterion=
"squared_error")`` on one-hot class vectors with all features considered at every split.
scikit-learn sorts every feature's values again at every node (about ``N log N x d`` per tree
level, reading ``X`` row by row for each feature) and that fit is almost all of the probe's
time. Here every feature's nonzero values are sorted once per tree (``cart_presort``) and each
node's sorted ranges are partitioned stably into the children, so a level costs about ``N x d``
sequential steps with O(1) updates of the squared-error sums per sample (``cart_kernels``); the
zeros of a feature (most of a ReLU layer) are never stored, sorted or walked: the split search
crosses them as one block, from the node's totals. No maintained library does this with
scikit-learn's split rule: histogram-based trees (xgboost, LightGBM, scikit-learn's HistGradient*)
bin the features and give different splits, which would change the wavelets.

The result is scikit-learn's forest, not an approximation:

- the split criterion is scikit-learn's ``MSE`` proxy, bit for bit (with integer bootstrap
  weights and one-hot targets every sum is an integer, so the O(1) updates are exact); thresholds
  are scikit-learn's midpoints ``v_lo / 2 + v_hi / 2`` in float64 of the float32 inputs, with its
  ``FEATURE_THRESHOLD`` rule for distinct values; leaf rules (``max_depth``, ``min_samples_split``,
  ``min_samples_leaf``, ``min_weight_fraction_leaf``, ``min_impurity_decrease``) as in its
  depth-first builder; node values, impurities and counts as in ``Tree``;
- the per-tree seeds (``random_state.randint(MAX_INT)`` per estimator), the bootstrap draws
  (``RandomState(seed).randint(0, N, n_bootstrap)`` as counts = sample weights) and the
  splitter's ``rand_r`` feature order are scikit-learn's, so ties between features are broken
  the same way: the trees are equal to ``RandomForestRegressor``'s (tested array by array, also
  on data with many ties).

Use :class:`FastForestRegressor` where ``RandomForestRegressor`` was used; its ``estimators_``
carry a ``tree_`` with the attributes and methods the wavelet decomposition reads
(``children_left``, ``children_right``, ``feature``, ``threshold``, ``value``, ``impurity``,
``n_node_samples``, ``weighted_n_node_samples``, ``node_count``, ``max_depth``, ``apply``,
``decision_path``, ``predict``). Targets must be one-hot rows (classification); anything else
is refused with a message naming the scikit-learn backend.
"""

from __future__ import annotations

import numbers
import os
import time
from typing import Any

import numpy as np

__all__ = ["FastForestRegressor", "FastTree", "FastTreeRegressor", "onehot_codes", "preload"]

MAX_INT = int(np.iinfo(np.int32).max)
#: Nodes with fewer than this many (samples x features) entries are processed by one thread.
PARALLEL_MIN_WORK = 1 << 18
#: Bytes of each of the two dense-block buffers (nodes up to ARENA_BYTES / (6 d) samples).
ARENA_BYTES = 8 << 20


def onehot_codes(y: Any) -> tuple[np.ndarray, int]:
    """Class codes of one-hot rows.

    Parameters
    ----------
    y : array of shape (n_samples, L) with exactly one 1 per row and zeros elsewhere, or
        (n_samples,) of ones (the single-class case, ``L = 1``).

    Returns
    -------
    codes : ndarray (n_samples,), int32, in ``[0, L)``;  L : number of outputs.
    """
    y = np.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] == 0:
        raise ValueError(f"y must be a non-empty (n_samples, n_outputs) array, got {y.shape}")
    codes = np.argmax(y, axis=1).astype(np.int32)
    ok = (
        (y.sum(axis=1) == 1)
        & (y[np.arange(y.shape[0]), codes] == 1)
        & ((y == 0) | (y == 1)).all(axis=1)
    )
    if not ok.all():
        raise ValueError(
            "the fast tree backend needs one-hot targets (one 1 per row, zeros elsewhere); "
            f"row {int(np.flatnonzero(~ok)[0])} is not one-hot: use backend='sklearn' for "
            "regression targets"
        )
    return codes, int(y.shape[1])


def _check_random_state(seed: Any) -> np.random.RandomState:
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral):
        return np.random.RandomState(int(seed))
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"random_state must be None, an int or a RandomState, got {seed!r}")


def _n_threads(n_jobs: int | None) -> int:
    """Threads for ``n_jobs`` (None: 1; negative: all cores but ``-n_jobs - 1``).

    With more than one thread, numba's ``workqueue`` threading layer is selected (unless
    ``NUMBA_THREADING_LAYER`` is set): its workers sleep between the short parallel regions of
    a tree fit, whereas OpenMP's spin-waiting halves the speed when the cores are shared with
    other jobs (measured on a loaded 2-core machine).
    """
    import numba

    top = int(numba.config.NUMBA_NUM_THREADS)
    if n_jobs is None:
        return 1
    if n_jobs < 0:
        n = max(1, min(top, (os.cpu_count() or 1) + 1 + n_jobs))
    else:
        n = max(1, min(top, int(n_jobs)))
    if n > 1 and "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"
    return n


def _as_float32(X: Any, check_finite: bool = False, keep_half: bool = False) -> np.ndarray:
    """:func:`mfoml.wavelets.cart_presort.as_float32` (numba loaded on first use)."""
    from mfoml.wavelets.cart_presort import as_float32

    return as_float32(X, check_finite, keep_half)


class FastTree:
    """Array form of a fitted tree, with the attributes of ``sklearn.tree._tree.Tree``.

    Attributes
    ----------
    children_left, children_right, feature : (node_count,) int64 (leaves: -1, -1, -2)
    threshold : (node_count,) float64 (leaves: -2); ``x[feature] <= threshold`` goes left.
    impurity, weighted_n_node_samples : (node_count,) float64
    n_node_samples : (node_count,) int64, distinct training samples (positive weight) per node.
    missing_go_to_left : (node_count,) uint8 (scikit-learn's value for data without NaN).
    value : (node_count, n_outputs, 1) float64, the weighted mean target of the node.
    node_count, capacity, max_depth, n_leaves, n_features, n_outputs, max_n_classes : ints;
    n_classes : (n_outputs,) ones (a regression tree).
    """

    def __init__(self, arrays: tuple, n_features: int) -> None:
        ints, floats, mgl, value, depth = arrays
        self.children_left = np.ascontiguousarray(ints[:, 0])
        self.children_right = np.ascontiguousarray(ints[:, 1])
        self.feature = np.ascontiguousarray(ints[:, 2])
        self.threshold = np.ascontiguousarray(floats[:, 0])
        self.impurity = np.ascontiguousarray(floats[:, 1])
        self.n_node_samples = np.ascontiguousarray(ints[:, 3])
        self.weighted_n_node_samples = np.ascontiguousarray(floats[:, 2])
        self.missing_go_to_left = mgl
        self.value = value[:, :, None]
        self.node_count = int(ints.shape[0])
        self.capacity = self.node_count
        self.max_depth = int(depth)
        self.n_leaves = int(np.sum(self.children_left == -1))
        self.n_features = int(n_features)
        self.n_outputs = int(value.shape[1])
        self.n_classes = np.ones(self.n_outputs, dtype=np.intp)
        self.max_n_classes = 1

    def _X(self, X: Any) -> np.ndarray:
        X = _as_float32(X)
        if X.shape[1] != self.n_features:
            raise ValueError(
                f"X has {X.shape[1]} features, the tree was fitted on {self.n_features}"
            )
        return X

    def apply(self, X: Any) -> np.ndarray:
        """Leaf id of each row of ``X`` (n_samples, n_features); shape (n_samples,), int64."""
        from mfoml.wavelets.cart_kernels import apply_tree

        return apply_tree(
            self._X(X), self.children_left, self.children_right, self.feature, self.threshold
        )

    def decision_path(self, X: Any) -> Any:
        """CSR indicator (n_samples, node_count) of the nodes on each row's path (root first)."""
        from scipy.sparse import csr_matrix

        from mfoml.wavelets.cart_kernels import decision_paths

        indptr, indices = decision_paths(
            self._X(X), self.children_left, self.children_right, self.feature, self.threshold
        )
        data = np.ones(indices.shape[0], dtype=np.intp)
        return csr_matrix((data, indices, indptr), shape=(indptr.shape[0] - 1, self.node_count))

    def predict(self, X: Any) -> np.ndarray:
        """Node values of the leaves, shape (n_samples, n_outputs, 1) as ``Tree.predict``."""
        return self.value.take(self.apply(X), axis=0)

    def compute_feature_importances(self, normalize: bool = True) -> np.ndarray:
        """Impurity-decrease importances (scikit-learn's mean decrease in impurity)."""
        inner = np.flatnonzero(self.children_left >= 0)
        wi = self.weighted_n_node_samples * self.impurity
        gain = wi[inner] - wi[self.children_left[inner]] - wi[self.children_right[inner]]
        imp = np.bincount(self.feature[inner], weights=gain, minlength=self.n_features)
        imp /= self.weighted_n_node_samples[0]
        if normalize and imp.sum() > 0:
            imp /= imp.sum()
        return imp


class FastTreeRegressor:
    """One fitted tree of a :class:`FastForestRegressor` (``tree_``, ``random_state``)."""

    def __init__(self, tree: FastTree, random_state: int, n_outputs: int) -> None:
        self.tree_ = tree
        self.random_state = random_state
        self.n_outputs_ = n_outputs
        self.n_features_in_ = tree.n_features

    def apply(self, X: Any) -> np.ndarray:
        return self.tree_.apply(X)

    def decision_path(self, X: Any) -> Any:
        return self.tree_.decision_path(X)

    def predict(self, X: Any) -> np.ndarray:
        out = self.tree_.predict(X)[:, :, 0]
        return out[:, 0] if self.n_outputs_ == 1 else out

    @property
    def feature_importances_(self) -> np.ndarray:
        return self.tree_.compute_feature_importances()


def fit_tree(
    X: np.ndarray,
    codes: np.ndarray,
    n_classes: int,
    sample_weight: np.ndarray,
    seed: int,
    *,
    max_depth: int,
    min_samples_split: int,
    min_samples_leaf: int,
    min_weight_leaf: float,
    max_features: int,
    min_impurity_decrease: float,
    n_threads: int,
) -> FastTree:
    """Fit one tree as ``DecisionTreeRegressor(random_state=seed)._fit`` would.

    Parameters
    ----------
    X : (N, d) float32 or float16 (at most SMALL_N rows), C-contiguous;  codes : (N,) int32
        classes in ``[0, n_classes)``;
    sample_weight : (N,) float64 non-negative integer-valued weights (bootstrap counts or ones);
    seed : the tree's integer ``random_state``; the other settings are scikit-learn's resolved
        values (``max_depth`` an int, ``min_samples_split >= 2 * min_samples_leaf``).
    """
    from mfoml.wavelets.cart_build import build_tree
    from mfoml.wavelets.cart_kernels import RAND_R_MAX
    from mfoml.wavelets.cart_presort import presort

    samples = np.flatnonzero(sample_weight != 0.0)
    n = int(samples.shape[0])
    d = X.shape[1]
    order, vals, nz = presort(X, samples, n_threads)
    m_dense = int(max(2, min(n, ARENA_BYTES // (6 * d))))
    arenas = tuple(np.empty(d * m_dense, dtype=dt) for dt in (order.dtype, np.float32) * 2)
    state = np.array([np.random.RandomState(seed).randint(0, RAND_R_MAX)], dtype=np.int64)
    limits = np.array(
        [
            n_classes,
            sample_weight.sum(),
            max_depth,
            min_samples_split,
            min_samples_leaf,
            min_weight_leaf,
            max_features,
            min_impurity_decrease,
        ],
        dtype=np.float64,
    )
    codes_n = np.ascontiguousarray(codes[samples], dtype=np.uint32)
    wts_n = np.ascontiguousarray(sample_weight[samples], dtype=np.float64)
    args = (order.reshape(-1), vals.reshape(-1), nz, n, codes_n, wts_n, limits, state)
    arrays = build_tree(*args, PARALLEL_MIN_WORK, int(n_threads), m_dense, arenas)
    return FastTree(arrays, d)


class FastForestRegressor:
    """``RandomForestRegressor(criterion="squared_error")`` on one-hot targets, fitted fast.

    Same parameters and defaults as scikit-learn's (``max_leaf_nodes``, ``oob_score``,
    ``warm_start``, ``ccp_alpha``, ``monotonic_cst`` and sample weights are not offered).
    ``n_jobs`` is the number of threads used inside each tree fit (None: one).

    Attributes
    ----------
    estimators_ : list of :class:`FastTreeRegressor`;  n_features_in_, n_outputs_ : ints;
    fit_seconds_ : wall time of the fit; ``backend`` : ``"fast"``.
    """

    backend = "fast"

    def __init__(
        self,
        n_estimators: int = 100,
        *,
        max_depth: int | None = None,
        min_samples_split: int | float = 2,
        min_samples_leaf: int | float = 1,
        min_weight_fraction_leaf: float = 0.0,
        max_features: int | float | str | None = 1.0,
        min_impurity_decrease: float = 0.0,
        bootstrap: bool = True,
        max_samples: int | float | None = None,
        random_state: int | np.random.RandomState | None = None,
        n_jobs: int | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.min_weight_fraction_leaf = min_weight_fraction_leaf
        self.max_features = max_features
        self.min_impurity_decrease = min_impurity_decrease
        self.bootstrap = bootstrap
        self.max_samples = max_samples
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _resolved(self, n_samples: int, n_features: int) -> dict[str, Any]:
        """scikit-learn's ``BaseDecisionTree._fit`` resolution of the size parameters."""
        msl = self.min_samples_leaf
        msl = int(msl) if isinstance(msl, numbers.Integral) else int(np.ceil(msl * n_samples))
        mss = self.min_samples_split
        if isinstance(mss, numbers.Integral):
            mss = int(mss)
        else:
            mss = max(2, int(np.ceil(mss * n_samples)))
        mf = self.max_features
        if mf is None:
            mf = n_features
        elif isinstance(mf, str):
            if mf not in ("sqrt", "log2"):
                raise ValueError(
                    f"max_features must be None, an int, a float, 'sqrt' or 'log2'; got {mf!r}"
                )
            mf = max(1, int(np.sqrt(n_features) if mf == "sqrt" else np.log2(n_features)))
        elif isinstance(mf, numbers.Integral):
            mf = int(mf)
        else:
            mf = max(1, int(mf * n_features)) if mf > 0 else 0
        if msl < 1 or mss < 2 or mf < 1:
            raise ValueError(
                f"need min_samples_leaf >= 1, min_samples_split >= 2 and max_features >= 1; "
                f"got {msl}, {mss}, {mf}"
            )
        return {
            "max_depth": MAX_INT if self.max_depth is None else int(self.max_depth),
            "min_samples_split": max(mss, 2 * msl),
            "min_samples_leaf": msl,
            "max_features": mf,
            "min_impurity_decrease": float(self.min_impurity_decrease),
        }

    def _n_bootstrap(self, n_samples: int) -> int:
        ms = self.max_samples
        if ms is None:
            return n_samples
        if isinstance(ms, numbers.Integral):
            return int(ms)
        return max(int(ms * n_samples), 1)

    def fit(self, X: Any, y: Any) -> FastForestRegressor:
        """Fit on ``X`` (n_samples, n_features), any real dtype (used as float32 like
        scikit-learn), and one-hot ``y`` (n_samples, L) (or a vector of ones)."""
        import numba

        t0 = time.perf_counter()
        X = _as_float32(X, check_finite=True, keep_half=True)
        codes, n_outputs = onehot_codes(y)
        n_samples, n_features = X.shape
        if codes.shape[0] != n_samples:
            raise ValueError(f"X has {n_samples} samples but y has {codes.shape[0]}")
        if not self.bootstrap and self.max_samples is not None:
            raise ValueError("max_samples needs bootstrap=True")
        params = self._resolved(n_samples, n_features)
        rs = _check_random_state(self.random_state)
        seeds = [int(rs.randint(MAX_INT)) for _ in range(int(self.n_estimators))]
        n_boot = self._n_bootstrap(n_samples)
        n_threads = _n_threads(self.n_jobs)
        from mfoml.wavelets.cart_presort import SMALL_N

        _ready(False)  # the kernels for trees on up to SMALL_N distinct samples
        if n_samples > SMALL_N:
            _ready(True)
        old_threads = numba.get_num_threads()
        numba.set_num_threads(n_threads)
        try:
            self.estimators_ = []
            for seed in seeds:
                if self.bootstrap:
                    idx = np.random.RandomState(seed).randint(0, n_samples, n_boot)
                    weight = np.bincount(idx.astype(np.int32), minlength=n_samples).astype(
                        np.float64
                    )
                else:
                    weight = np.ones(n_samples)
                min_weight_leaf = float(self.min_weight_fraction_leaf) * float(weight.sum())
                tree = fit_tree(
                    X,
                    codes,
                    n_outputs,
                    weight,
                    seed,
                    min_weight_leaf=min_weight_leaf,
                    n_threads=n_threads,
                    **params,
                )
                self.estimators_.append(FastTreeRegressor(tree, seed, n_outputs))
        finally:
            numba.set_num_threads(old_threads)
        self.n_features_in_ = n_features
        self.n_outputs_ = n_outputs
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Mean of the trees' predictions: (n_samples, n_outputs), or (n_samples,) if one output."""
        X = _as_float32(X)
        out = np.zeros((X.shape[0], self.n_outputs_))
        for est in self.estimators_:
            out += est.tree_.predict(X)[:, :, 0]
        out /= len(self.estimators_)
        return out[:, 0] if self.n_outputs_ == 1 else out

    def apply(self, X: Any) -> np.ndarray:
        """Leaf ids, shape (n_samples, n_estimators)."""
        X = _as_float32(X)
        return np.stack([est.tree_.apply(X) for est in self.estimators_], axis=1)

    @property
    def feature_importances_(self) -> np.ndarray:
        """scikit-learn's impurity-based importances (mean over trees, normalized)."""
        imps = [e.feature_importances_ for e in self.estimators_ if e.tree_.node_count > 1]
        if not imps:
            return np.zeros(self.n_features_in_)
        mean = np.mean(imps, axis=0)
        return mean / mean.sum()


#: position widths (large: uint32 positions, more than SMALL_N samples) ready in this process
_READY: set[bool] = set()


def _ready(large: bool) -> None:
    """Load the builder's kernels (or compile and cache them) once per process and position
    width, under :func:`~mfoml.wavelets.kernel_cache.cache_lock`, after launching numba's
    threading layer: fits of a tiny tree (more than SMALL_N samples if ``large``) on float32
    and float16 data, their ``apply`` and a ``decision_path``.
    :mod:`mfoml.wavelets.kernel_cache` says why."""
    if large in _READY:
        return
    from mfoml.wavelets import kernel_cache
    from mfoml.wavelets.cart_build import build_tree
    from mfoml.wavelets.cart_presort import SMALL_N

    kernel_cache.launch_threading_layer()
    n = SMALL_N + 4 if large else 4
    X = np.repeat(np.float32([[1.0, 0.0], [0.0, 1.0]]), [n // 2, n - n // 2], axis=0)
    codes = (X[:, 0] == 0.0).astype(np.int32)
    params = FastForestRegressor(1, max_features=None)._resolved(n, 2)
    with kernel_cache.cache_lock(build_tree):
        # both presorts and the float16 widening in apply (above SMALL_N, fits widen float16)
        for x in (X,) if large else (X, X.astype(np.float16)):
            tree = fit_tree(x, codes, 2, np.ones(n), 0, min_weight_leaf=0.0, n_threads=1, **params)
            tree.apply(x)
        tree.decision_path(X)
    _READY.add(large)


def preload() -> None:
    """Load numba's CPU target and the builder's kernels now, as a process's first fit would
    (:func:`_ready`; about 0.3 s with a filled cache). This launches numba's threading layer
    (the default ``omp`` starts no thread, ``workqueue`` starts its threads), fixed from then
    on for the process and its forks (:mod:`mfoml.wavelets.kernel_cache`)."""
    _ready(False)
