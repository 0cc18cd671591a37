"""The tabular track's data: a data set as a table, fold checks and the forest settings."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mfoml.data.store import load_dataset

log = logging.getLogger(__name__)


class TabularData:
    """A tabular data set in memory.

    Attributes
    ----------
    X : float64 ``(N, d)`` (images and signals are flattened); NaN marks a missing value (OpenML
        ``?``), imputed inside each training fold by the models (:mod:`mfoml.tabular.models`).
    y : int64 ``(N,)`` class labels in ``[0, n_classes)``, or float64 ``(N,)`` targets.
    task : ``"classification"`` or ``"regression"``.
    n_classes : number of classes (0 for regression).
    name : data-set name; ``feature_names`` : d names.
    nominal : sorted indices of the nominal (categorical, integer-coded) features.
    has_missing : whether ``X`` has a missing value.
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        task: str,
        n_classes: int,
        name: str = "",
        feature_names: Sequence[str] | None = None,
        nominal: Sequence[int] = (),
    ) -> None:
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        X = np.asarray(X, dtype=np.float64)
        self.X = X.reshape(X.shape[0], -1)
        self.y = np.asarray(y, dtype=np.int64 if task == "classification" else np.float64)
        if self.y.shape != (self.X.shape[0],):
            raise ValueError(f"{name}: y has shape {self.y.shape}, expected ({self.X.shape[0]},)")
        if np.isinf(self.X).any():
            raise ValueError(f"{name}: X contains inf")
        self.has_missing = bool(np.isnan(self.X).any())
        self.nominal = sorted({int(i) for i in nominal})
        if any(i < 0 or i >= self.X.shape[1] for i in self.nominal):
            raise ValueError(f"{name}: nominal feature indices {self.nominal} out of range")
        self.task = task
        self.n_classes = int(n_classes) if task == "classification" else 0
        self.name = name
        d = self.X.shape[1]
        if feature_names is None or len(feature_names) != d:
            feature_names = [f"x{i}" for i in range(d)]
        self.feature_names = [str(f) for f in feature_names]

    @property
    def is_classification(self) -> bool:
        """Whether the task is classification."""
        return self.task == "classification"


@dataclass(frozen=True)
class DatasetJob:
    """What a per-data-set rule of the tabular track computes on (built by
    :func:`mfoml.tabular.job.run_dataset_job`, passed to the parts' ``*_job`` functions).

    Attributes
    ----------
    data : the data set as a table.
    folds : the fold assignment, an int array ``(N,)`` or a fold file's dict
        (:func:`mfoml.data.folds.load_folds`).
    cfg : the rule's slice of the ``tabular`` config section (parsed).
    n_jobs : cores the job may use.
    """

    data: TabularData
    folds: np.ndarray | Mapping[str, Any]
    cfg: Mapping[str, Any]
    n_jobs: int = 1


def load_tabular(path: str, name: str | None = None) -> TabularData:
    """Load a normalized data-set directory (``resources/data/{dataset}``) as a table.

    The training split only (the folds are defined on it); inputs flattened to ``(N, d)``.
    ``name`` (default: the meta's name) labels the results, e.g. the config's data-set id.
    Missing values stay NaN; nominal features are ``meta["options"]["nominal_features"]``.
    """
    ds = load_dataset(path)
    meta = ds.meta
    task = meta["task"]
    return TabularData(
        np.asarray(ds.x_train),
        np.asarray(ds.y_train),
        task,
        int(meta.get("n_classes") or 0),
        name=name if name is not None else str(meta.get("name", "")),
        feature_names=meta.get("feature_names"),
        nominal=(meta.get("options") or {}).get("nominal_features") or (),
    )


def table_meta(data: TabularData) -> dict[str, Any]:
    """``{dataset, task, n_samples, n_features, n_classes}`` of a data set (for the tables)."""
    return {
        "dataset": data.name,
        "task": data.task,
        "n_samples": int(data.X.shape[0]),
        "n_features": int(data.X.shape[1]),
        "n_classes": int(data.n_classes),
    }


def forest_params(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Wavelet-forest constructor parameters from the ``tabular.forest`` config block.

    Keys ``n_estimators, max_depth, min_samples_leaf, max_features, norm_weight, bootstrap``;
    ``max_features: "all"`` or None means all features at every split.
    """
    known = (
        "n_estimators",
        "max_depth",
        "min_samples_leaf",
        "max_features",
        "norm_weight",
        "bootstrap",
    )
    unknown = set(cfg) - set(known)
    if unknown:
        raise ValueError(f"config key 'tabular.forest': unknown keys {sorted(unknown)}")
    out = {k: cfg[k] for k in known if k in cfg}
    if out.get("max_features") == "all":
        out["max_features"] = None
    return out


def folds_array(folds: np.ndarray | Mapping[str, Any]) -> tuple[np.ndarray, int]:
    if isinstance(folds, Mapping):
        arr = np.asarray(folds["fold"], dtype=np.int64)
        return arr, int(folds["n_splits"])
    arr = np.asarray(folds, dtype=np.int64)
    return arr, int(arr.max()) + 1


def check_folds(data: TabularData, fold_arr: np.ndarray) -> None:
    if fold_arr.shape[0] != data.X.shape[0]:
        raise ValueError(
            f"{data.name}: fold assignment has {fold_arr.shape[0]} entries but the data set has "
            f"{data.X.shape[0]} training samples (stale results/folds file?)"
        )
