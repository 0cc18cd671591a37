"""Seeded (stratified) k-fold assignment over a training set, stored as JSON.

File format (``results/folds/{dataset}.json``, see ``docs/architecture.md``)::

    {"n_splits": 5, "seed": 0, "stratified": true, "grouped": false,
     "fold": [int per training sample]}

``fold[i]`` is the fold (``0 .. n_splits-1``) in which training sample ``i`` is held out. A run
for fold ``k`` trains on the samples with ``fold != k`` and evaluates on those with
``fold == k`` (and on the official test split when the data set has one). With group ids
(``grouped``: the data set's ``groups_train.npy``), every group lies in one fold.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mfoml.io import atomic_write_json, read_json

__all__ = ["make_folds", "save_folds", "load_folds", "split_indices"]


def make_folds(
    y: np.ndarray,
    n_splits: int = 5,
    seed: int = 0,
    stratified: bool = True,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Assign every sample to one of ``n_splits`` folds.

    Stratified: :class:`sklearn.model_selection.StratifiedKFold` with ``shuffle=True,
    random_state=seed`` (each class is spread over the folds as evenly as possible: per fold,
    a class count differs from ``n_c / n_splits`` by less than 1). Otherwise (e.g. regression):
    :class:`sklearn.model_selection.KFold` with ``shuffle=True, random_state=seed``. With
    ``groups``, the samples of one group always share a fold:
    :class:`~sklearn.model_selection.StratifiedGroupKFold` (stratified, as evenly as the groups
    allow) or :class:`~sklearn.model_selection.GroupKFold`, both shuffled with ``seed``.

    Parameters
    ----------
    y : ``(N,)`` labels (stratified) or targets.
    n_splits : number of folds, >= 2.
    seed : shuffling seed.
    stratified : stratify on ``y``.
    groups : ``(N,)`` group id of every sample, or ``None``.

    Returns
    -------
    int64 ``(N,)`` fold index of every sample.

    Raises
    ------
    ValueError : ``n_splits < 2``, fewer samples (or groups) than folds, ``groups`` of another
        length than ``y``, or (stratified) a class with fewer samples than ``n_splits`` (named
        in the message).
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"make_folds: y must be one-dimensional (N,), got shape {y.shape}")
    if isinstance(n_splits, bool) or not isinstance(n_splits, int | np.integer) or n_splits < 2:
        raise ValueError(f"make_folds: n_splits must be an integer >= 2, got {n_splits!r}")
    n = y.shape[0]
    if n < n_splits:
        raise ValueError(f"make_folds: {n} samples cannot be split into {n_splits} folds")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"make_folds: groups has shape {groups.shape}, y has ({n},)")
        n_groups = len(np.unique(groups))
        if n_groups < n_splits:
            raise ValueError(f"make_folds: {n_groups} groups cannot be split into {n_splits} folds")
    folds = np.full(n, -1, dtype=np.int64)
    if stratified:
        classes, counts = np.unique(y, return_counts=True)
        small = [
            (c, k) for c, k in zip(classes.tolist(), counts.tolist(), strict=True) if k < n_splits
        ]
        if small:
            desc = ", ".join(f"class {c!r} has {k}" for c, k in small)
            raise ValueError(
                f"make_folds: stratified {n_splits}-fold needs at least {n_splits} samples per "
                f"class: {desc}"
            )
        cls: Any = StratifiedKFold if groups is None else StratifiedGroupKFold
        splitter: Any = cls(n_splits=n_splits, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros((n, 1)), y, groups)
    else:
        cls = KFold if groups is None else GroupKFold
        splitter = cls(n_splits=n_splits, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros((n, 1)), groups=groups)
    for k, (_, held_out) in enumerate(splits):
        folds[held_out] = k
    assert (folds >= 0).all()
    return folds


def save_folds(
    path: str | os.PathLike[str],
    folds: np.ndarray,
    *,
    n_splits: int,
    seed: int,
    stratified: bool,
    grouped: bool = False,
) -> None:
    """Write a fold assignment atomically as JSON (format in the module docstring)."""
    folds = np.asarray(folds)
    _check(folds, n_splits, str(path))
    atomic_write_json(
        path,
        {
            "n_splits": int(n_splits),
            "seed": int(seed),
            "stratified": bool(stratified),
            "grouped": bool(grouped),
            "fold": [int(f) for f in folds],
        },
    )


def _check(folds: np.ndarray, n_splits: int, where: str) -> None:
    if folds.ndim != 1 or not np.issubdtype(folds.dtype, np.integer):
        raise ValueError(
            f"{where}: fold must be a list of integers, got {folds.dtype} {folds.shape}"
        )
    if folds.size and (folds.min() < 0 or folds.max() >= n_splits):
        raise ValueError(f"{where}: fold values must lie in [0, {n_splits})")
    empty = sorted(set(range(n_splits)) - set(np.unique(folds).tolist()))
    if empty:
        raise ValueError(f"{where}: folds {empty} are empty")


def load_folds(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a fold file.

    Returns
    -------
    ``{"n_splits": int, "seed": int, "stratified": bool, "grouped": bool, "fold": int64 (N,)
    array}`` (``grouped`` is false for files written before it was recorded).

    Raises
    ------
    ValueError naming the file when a key is missing or the assignment is invalid.
    """
    data = read_json(path)
    missing = [k for k in ("n_splits", "seed", "stratified", "fold") if k not in data]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    try:
        fold = np.asarray(data["fold"], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: fold must be a list of integers ({exc})") from exc
    _check(fold, int(data["n_splits"]), str(path))
    return {
        "n_splits": int(data["n_splits"]),
        "seed": int(data["seed"]),
        "stratified": bool(data["stratified"]),
        "grouped": bool(data.get("grouped", False)),
        "fold": fold,
    }


def split_indices(folds: np.ndarray | dict[str, Any], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out indices for fold ``k``.

    Parameters
    ----------
    folds : the ``(N,)`` assignment, or the dict returned by :func:`load_folds`.
    k : the held-out fold.

    Returns
    -------
    ``(train_idx, heldout_idx)``: sorted int64 arrays partitioning ``0 .. N-1``.
    """
    n_splits = None
    if isinstance(folds, dict):
        n_splits = int(folds["n_splits"])
        folds = folds["fold"]
    folds = np.asarray(folds)
    if n_splits is None:
        n_splits = int(folds.max()) + 1 if folds.size else 0
    if not 0 <= k < n_splits:
        raise ValueError(f"split_indices: fold {k} out of range [0, {n_splits})")
    held = folds == k
    return np.flatnonzero(~held).astype(np.int64), np.flatnonzero(held).astype(np.int64)
