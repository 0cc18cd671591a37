"""The data a finished training run was trained and tested on, for the dynamics rules.

``train``: the run's training samples (``split.npz`` of its checkpoint directory: the indices
and the labels it was trained on, noisy under label noise, a subset with ``train.subset``);
``test``: the data set's official test split, or the run's held-out fold when the set has none.
Both as float32 inputs and int64 labels, optionally a stratified seeded subsample.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mfoml.data.store import load_dataset
from mfoml.data.subsample import stratified_subsample

__all__ = ["run_splits"]


def run_splits(
    data_dir: str | os.PathLike[str],
    checkpoints_dir: str | os.PathLike[str],
    *,
    max_samples: int | None = None,
    seed: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (x, y), "test": (x, y)}`` of a run (see the module docstring).

    Parameters
    ----------
    data_dir : the run's normalized data set.
    checkpoints_dir : the run's checkpoint directory (holds ``split.npz``).
    max_samples : keep a stratified subsample of at most this many samples per split.
    seed : seed of that subsample.

    Raises
    ------
    FileNotFoundError : naming ``split.npz`` when the run is incomplete.
    """
    split_file = Path(checkpoints_dir) / "split.npz"
    if not split_file.is_file():
        raise FileNotFoundError(f"{split_file}: the run's split file is missing (run unfinished?)")
    ds = load_dataset(data_dir, mmap_mode="r")
    sp = np.load(split_file)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    train_idx = np.asarray(sp["train_idx"])
    out["train"] = (ds.x_train[train_idx], np.asarray(sp["y_train"]))
    if ds.x_test is not None:
        out["test"] = (ds.x_test, np.asarray(ds.y_test))
    else:
        held = np.asarray(sp["heldout_idx"])
        out["test"] = (ds.x_train[held], np.asarray(ds.y_train)[held])
    for name, (x, y) in list(out.items()):
        keep = stratified_subsample(np.asarray(y), max_samples, seed=seed)
        out[name] = (
            np.ascontiguousarray(np.asarray(x)[keep], dtype=np.float32),
            np.asarray(y, dtype=np.int64)[keep],
        )
    return out
