"""Read access to activation dumps (numpy only: probe, NCC and aggregation jobs read dumps
without importing torch). The writer is :func:`mfoml.nets.activations.dump_activations`; the
on-disk format is described there and in docs/architecture.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mfoml.io import read_json

__all__ = ["ActivationDump", "dump_epochs", "open_activations"]


class ActivationDump:
    """Read access to a dump written by :func:`dump_activations`.

    Attributes
    ----------
    path : the dump directory.
    manifest : the parsed ``manifest.json``.
    layers : ordered layer names.
    n_samples : ``N``.
    labels, predictions : int64 arrays ``(N,)`` (memory-mapped).
    true_labels : int64 ``(N,)``: ``labels_true.npy`` when the dump has it (noisy ``labels``),
        else ``labels``.
    label_set : name of the primary label set (``"class"`` unless the manifest names it).
    label_sets : ``{name: int64 (N,)}``, every label set: the primary one (``true_labels``)
        first, then the further ones (``labels_{set}.npy``).
    has_predictions : false for a network without a classifier (a self-supervised encoder:
        ``predictions`` are -1 and there is no classifier weight).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        mpath = self.path / "manifest.json"
        if not mpath.is_file():
            raise FileNotFoundError(f"{self.path}: not an activation dump (no manifest.json)")
        self.manifest: dict = read_json(mpath)
        try:
            self._entries = {e["name"]: e for e in self.manifest["layers"]}
            self.n_samples = int(self.manifest["n_samples"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{mpath}: malformed manifest ({exc})") from exc
        self.layers: list[str] = [e["name"] for e in self.manifest["layers"]]
        self.labels = self._load("labels.npy", (self.n_samples,), np.int64)
        self.predictions = self._load("predictions.npy", (self.n_samples,), np.int64)
        self.true_labels = (
            self._load("labels_true.npy", (self.n_samples,), np.int64)
            if self.manifest.get("true_labels")
            else self.labels
        )
        self.label_set = str(self.manifest.get("label_set") or "class")
        self.label_sets: dict[str, np.ndarray] = {self.label_set: self.true_labels}
        for set_name in self.manifest.get("label_sets") or []:
            self.label_sets[str(set_name)] = self._load(
                f"labels_{set_name}.npy", (self.n_samples,), np.int64
            )
        self.has_predictions = bool(self.manifest.get("predictions", True))

    def _load(self, fname: str, shape: tuple[int, ...], dtype: Any) -> np.memmap:
        p = self.path / fname
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing from the activation dump")
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{p}: unreadable array ({exc})") from exc
        if arr.shape != shape or arr.dtype != np.dtype(dtype):
            raise ValueError(
                f"{p}: expected {np.dtype(dtype)} {shape}, found {arr.dtype} {arr.shape}"
            )
        return arr

    def entry(self, name: str) -> dict:
        """The manifest entry of layer ``name`` (``name, index, shape, dim, reduction``)."""
        if name not in self._entries:
            raise KeyError(f"layer {name!r} not in the dump {self.path}; layers: {self.layers}")
        return self._entries[name]

    def layer(self, name: str) -> np.memmap:
        """Memory-mapped float16 array ``(N, D_layer)`` of layer ``name``."""
        e = self.entry(name)
        return self._load(f"{name}.npy", (self.n_samples, int(e["dim"])), np.float16)

    def iter_chunks(self, name: str, chunk_size: int = 4096) -> Iterator[np.ndarray]:
        """Yield consecutive row blocks of layer ``name`` as float32 ``(<= chunk_size, D)``."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        arr = self.layer(name)
        for start in range(0, self.n_samples, chunk_size):
            yield np.asarray(arr[start : start + chunk_size], dtype=np.float32)

    @property
    def penultimate_layer(self) -> str:
        """The layer whose flattened output feeds the final linear classifier."""
        return self._manifest_field("penultimate_layer")

    @property
    def n_classes(self) -> int:
        """Number of classes (output logits) of the dumped model."""
        return int(self._manifest_field("n_classes"))

    def classifier_weight(self) -> np.ndarray:
        """Weight of the model's final linear classifier, float32 ``(n_classes, D_penultimate)``
        (``classifier_weight.npy``, written with the dump)."""
        p = self.path / "classifier_weight.npy"
        if not p.is_file():
            raise FileNotFoundError(
                f"{p}: missing from the activation dump (dumps written before the classifier "
                "weight was stored: rerun the activations rule)"
            )
        w = np.load(p, allow_pickle=False)
        if w.ndim != 2 or w.shape[0] != self.n_classes:
            raise ValueError(f"{p}: expected ({self.n_classes}, D), found {w.shape}")
        return w

    def _manifest_field(self, key: str) -> Any:
        if key not in self.manifest:
            raise ValueError(
                f"{self.path / 'manifest.json'}: no {key!r} (a dump from an older version: "
                "rerun the activations rule)"
            )
        return self.manifest[key]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return (
            f"ActivationDump({str(self.path)!r}, n_samples={self.n_samples}, layers={self.layers})"
        )


def open_activations(path: str | os.PathLike[str]) -> ActivationDump:
    """Open an activation dump directory (see :class:`ActivationDump`)."""
    return ActivationDump(path)


def dump_epochs(activations_dir: str | os.PathLike[str]) -> list[int]:
    """The checkpoint epochs dumped in a run's ``activations/`` directory (its numeric
    sub-directories ``{epoch}/``), ascending."""
    return sorted(
        int(p.name) for p in Path(activations_dir).iterdir() if p.is_dir() and p.name.isdigit()
    )
