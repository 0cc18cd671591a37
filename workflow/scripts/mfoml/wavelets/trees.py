"""Per-tree structure and geometric-wavelet norms of a fitted scikit-learn regression tree.

For every non-root node ``Ω`` the wavelet is ``ψ_Ω = 1_Ω (Q_Ω − Q_parent(Ω))`` with norm
``‖Q_Ω − Q_parent‖_2 · sqrt(w_Ω)``, ``w_Ω`` the fraction of training samples in ``Ω``
(``"num_samples"``) or the volume of its box in ``[0, 1]^d`` (``"volume"``); see
``docs/methods.md`` (geometric wavelets). Also the tie-aware argmax used by the classifier.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["node_means", "tie_argmax", "tie_argmax_rows", "tree_structure", "tree_wavelet_norms"]

#: Scores within this absolute tolerance of the row maximum count as ties (lowest class wins).
_TIE_TOL = 1e-12


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


def node_means(tree: Any) -> np.ndarray:
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
    q = node_means(tree)
    diff = q.copy()
    diff[1:] -= q[parent[1:]]
    norms = np.sqrt(np.einsum("ij,ij->i", diff, diff) * weight)
    norms[0] = 0.0
    return norms


def tie_argmax(scores: np.ndarray, tol: float = _TIE_TOL) -> np.ndarray:
    """Row-wise argmax where scores within ``tol`` of the row maximum tie (lowest index wins)."""
    top = scores.max(axis=1, keepdims=True)
    return np.argmax(scores >= top - tol, axis=1)


def tie_argmax_rows(scores_t: np.ndarray, tol: float = _TIE_TOL) -> np.ndarray:
    """:func:`tie_argmax` of the columns of ``scores_t`` (L, n), with passes over rows."""
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
