"""Seeded subsets of a training split: a per-class cap and a stratified subsample.

The one implementation used by the data sources (``per_class_cap``, OpenML's ``max_samples``),
the activation dumps (``activations.max_samples``) and the sparsity probe
(``probe.max_samples``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["per_class_subset", "stratified_subsample"]


def per_class_subset(y: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Indices of a seeded random subset with at most ``cap`` samples per class.

    Parameters
    ----------
    y : int ``(N,)`` labels.
    cap : maximum number of samples kept per class (>= 1).
    seed : seed of ``numpy.random.default_rng``; classes are drawn in increasing label order.

    Returns
    -------
    int64 ``(M,)`` sorted indices into ``y``.
    """
    if isinstance(cap, bool) or not isinstance(cap, int | np.integer) or cap < 1:
        raise ValueError(f"per_class_cap must be a positive integer, got {cap!r}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if idx.size > cap:
            idx = rng.choice(idx, size=int(cap), replace=False)
        keep.append(idx)
    return np.sort(np.concatenate(keep)).astype(np.int64)


def stratified_subsample(
    y: np.ndarray, n: int | None, seed: int = 0, *, stratified: bool = True
) -> np.ndarray:
    """Sorted positions of a seeded subsample of at most ``n`` of the samples ``y``.

    Parameters
    ----------
    y : ``(N,)`` labels (or regression targets with ``stratified=False``).
    n : the subsample size; ``None`` or ``n >= N`` keeps every sample.
    seed : ``random_state`` of scikit-learn's ``train_test_split`` (stratified) or the seed of
        ``numpy.random.default_rng`` (plain).
    stratified : keep every class's share (``train_test_split(..., stratify=y)``); when a class
        is too small to stratify, or with ``stratified=False``, a uniform draw without
        replacement (``default_rng(seed).choice(N, n, replace=False)``).

    Returns
    -------
    int64 ``(min(n, N),)`` sorted indices into ``y``.
    """
    y = np.asarray(y)
    size = len(y)
    if n is None or n >= size:
        return np.arange(size, dtype=np.int64)
    if stratified:
        from sklearn.model_selection import train_test_split

        try:
            idx, _ = train_test_split(np.arange(size), train_size=n, stratify=y, random_state=seed)
            return np.sort(idx).astype(np.int64)
        except ValueError:  # a class too small to stratify
            pass
    return np.sort(np.random.default_rng(seed).choice(size, size=n, replace=False)).astype(np.int64)
