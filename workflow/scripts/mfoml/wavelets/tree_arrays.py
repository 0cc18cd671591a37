"""One regression tree as flat arrays, from scikit-learn (trees and histogram gradient boosting's
predictors) or XGBoost, for the boosted-tree
wavelets (:mod:`mfoml.wavelets.boosted_trees`): structure, split rule (``x <= t`` or
``x < t`` on float32 inputs, missing-value direction), leaf values and node weights, and the
node values ``Q_Ω`` as weighted means of the leaf values below.

The attribute names (``children_left``, ``children_right``, ``feature``, ``threshold``,
``apply``) are those of scikit-learn's ``Tree``, so the forest's structure, count and volume
helpers (:mod:`mfoml.wavelets.trees`) work on these arrays unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TreeArrays", "tree_from_hist_predictor", "tree_from_sklearn", "weighted_node_means"]


class TreeArrays:
    """One regression tree as flat arrays (node 0 is the root, -1 marks a missing child).

    Attributes
    ----------
    children_left, children_right : (n_nodes,) int64.
    feature : (n_nodes,) int64 split feature (ignored at leaves).
    threshold : (n_nodes,) float64 split value in the model's input units.
    value : (n_nodes,) float64; the leaf values (inner entries are not used).
    weight : (n_nodes,) float64 node weight c (in-bag weight or XGBoost cover).
    rule : ``"le"`` (``x <= t`` goes left, scikit-learn) or ``"lt"`` (``x < t``, XGBoost); inputs
        are compared as ``input_dtype`` values: float32 as both libraries' trees do, float64 for
        histogram gradient boosting's predictors.
    default_left : (n_nodes,) bool or None: where a NaN goes (XGBoost's missing direction).
    """

    def __init__(
        self,
        children_left: np.ndarray,
        children_right: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        value: np.ndarray,
        weight: np.ndarray,
        rule: str = "le",
        default_left: np.ndarray | None = None,
        sklearn_tree: Any = None,
        input_dtype: Any = np.float32,
    ) -> None:
        if rule not in ("le", "lt"):
            raise ValueError(f"rule must be 'le' or 'lt', got {rule!r}")
        self.children_left = np.asarray(children_left, dtype=np.int64)
        self.children_right = np.asarray(children_right, dtype=np.int64)
        self.feature = np.asarray(feature, dtype=np.int64)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.value = np.asarray(value, dtype=np.float64)
        self.weight = np.asarray(weight, dtype=np.float64)
        self.rule = rule
        self.default_left = None if default_left is None else np.asarray(default_left, dtype=bool)
        self._sklearn_tree = sklearn_tree
        self.input_dtype = np.dtype(input_dtype)

    @property
    def node_count(self) -> int:
        """Number of nodes."""
        return int(self.children_left.shape[0])

    def apply(self, X: Any) -> np.ndarray:
        """Leaf id of every row of ``X`` (n_samples, n_features); shape (n_samples,), int64.

        A scikit-learn tree answers with its own ``apply`` on float32 inputs; otherwise the
        tree is walked level by level (vectorized over samples), comparing float32 inputs with
        the thresholds; NaN follows ``default_left`` (or goes right without it).
        """
        X32 = np.ascontiguousarray(X, dtype=self.input_dtype)  # float32 unless HGB's float64
        if self._sklearn_tree is not None:
            return np.asarray(self._sklearn_tree.apply(X32), dtype=np.int64)
        left, right = self.children_left, self.children_right
        node = np.zeros(X32.shape[0], dtype=np.int64)
        active = np.flatnonzero(left[node] >= 0)
        while active.size:
            nd = node[active]
            v = X32[active, self.feature[nd]].astype(np.float64)
            t = self.threshold[nd]
            go_left = v <= t if self.rule == "le" else v < t
            if self.default_left is not None:
                miss = np.isnan(v)
                go_left[miss] = self.default_left[nd[miss]]
            node[active] = np.where(go_left, left[nd], right[nd])
            active = active[left[node[active]] >= 0]
        return node

    def scaled(self, data_min: np.ndarray, scale: np.ndarray) -> TreeArrays:
        """A copy with thresholds mapped by ``(t − min) · scale`` into ``[0, 1]`` units."""
        t = (self.threshold - data_min[np.maximum(self.feature, 0)]) * scale[
            np.maximum(self.feature, 0)
        ]
        return TreeArrays(
            self.children_left, self.children_right, self.feature, t, self.value, self.weight,
            self.rule, self.default_left, input_dtype=self.input_dtype,
        )  # fmt: skip


def tree_from_sklearn(estimator: Any) -> TreeArrays:
    """:class:`TreeArrays` of a fitted single-output ``DecisionTreeRegressor`` (``tree_``)."""
    tree = estimator.tree_
    if tree.value.shape[1] != 1 or tree.value.shape[2] != 1:
        raise ValueError(f"expected a single-output regression tree, got value {tree.value.shape}")
    return TreeArrays(
        tree.children_left, tree.children_right, tree.feature, tree.threshold,
        tree.value[:, 0, 0], tree.weighted_n_node_samples, "le", sklearn_tree=tree,
    )  # fmt: skip


def tree_from_hist_predictor(predictor: Any, where: str = "tree") -> TreeArrays:
    """:class:`TreeArrays` of one tree of a fitted ``HistGradientBoosting*`` model (an entry of
    its ``_predictors``): ``x <= num_threshold`` goes left, compared in float64 as scikit-learn
    does; NaN follows ``missing_go_to_left``; the leaf values already include the learning
    rate; the node weight is the training-sample ``count``. Categorical splits raise.
    """
    nodes = predictor.nodes
    leaf = nodes["is_leaf"].astype(bool)
    if np.any(nodes["is_categorical"][~leaf]):
        raise NotImplementedError(
            f"HistGradientBoosting {where}: categorical splits are not supported by the wavelet "
            "decomposition (fit without categorical_features)"
        )
    return TreeArrays(
        np.where(leaf, -1, nodes["left"].astype(np.int64)),
        np.where(leaf, -1, nodes["right"].astype(np.int64)),
        np.where(leaf, 0, nodes["feature_idx"].astype(np.int64)),
        np.where(leaf, 0.0, nodes["num_threshold"]),
        np.where(leaf, nodes["value"], 0.0), nodes["count"], "le",
        default_left=nodes["missing_go_to_left"].astype(bool), input_dtype=np.float64,
    )  # fmt: skip


def weighted_node_means(
    tree: TreeArrays, parent: np.ndarray, levels: list[np.ndarray]
) -> np.ndarray:
    """``Q_Ω = Σ_{leaves ℓ ⊂ Ω} c_ℓ v_ℓ / Σ c_ℓ`` for every node, shape (n_nodes,).

    Leaves keep their value; a node whose leaves all have weight 0 gets their plain mean.
    ``parent``, ``levels``: from :func:`mfoml.wavelets.trees.tree_structure`.
    """
    n = tree.node_count
    leaf = tree.children_left < 0
    c = np.where(leaf, np.maximum(tree.weight, 0.0), 0.0)
    sums = np.stack([c * np.where(leaf, tree.value, 0.0), c, leaf * 1.0, leaf * tree.value])
    for nodes in reversed(levels[1:]):
        for row in sums:
            row += np.bincount(parent[nodes], weights=row[nodes], minlength=n)
    q = np.divide(sums[0], sums[1], out=sums[3] / np.maximum(sums[2], 1.0), where=sums[1] > 0)
    q[leaf] = tree.value[leaf]
    return q
