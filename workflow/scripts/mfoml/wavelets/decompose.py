"""Fit a forest on min-max-scaled inputs and decompose it into geometric wavelets.

The core of :class:`mfoml.wavelets.base.WaveletForestBase`, kept free of scikit-learn so that
the sparsity probe with the fast builder (:mod:`mfoml.wavelets.fasttree`) never imports it:
``import sklearn.base`` alone costs about 2 CPU-s (it loads scipy.stats), more than the probe's
own work in a small job. The estimators add scikit-learn's API, the M-term order and the
importances on top (``docs/methods.md``, geometric wavelets).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mfoml.wavelets.params import FOREST_PARAMS, check_params
from mfoml.wavelets.scaling import as_2d, minmax_fit, minmax_transform
from mfoml.wavelets.trees import node_means, tree_structure, tree_wavelet_norms

__all__ = [
    "BACKENDS",
    "NORM_WEIGHTS",
    "FittedWavelets",
    "fit_decompose",
    "onehot_labels",
    "resolve_backend",
]

#: Forest builders: scikit-learn's, or the fast exact one for one-hot targets (classification).
BACKENDS = ("auto", "fast", "sklearn")
#: Wavelet norm weights: fraction of training samples in the node, or volume of its box.
NORM_WEIGHTS = ("num_samples", "volume")
#: The forest settings :func:`fit_decompose` checks on the forest it is given.
_BUILDER_PARAMS = ("n_estimators", "max_depth", "min_samples_split", "min_samples_leaf",
                   "max_features", "bootstrap", "max_samples", "random_state", "n_jobs")  # fmt: skip


def resolve_backend(backend: str, task: str) -> str:
    """The forest builder that ``backend`` selects for ``task``: ``"fast"`` or ``"sklearn"``.

    ``"auto"`` is the fast exact builder for classification (its one-hot targets are what it
    needs) and scikit-learn's for regression. Raises ``ValueError`` for an unknown name.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    return "fast" if task == "classification" else "sklearn"


@dataclass
class FittedWavelets:
    """A fitted forest and its wavelets (K non-root wavelets over all J trees).

    ``data_min``, ``scale``: (d,) min-max map of the inputs; ``forest``: the fitted forest;
    ``parents``: per tree, the (n_nodes,) parent array (``-1`` at the root); ``norms``: (K,)
    per-tree wavelet norms ordered by (tree, node id); ``tree``, ``node``, ``feature``: (K,) int64
    tree index, node id and the parent's split feature of each; ``root_mean``: (L,) mean of the
    trees' root values; ``fit_seconds``, ``decompose_seconds``: wall time of the two steps.
    """

    data_min: np.ndarray
    scale: np.ndarray
    forest: Any
    parents: list[np.ndarray]
    norms: np.ndarray
    tree: np.ndarray
    node: np.ndarray
    feature: np.ndarray
    root_mean: np.ndarray
    fit_seconds: float
    decompose_seconds: float


def onehot_labels(y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Classes and one-hot targets of labels ``y`` (n,).

    Returns ``classes`` (C,) sorted and ``targets`` (n, C) float64, or (n,) when C = 1 (one
    output, passed 1-D as scikit-learn expects).
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of labels, got shape {y.shape}")
    classes, codes = np.unique(y, return_inverse=True)
    onehot = np.zeros((y.shape[0], classes.shape[0]))
    onehot[np.arange(y.shape[0]), codes] = 1.0
    return classes, onehot[:, 0] if onehot.shape[1] == 1 else onehot


def fit_decompose(X: Any, targets: np.ndarray, forest: Any, norm_weight: str) -> FittedWavelets:
    """Scale ``X`` (n, d) into [0, 1], fit ``forest`` on (scaled X, ``targets`` (n,) or (n, L))
    and compute the norms of all its wavelets.

    ``forest`` is unfitted, with ``fit(Xs, targets)`` and, once fitted, ``estimators_`` whose
    ``tree_`` has scikit-learn's tree arrays (``RandomForestRegressor`` or
    :class:`mfoml.wavelets.fasttree.FastForestRegressor`). ``norm_weight``: ``"num_samples"`` or
    ``"volume"``. Raises ``ValueError`` for mismatched lengths and NaN/inf in X (naming the row
    and feature), and :class:`mfoml.wavelets.params.InvalidParameterError` for a forest setting
    outside :data:`mfoml.wavelets.params.FOREST_PARAMS` (also for the fast builder, which does
    not check them itself).
    """
    settings = {k: getattr(forest, k) for k in _BUILDER_PARAMS if hasattr(forest, k)}
    check_params(settings, FOREST_PARAMS, type(forest).__name__)
    if norm_weight not in NORM_WEIGHTS:
        raise ValueError(f"norm_weight must be one of {NORM_WEIGHTS}, got {norm_weight!r}")
    X = as_2d(X)
    if targets.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} samples but y has {targets.shape[0]}")
    data_min, scale = minmax_fit(X)
    Xs = minmax_transform(X, data_min, scale, check_finite=False)
    t0 = time.perf_counter()
    forest = forest.fit(Xs, targets)
    t1 = time.perf_counter()
    parents, norms, tree_idx, node_idx, features, root_means = [], [], [], [], [], []
    for t, est in enumerate(forest.estimators_):
        tree = est.tree_
        structure = tree_structure(tree)
        parent = structure[0]
        n_nodes = parent.shape[0]
        parents.append(parent)
        norms.append(tree_wavelet_norms(tree, Xs, norm_weight, structure)[1:])
        tree_idx.append(np.full(n_nodes - 1, t, dtype=np.int64))
        node_idx.append(np.arange(1, n_nodes, dtype=np.int64))
        features.append(np.asarray(tree.feature, dtype=np.int64)[parent[1:]])
        root_means.append(node_means(tree)[0])
    return FittedWavelets(
        data_min=data_min,
        scale=scale,
        forest=forest,
        parents=parents,
        norms=np.concatenate(norms),
        tree=np.concatenate(tree_idx),
        node=np.concatenate(node_idx),
        feature=np.concatenate(features),
        root_mean=np.mean(root_means, axis=0),
        fit_seconds=t1 - t0,
        decompose_seconds=time.perf_counter() - t1,
    )
