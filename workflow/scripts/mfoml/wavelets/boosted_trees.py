"""Geometric wavelets of a sum of regression trees: the core of the boosted-tree decomposition
(Morgan, Elisha & Dekel; METHODS.md section 13).

A boosted model is a *sum* ``f(x) = f0(x) + Σ_m lr · T_m(x)``: one regression tree per stage for
regression and binary log-odds, ``K`` trees per stage for ``K``-class log-odds (output ``k`` sums
the trees of class ``k``). Each tree decomposes into geometric wavelets as a forest's tree does
(``mfoml.wavelets`` forest code, METHODS sections 2-5), scaled by the learning rate:
``ψ_Ω = lr · 1_Ω (Q_Ω − Q_parent(Ω))`` for a non-root node, ``lr · Q_root`` for the root. With
``f0`` the wavelets telescope to the model's raw prediction (``decision_function``, or
``predict`` for a regressor; ``predict(output_margin=True)`` for XGBoost).

Conventions (``docs/methods.md``):

- Node values. ``Q_Ω`` is the weighted mean of the tree's leaf values over ``Ω``:
  ``Σ_{leaves ℓ ⊂ Ω} c_ℓ v_ℓ / Σ c_ℓ`` with the tree's own node weight ``c`` (scikit-learn:
  ``weighted_n_node_samples``, the in-bag sample weight; XGBoost: ``cover``, the hessian sum).
  For squared error this is scikit-learn's ``tree_.value`` (the mean residual). For log-loss
  scikit-learn replaces the leaf values by Newton steps but keeps mean residuals at inner nodes,
  so ``tree_.value`` mixes two scales; XGBoost's dump stores no inner values. Leaves keep their
  value, so the telescoping is exact whatever the inner values are.
- Scaling. scikit-learn's leaves are unscaled, the wavelets carry ``lr``; XGBoost's leaf values
  already include ``eta`` (``lr = 1`` there).
- Sum, not average: there is no ``1/J``. The wavelet norms include ``lr``; the importances are
  plain sums over all trees, and ``N_τ`` / the angle estimator use ``J = 1``.
- Per-class trees: a wavelet of a class-``k`` tree lives in output ``k`` only; it is scalar, its
  norm is ``lr · |Q_Ω − Q_parent| · sqrt(w_Ω)``, ``w_Ω = |Ω|_N / N`` (the whole training set
  passed down the tree, not the subsample) or the volume of ``Ω``'s box in the min-max-scaled
  ``[0, 1]^d``. The M-term order sorts the non-root wavelets of all stages and classes together
  (norm descending, ties by global node index); the roots and ``f0`` are always kept, so
  ``M = 0`` is the constant ``f0 + Σ_m lr Q_root(T_m)``.

scikit-learn and XGBoost expose no such decomposition, hence this module; the trees come as
:class:`~mfoml.wavelets.tree_arrays.TreeArrays`, and counts and volumes reuse the forest code.
scikit-learn models and the estimators are in :mod:`mfoml.wavelets.boosting`, XGBoost models
are read by :mod:`mfoml.wavelets.xgboost_trees`.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from scipy.special import expit, logsumexp, softmax

from mfoml.wavelets.smoothness import AlphaResult, alpha_loglog, alpha_star
from mfoml.wavelets.tree_arrays import TreeArrays, weighted_node_means
from mfoml.wavelets.trees import _node_counts, _node_volumes, tree_structure

__all__ = ["BoostedTreeWavelets"]

#: Bound on (rows x trees x path length) membership entries built at once by the curves.
_CURVE_CHUNK_ENTRIES = 2_000_000

#: Inverse links of a regression model's raw sum (the margin) to its response scale.
LINKS = {"identity": lambda r: r, "log": np.exp, "logit": expit}


class BoostedTreeWavelets:
    """Wavelet decomposition of a sum of regression trees ``f0 + Σ_t scale_t · T_t``.

    Parameters
    ----------
    trees : list of J :class:`TreeArrays` in the model's input units.
    tree_output : (J,) int, the output (class) each tree adds to.
    tree_stage : (J,) int, the boosting stage of each tree (non-decreasing).
    tree_scale : (J,) float, the factor of each tree (the learning rate; 1 for XGBoost).
    n_outputs : K, the number of raw outputs (1 for regression and binary classification).
    X_train : (N, d) the whole training set (counts for ``"num_samples"``, min-max box for
        ``"volume"``; NaN entries are ignored by the min-max).
    f0 : (K,) the constant initial raw prediction, or None with ``init_fn``.
    init_fn : callable X -> (n, K) for a non-constant initial model.
    task : ``"regression"`` or ``"classification"`` (raw outputs are log-odds).
    link : regression only: ``"identity"`` (default), ``"log"`` (Poisson, gamma, Tweedie
        objectives: the prediction is ``exp(raw)``) or ``"logit"`` (``expit(raw)``). The M-term
        curves, the staged curves and :meth:`predict` are on this response scale, as the
        model's own ``predict()``; :meth:`raw_predict` stays on the margin scale.
    norm_weight, importance_tau : as for the forest (METHODS sections 2 and 4).

    Attributes
    ----------
    wavelet_norms_ : (W,) norms of all non-root wavelets, ordered by global node index (tree by
        tree); ``wavelet_tree_``, ``wavelet_stage_``, ``wavelet_output_``, ``wavelet_node_``
        (node id within its tree) and ``wavelet_feature_`` (the parent's split feature) align.
    wavelet_order_ : (W,) argsort of the norms, descending (stable); ``sorted_norms_``.
    node_value_ : (total nodes,) Q_Ω of every node of every tree (unscaled), tree ``j``'s nodes
        starting at ``node_offset_[j]``.
    feature_importances_ : (d,) ``Σ_Ω ‖ψ_Ω‖^τ`` over wavelets whose parent splits on the feature.
    n_wavelets_, n_trees_, n_stages_, n_outputs_.
    """

    def __init__(
        self,
        trees: list[TreeArrays],
        tree_output: Any,
        tree_stage: Any,
        tree_scale: Any,
        n_outputs: int,
        X_train: Any,
        *,
        f0: Any = None,
        init_fn: Any = None,
        task: str = "regression",
        link: str = "identity",
        norm_weight: str = "num_samples",
        importance_tau: float = 1.0,
    ) -> None:
        if link not in LINKS or (task == "classification" and link != "identity"):
            raise ValueError(
                f"link must be one of {sorted(LINKS)} (regression; 'identity' for a classifier, "
                f"whose curves use the sigmoid / softmax), got {link!r}"
            )
        self.link = link
        if norm_weight not in ("num_samples", "volume"):
            raise ValueError(f"norm_weight must be 'num_samples' or 'volume', got {norm_weight!r}")
        if task not in ("regression", "classification"):
            raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
        if not (isinstance(importance_tau, numbers.Real) and importance_tau > 0):
            raise ValueError(f"importance_tau must be a positive number, got {importance_tau!r}")
        if (f0 is None) == (init_fn is None):
            raise ValueError("give exactly one of f0 (constant) and init_fn")
        if not trees:
            raise ValueError("the boosted model has no trees")
        J = len(trees)
        self.task, self.norm_weight, self.importance_tau = task, norm_weight, float(importance_tau)
        self.n_outputs_ = int(n_outputs)
        self.tree_output_ = np.asarray(tree_output, dtype=np.int64).reshape(J)
        self.tree_stage_ = np.asarray(tree_stage, dtype=np.int64).reshape(J)
        self.tree_scale_ = np.asarray(tree_scale, dtype=np.float64).reshape(J)
        if np.any(np.diff(self.tree_stage_) < 0) or self.tree_output_.max() >= n_outputs:
            raise ValueError("tree_stage must be non-decreasing and tree_output < n_outputs")
        self.f0_ = None if f0 is None else np.asarray(f0, dtype=np.float64).reshape(n_outputs)
        self._init_fn = init_fn
        self.trees_ = trees
        self.n_trees_ = J
        self.n_stages_ = int(self.tree_stage_.max()) + 1
        X = np.asarray(X_train)
        if X.ndim != 2:
            raise ValueError(f"X_train must be 2-D (n_samples, n_features), got {X.shape}")
        self.n_features_in_ = X.shape[1]
        self._decompose(X)

    # ---- decomposition -----------------------------------------------------------------------
    def _decompose(self, X: np.ndarray) -> None:
        if self.norm_weight == "volume":
            with np.errstate(invalid="ignore"):
                lo, hi = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
            rng = np.nan_to_num(hi - lo)
            scale = np.divide(1.0, rng, out=np.zeros_like(rng), where=rng > 0)
            lo = np.nan_to_num(lo)
        sizes = np.array([t.node_count for t in self.trees_], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        parents, coefs, norms, feats, levels_all, values = [], [], [], [], [], []
        for j, tree in enumerate(self.trees_):
            parent, levels = tree_structure(tree)
            q = weighted_node_means(tree, parent, levels)
            values.append(q)
            coef = q.copy()
            coef[1:] -= q[parent[1:]]
            coef *= self.tree_scale_[j]
            if self.norm_weight == "num_samples":
                w = _node_counts(tree, X, parent, levels) / X.shape[0]
            else:
                w = _node_volumes(tree.scaled(lo, scale), parent, levels)
            nrm = np.abs(coef) * np.sqrt(w)
            nrm[0] = 0.0
            off = self._offsets[j]
            parents.append(np.where(parent >= 0, parent + off, -1))
            coefs.append(coef)
            norms.append(nrm)
            feats.append(tree.feature[np.maximum(parent, 0)])
            for d, nodes in enumerate(levels):
                if d == len(levels_all):
                    levels_all.append([])
                levels_all[d].append(nodes + off)
        self._parent = np.concatenate(parents)
        self._coef = np.concatenate(coefs)
        self.node_value_ = np.concatenate(values)
        self.node_offset_ = self._offsets
        self._levels = [np.concatenate(lv) for lv in levels_all]
        n_total = self._parent.shape[0]
        node_tree = np.repeat(np.arange(self.n_trees_), sizes)
        self._node_output = self.tree_output_[node_tree]
        self._roots = self._offsets.copy()
        wav = np.flatnonzero(self._parent >= 0)
        self._wavelet_ids = wav
        self.wavelet_norms_ = np.concatenate(norms)[wav]
        self.wavelet_tree_ = node_tree[wav]
        self.wavelet_stage_ = self.tree_stage_[self.wavelet_tree_]
        self.wavelet_output_ = self._node_output[wav]
        self.wavelet_node_ = wav - self._offsets[self.wavelet_tree_]
        self.wavelet_feature_ = np.concatenate(feats)[wav]
        self.n_wavelets_ = int(wav.shape[0])
        self.wavelet_order_ = np.argsort(-self.wavelet_norms_, kind="stable")
        self.sorted_norms_ = self.wavelet_norms_[self.wavelet_order_]
        self._rank = np.full(n_total, -1, dtype=np.int64)  # roots: -1, always kept
        self._rank[wav[self.wavelet_order_]] = np.arange(self.n_wavelets_)
        self.feature_importances_ = np.bincount(
            self.wavelet_feature_,
            weights=self.wavelet_norms_**self.importance_tau,
            minlength=self.n_features_in_,
        )
        # Leaf values (scaled) for the direct, non-wavelet evaluation of stages.
        self._leaf_value = np.concatenate(
            [
                np.where(t.children_left < 0, t.value, 0.0) * s
                for t, s in zip(self.trees_, self.tree_scale_, strict=True)
            ]
        )

    # ---- evaluation --------------------------------------------------------------------------
    def init_raw(self, X: Any) -> np.ndarray:
        """``f0(X)``, shape (n_samples, K), float64 (a fresh array)."""
        n = np.shape(X)[0]
        if self.f0_ is not None:
            return np.tile(self.f0_, (n, 1))
        return np.array(self._init_fn(X), dtype=np.float64).reshape(n, self.n_outputs_)

    def leaves(self, X: Any) -> np.ndarray:
        """Global leaf index of every (sample, tree), shape (n_samples, J), int64."""
        out = np.empty((np.shape(X)[0], self.n_trees_), dtype=np.int64)
        for j, tree in enumerate(self.trees_):
            out[:, j] = tree.apply(X) + self._offsets[j]
        return out

    def resolve_n_terms(self, n_terms: int | str | None) -> int:
        """M as an int in [0, W]: an int (clipped), ``"all"`` or None (all)."""
        if n_terms is None or (isinstance(n_terms, str) and n_terms == "all"):
            return self.n_wavelets_
        if not isinstance(n_terms, numbers.Integral) or isinstance(n_terms, bool) or n_terms < 0:
            raise ValueError(f"n_terms must be a non-negative integer or 'all', got {n_terms!r}")
        return int(min(n_terms, self.n_wavelets_))

    def raw_predict(self, X: Any, n_terms: int | str | None = None) -> np.ndarray:
        """M-term raw prediction ``f0 + Σ_{roots} + Σ_{top-M wavelets} ψ``, shape (n, K).

        Path sums of the kept coefficients are accumulated top-down over depth levels, so each
        sample needs one lookup per tree.
        """
        M = self.resolve_n_terms(n_terms)
        s = np.where(self._rank < M, self._coef, 0.0)
        for nodes in self._levels[1:]:
            s[nodes] += s[self._parent[nodes]]
        leaves = self.leaves(X)
        out = self.init_raw(X)
        for k in range(self.n_outputs_):
            out[:, k] += s[leaves[:, self.tree_output_ == k]].sum(axis=1)
        return out

    def predict(self, X: Any, n_terms: int | str | None = None) -> np.ndarray:
        """M-term prediction on the response scale (the inverse link of :meth:`raw_predict`),
        shape (n, K); a classifier's raw log-odds are returned unchanged."""
        return LINKS[self.link](self.raw_predict(X, n_terms))

    def threshold_for(self, n_terms: np.ndarray) -> np.ndarray:
        """Norm of the M-th wavelet for each M (inf for M = 0), shape like ``n_terms``."""
        n_terms = np.asarray(n_terms, dtype=np.int64)
        thr = np.full(n_terms.shape, np.inf)
        pos = n_terms > 0
        thr[pos] = self.sorted_norms_[n_terms[pos] - 1]
        return thr

    def check_n_terms_grid(self, n_terms: Any) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique M values (clipped to W) and the inverse map back to ``n_terms``;
        None = every M in 0..W."""
        if n_terms is None:
            grid = np.arange(self.n_wavelets_ + 1, dtype=np.int64)
            return grid, np.arange(grid.shape[0])
        grid = np.atleast_1d(np.asarray(n_terms))
        if grid.ndim != 1 or not np.issubdtype(grid.dtype, np.integer) or np.any(grid < 0):
            raise ValueError("n_terms must be a 1-D array of non-negative integers")
        uniq, inverse = np.unique(
            np.minimum(grid.astype(np.int64), self.n_wavelets_), return_inverse=True
        )
        return uniq, inverse

    def _scores(self, raw: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-sample losses: (3, n) for classification (wrong, log loss, Brier), else (1, n).

        A class code of -1 (a label the model never saw) is always wrong and its Brier target is
        the zero vector; its log loss (infinite) is entered as 0 here and made infinite by
        :meth:`_summary`, so that differences of scores stay finite.
        """
        if self.task == "regression":
            pred = LINKS[self.link](raw)
            sq = np.sum((pred - y.reshape(raw.shape[0], -1)) ** 2, axis=1, keepdims=True)
            return sq.T / raw.shape[1]
        known = y >= 0
        yk = np.where(known, y, 0)
        if raw.shape[1] == 1:
            r = raw[:, 0]
            wrong = (r >= 0).astype(np.int64) != y
            logloss = np.logaddexp(0.0, r) - yk * r
            p1 = expit(r)
            brier = np.where(known, (p1 - yk) ** 2, (p1**2 + (1.0 - p1) ** 2) / 2.0)
        else:
            idx = np.arange(raw.shape[0])
            wrong = np.argmax(raw, axis=1) != y
            logloss = logsumexp(raw, axis=1) - raw[idx, yk]
            p = softmax(raw, axis=1)
            p[idx[known], yk[known]] -= 1.0
            brier = np.mean(p**2, axis=1)
        logloss[~known] = 0.0
        return np.stack([wrong.astype(np.float64), logloss, brier])

    def _n_unknown(self, y: np.ndarray) -> int:
        return 0 if self.task == "regression" else int(np.sum(y < 0))

    def _summary(self, totals: np.ndarray, n: int, n_unknown: int = 0) -> dict[str, np.ndarray]:
        if self.task == "regression":
            return {"mse": totals[:, 0] / n}
        log_loss = totals[:, 1] / n if n_unknown == 0 else np.full(totals.shape[0], np.inf)
        return {"error": totals[:, 0] / n, "log_loss": log_loss, "mse": totals[:, 2] / n}

    def _check_y(self, y: Any, n: int) -> np.ndarray:
        y = np.asarray(y)
        if self.task == "classification":
            n_classes = max(self.n_outputs_, 2)
            if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"y must be integer class codes of shape ({n},), got {y.shape}")
            if y.size and (y.min() < -1 or y.max() >= n_classes):
                raise ValueError(
                    f"class codes must lie in [0, {n_classes}) (or be -1 for an unknown label), "
                    f"got {y.min()}..{y.max()}"
                )
            return y.astype(np.int64)
        y = np.asarray(y, dtype=np.float64)
        if y.reshape(n, -1).shape[1] != self.n_outputs_:
            raise ValueError(f"y has shape {y.shape}, expected ({n},) or ({n}, {self.n_outputs_})")
        return y

    def mterm_curve(self, X: Any, y: Any, n_terms: Any = None) -> dict[str, np.ndarray]:
        """Errors of the M-term model on (X, y) for many M at once.

        Independent of :meth:`raw_predict`: every (sample, node) pair of the decision paths is
        an entry. Each sample's entries are ordered by wavelet rank and laid out along a
        "position in its path" axis; a cumulative sum along it gives the sample's raw prediction
        after every entry, so the change of its score is known at the last entry of each grid
        bucket (the entries first included at one M of the grid) and is binned there; a
        cumulative sum over the buckets gives the errors at every M, in O(entries · K) for the
        whole curve with no loop over M (the forest's algorithm, ``mfoml.wavelets.base``).

        Parameters
        ----------
        X : (n, d); y : targets (n,) / (n, K), or class codes (n,) in [0, n_classes) (-1: a
            label the model never saw, always an error).
        n_terms : 1-D integer array of M (clipped to W); None = 0..W.

        Returns
        -------
        dict of (T,) arrays aligned with ``n_terms`` (its values clipped to W): ``n_terms``,
        ``threshold`` (norm of the M-th wavelet), and ``mse``
        (regression: mean squared error over samples and outputs of the response, the inverse
        ``link`` of the raw sum, as the model's ``predict()``), or for classification
        ``error`` (misclassification rate; binary: class 1 iff raw >= 0, else argmax),
        ``log_loss`` (mean cross-entropy of the softmax / sigmoid; infinite when a label was
        never seen in fit) and ``mse`` (the Brier score: squared error of the class
        probabilities to one-hot, mean over samples and classes).
        """
        grid, inverse = self.check_n_terms_grid(n_terms)
        n = np.shape(X)[0]
        y = self._check_y(y, n)
        K, T = self.n_outputs_, grid.shape[0]
        width = self.n_trees_ * len(self._levels)  # bound on entries per sample
        chunk = max(1, _CURVE_CHUNK_ENTRIES // (width * K))
        n_rows = 1 if self.task == "regression" else 3
        delta = np.zeros((T + 1, n_rows))
        base_total = np.zeros(n_rows)
        for start in range(0, n, chunk):
            Xb, yb = X[start : start + chunk], y[start : start + chunk]
            m = Xb.shape[0]
            rows, nodes = self._path_entries(self.leaves(Xb))
            base = self.init_raw(Xb)
            root = self._parent[nodes] < 0
            np.add.at(base, (rows[root], self._node_output[nodes[root]]), self._coef[nodes[root]])
            base_scores = self._scores(base, yb)
            base_total += base_scores.sum(axis=1)
            rows, nodes = rows[~root], nodes[~root]
            bucket = np.searchsorted(grid, self._rank[nodes], side="right")  # M > rank
            use = bucket < T  # entries beyond the largest M never count
            rows, nodes, bucket = rows[use], nodes[use], bucket[use]
            if rows.size == 0:
                continue
            order = np.lexsort((self._rank[nodes], rows))  # by sample, then by rank
            rows, nodes, bucket = rows[order], nodes[order], bucket[order]
            counts = np.bincount(rows, minlength=m)
            pos = np.arange(rows.size) - (np.cumsum(counts) - counts)[rows]
            path = np.zeros((int(counts.max()), m, K))
            path[pos, rows, self._node_output[nodes]] = self._coef[nodes]
            np.cumsum(path, axis=0, out=path)
            # the last entry of each (sample, bucket) run
            last = np.ones(rows.size, dtype=bool)
            last[:-1] = (rows[1:] != rows[:-1]) | (bucket[1:] != bucket[:-1])
            idx = np.flatnonzero(last)
            r_rows, r_bucket = rows[idx], bucket[idx]
            after = self._scores(base[r_rows] + path[pos[idx], r_rows], yb[r_rows])
            before = np.empty_like(after)
            before[:, 1:] = after[:, :-1]
            first = np.ones(idx.size, dtype=bool)
            first[1:] = r_rows[1:] != r_rows[:-1]
            before[:, first] = base_scores[:, r_rows[first]]
            for i in range(n_rows):
                delta[:, i] += np.bincount(r_bucket, weights=after[i] - before[i], minlength=T + 1)
        totals = base_total + np.cumsum(delta, axis=0)[:T]
        out = {"n_terms": grid, "threshold": self.threshold_for(grid)}
        out.update(self._summary(totals, n, self._n_unknown(y)))
        return {k: v[inverse] for k, v in out.items()}

    def _path_entries(self, leaves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sample, global node) of every node on every decision path, roots included."""
        n = leaves.shape[0]
        cur = leaves.ravel()
        r = np.repeat(np.arange(n), self.n_trees_)
        rows, cols = [], []
        while cur.size:
            rows.append(r)
            cols.append(cur)
            p = self._parent[cur]
            keep = p >= 0
            cur, r = p[keep], r[keep]
        return np.concatenate(rows), np.concatenate(cols)

    def staged_curve(self, X: Any, y: Any) -> dict[str, np.ndarray]:
        """Errors of the first s stages (all their wavelets), s = 0..S (0: ``f0`` alone).

        Evaluated from the (scaled) leaf values, not from the wavelets. Returns ``n_stages``
        (S+1,), ``n_wavelets`` (S+1,) the number of non-root wavelets of those stages, and the
        error arrays of :meth:`mterm_curve`.
        """
        n = np.shape(X)[0]
        y = self._check_y(y, n)
        leaves = self.leaves(X)
        pred = self.init_raw(X)
        rows = [self._scores(pred, y).sum(axis=1)]
        for s in range(self.n_stages_):
            for j in np.flatnonzero(self.tree_stage_ == s):
                pred[:, self.tree_output_[j]] += self._leaf_value[leaves[:, j]]
            rows.append(self._scores(pred, y).sum(axis=1))
        per_stage = np.bincount(self.wavelet_stage_, minlength=self.n_stages_)
        out = {
            "n_stages": np.arange(self.n_stages_ + 1),
            "n_wavelets": np.concatenate([[0], np.cumsum(per_stage)]),
        }
        out.update(self._summary(np.array(rows), n, self._n_unknown(y)))
        return out

    def select_n_terms(
        self, X_val: Any, y_val: Any, n_terms: Any = None, metric: str | None = None
    ) -> tuple[int, float]:
        """The smallest M minimizing the validation ``metric`` and the norm of its M-th wavelet.

        ``metric``: ``"mse"`` (regression default), ``"error"`` (classification default),
        ``"log_loss"``.
        """
        metric = metric or ("mse" if self.task == "regression" else "error")
        curve = self.mterm_curve(X_val, y_val, self.check_n_terms_grid(n_terms)[0])  # sorted
        if metric not in curve:
            raise ValueError(f"metric {metric!r} not available for {self.task}")
        err = curve[metric]
        best = int(np.flatnonzero(err <= err.min())[0])
        return int(curve["n_terms"][best]), float(curve["threshold"][best])

    def smoothness(
        self, method: str = "angle", X: Any = None, y: Any = None, **kwargs: Any
    ) -> AlphaResult:
        """Besov smoothness of the boosted model (METHODS section 5 with J = 1: a sum).

        ``method``: ``"angle"``, ``"angle_true_derivative"``, ``"norms"`` (on
        ``wavelet_norms_``) or ``"loglog"`` (M-term ``mse`` on (X, y), normally the training
        data; the Brier score for a classifier). ``kwargs`` go to the estimator.
        """
        if method == "loglog":
            if X is None or y is None:
                raise ValueError("the loglog estimator needs X and y")
            return alpha_loglog(_LoglogView(self), X, y, **kwargs)
        return alpha_star(self.wavelet_norms_, 1, method=method, **kwargs)


class _LoglogView:
    """What :func:`alpha_loglog` reads from a forest, for a boosted model (one summed model)."""

    def __init__(self, wav: BoostedTreeWavelets) -> None:
        self.n_wavelets_ = wav.n_wavelets_
        self.wavelet_norms_ = wav.wavelet_norms_
        self.mterm_curve = wav.mterm_curve
        self.forest_ = type("_OneModel", (), {"estimators_": [wav]})()
