"""The normalized on-disk data-set format (read and write) and the registry of data sources.

A leaf of ``mfoml.data``: it imports only numpy and :mod:`mfoml.io`. Data sources
(:mod:`mfoml.data.sources`, :mod:`mfoml.data.openml`) register themselves here with
:func:`register_source` when they are imported; :mod:`mfoml.data.catalog` imports them all and
answers "which source makes this data-set id" (so that the configuration layer can check ids at
parse time without importing the sources' heavy dependencies) and dispatches
:func:`~mfoml.data.catalog.prepare_dataset`. Readers of a data set (training, folds) import only
this module.

Normalized format (``resources/data/{dataset}/``, see ``docs/architecture.md``)
-------------------------------------------------------------------------------
``x_train.npy``   float32 ``(N, *input_shape)``
``y_train.npy``   int64 ``(N,)`` class labels in ``[0, n_classes)`` (classification) or float64
                  ``(N,)`` targets (regression)
``x_test.npy``, ``y_test.npy``   the same for the official test split, only when the set has one
``train_source_index.npy``       int64 ``(N,)``: only with ``per_class_cap``; for every stored
                  training sample, its row in the original (uncapped) training split
``groups_train.npy``, ``groups_test.npy``   int64 ``(N,)``: only for a set whose samples come in
                  groups that must not be split (a ``group`` column of a file source; each
                  sentence and its reversed copy in ``textorder``): the group id of every sample.
                  Folds keep a group in one fold and a test split never shares a group with
                  training (:func:`mfoml.data.folds.make_folds`)
``y_train_{set}.npy``, ``y_test_{set}.npy``   int64 ``(N,)``: further label sets of the same
                  samples (e.g. CIFAR-100's ``coarse`` superclasses), listed in ``meta.json``
``meta.json``     written **last**: ``name, source, task, n_classes, input_shape, n_train, n_test,
                  checksums {file: sha256}, options {grayscale, per_class_cap, seed}`` plus
                  ``kind`` (``"image"``, ``"signal"`` or ``"tabular"``), ``class_names``,
                  ``feature_names`` (tabular), ``raw_files`` (downloads: file, url, checksum) and
                  ``format_version``; with further label sets also ``label_set`` (the name of
                  the primary labels ``y_*.npy``, e.g. ``"fine"``) and ``label_sets {set:
                  {n_classes, class_names, files {train, test}}}``. The label-set files are
                  covered by the checksums like every other file.

``n_classes`` is ``null`` and ``n_test`` is ``0`` where they do not apply. A directory without
``meta.json`` or whose files do not match its checksums is never trusted by :func:`load_dataset`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfoml.io import atomic_save_npy, atomic_write_json, file_checksum, read_json

__all__ = [
    "FORMAT_VERSION",
    "Dataset",
    "IntegrityError",
    "SourceInfo",
    "load_dataset",
    "register_source",
    "registered_sources",
    "write_normalized",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class IntegrityError(RuntimeError):
    """A normalized data set directory does not match its ``meta.json``."""


# ----------------------------------------------------------------------------------------------
# Registry of data sources
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceInfo:
    """A data source: one data-set id (or a family of ids sharing a prefix) and how to make it.

    Attributes
    ----------
    name : the data-set id (``"mnist1d"``), or the prefix of a family (``"openml-"``).
    prepare : ``prepare(name, out_dir, **options) -> meta`` writing the normalized format
        (options: ``download_dir, mirror, grayscale, per_class_cap, seed`` and the
        source's own).
    prefix : ``name`` is a prefix (any id starting with it belongs to the source).
    hint : how the family is written in messages (``"openml-<name-or-id>"``).
    task : ``"classification"`` or ``"regression"`` when known without loading the data.
    kind : ``"image"``, ``"signal"`` or ``"tabular"`` when known.
    class_counts : training samples per class of the official training split, when known
        without loading the data (embedded and vision sets); ``len(class_counts)`` is the
        number of classes.
    n_train : samples of the official training split, when known.
    """

    name: str
    prepare: Callable[..., dict[str, Any]]
    prefix: bool = False
    hint: str | None = None
    task: str | None = None
    kind: str | None = None
    class_counts: tuple[int, ...] | None = None
    n_train: int | None = None


_SOURCES: dict[str, SourceInfo] = {}


def register_source(info: SourceInfo) -> None:
    """Add a data source to the registry (a later registration of the same name replaces it)."""
    _SOURCES[info.name] = info


def registered_sources() -> dict[str, SourceInfo]:
    """The registered sources by name (a copy); :mod:`mfoml.data.catalog` registers them all."""
    return dict(_SOURCES)


# ----------------------------------------------------------------------------------------------
# The normalized format
# ----------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """A loaded normalized data set.

    Attributes
    ----------
    x_train : float32 ``(N, *input_shape)``.
    y_train : int64 ``(N,)`` (classification) or float64 ``(N,)`` (regression).
    x_test, y_test : the same for the official test split, or ``None``.
    meta : the content of ``meta.json``.
    extra_labels : further label sets ``{name: (y_train, y_test or None)}`` (int64).
    groups_train, groups_test : int64 ``(N,)`` group ids of the samples (``groups_*.npy``), or
        ``None`` for a set without groups.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    meta: dict[str, Any] = field(default_factory=dict)
    extra_labels: dict[str, tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict)
    groups_train: np.ndarray | None = None
    groups_test: np.ndarray | None = None

    @property
    def label_set(self) -> str:
        """Name of the primary label set ``y_train``/``y_test`` (``"class"`` unless named)."""
        return str(self.meta.get("label_set") or "class")

    def label_sets(self) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Every label set ``{name: (y_train, y_test)}``, the primary one first."""
        return {self.label_set: (self.y_train, self.y_test), **self.extra_labels}

    def label_set_classes(self) -> dict[str, int]:
        """Number of classes of every label set (classification data sets)."""
        out = {self.label_set: int(self.meta["n_classes"])}
        for name, info in (self.meta.get("label_sets") or {}).items():
            out[name] = int(info["n_classes"])
        return out

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def n_classes(self) -> int | None:
        n = self.meta.get("n_classes")
        return None if n is None else int(n)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.meta["input_shape"])

    @property
    def has_test(self) -> bool:
        return self.x_test is not None


def write_normalized(
    out_dir: str | os.PathLike[str],
    arrays: Mapping[str, np.ndarray | None],
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Write arrays and then ``meta.json`` (with sha256 checksums) into ``out_dir``.

    An existing ``meta.json`` is removed first, so the directory is untrusted while it is being
    rewritten; files mapped to ``None`` are removed if present; every file is written atomically
    and ``meta.json`` last. The one writer of every data source.

    Parameters
    ----------
    out_dir : the normalized directory.
    arrays : ``{file name: array or None}``.
    meta : metadata; ``checksums`` is filled in here.

    Returns
    -------
    The metadata written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out_dir / "meta.json").unlink()
    checksums = {}
    for fname, arr in arrays.items():
        path = out_dir / fname
        if arr is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        atomic_save_npy(path, arr)
        checksums[fname] = file_checksum(path, "sha256")
    meta = {**meta, "checksums": checksums}
    atomic_write_json(out_dir / "meta.json", meta)
    log.info("%s: wrote %s (%s)", meta.get("name", out_dir.name), out_dir, ", ".join(checksums))
    return meta


_REQUIRED_META = ("name", "task", "n_classes", "input_shape", "n_train", "n_test", "checksums")


def load_dataset(
    path: str | os.PathLike[str], verify: bool = True, *, mmap_mode: str | None = None
) -> Dataset:
    """Load a normalized data set directory written by :func:`write_normalized`.

    Parameters
    ----------
    path : the directory.
    verify : check every file's sha256 against ``meta.json`` (reads the files once more).
    mmap_mode : passed to :func:`numpy.load` (e.g. ``"r"``) for large sets.

    Raises
    ------
    FileNotFoundError : the directory has no ``meta.json`` (never completed) or lacks a file.
    IntegrityError : malformed ``meta.json``, a checksum mismatch, or arrays whose shapes
        disagree with the metadata.
    """
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path}: missing; the data set in {path} was never completed or is being "
            "rewritten (run prepare_dataset again)"
        )
    try:
        meta = read_json(meta_path)
    except ValueError as exc:
        raise IntegrityError(str(exc)) from exc
    missing_keys = [k for k in _REQUIRED_META if not isinstance(meta, dict) or k not in meta]
    if missing_keys:
        raise IntegrityError(f"{meta_path}: missing keys {missing_keys}")
    checksums = meta["checksums"]
    for required in ("x_train.npy", "y_train.npy"):
        if required not in checksums:
            raise IntegrityError(f"{meta_path}: no checksum recorded for {required}")
    for fname, digest in checksums.items():
        fpath = path / fname
        if not fpath.is_file():
            raise FileNotFoundError(f"{fpath}: missing (listed in {meta_path})")
        if verify:
            got = file_checksum(fpath, "sha256")
            if got != digest:
                raise IntegrityError(
                    f"{fpath}: sha256 mismatch: meta.json records {digest}, file has {got}; "
                    "the file was modified or is incomplete (run prepare_dataset again)"
                )

    def load(fname: str) -> np.ndarray | None:
        if fname not in checksums:
            return None
        try:
            return np.load(path / fname, mmap_mode=mmap_mode, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise IntegrityError(f"{path / fname}: not a readable .npy file ({exc})") from exc

    x_train, y_train = load("x_train.npy"), load("y_train.npy")
    x_test, y_test = load("x_test.npy"), load("y_test.npy")
    assert x_train is not None and y_train is not None
    shape = tuple(meta["input_shape"])
    for split, x, y, n in (
        ("train", x_train, y_train, meta["n_train"]),
        ("test", x_test, y_test, meta["n_test"]),
    ):
        if (x is None) != (y is None):
            raise IntegrityError(f"{path}: x_{split}.npy and y_{split}.npy must both be present")
        if x is None or y is None:
            if split == "test" and n:
                raise IntegrityError(f"{meta_path}: n_test={n} but no test arrays")
            continue
        if x.shape != (n, *shape) or y.shape != (n,):
            raise IntegrityError(
                f"{path}: {split} arrays have shapes {x.shape}, {y.shape}; meta.json says "
                f"{(n, *shape)} and ({n},)"
            )
    extra: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for set_name, info in (meta.get("label_sets") or {}).items():
        files = info.get("files", {}) if isinstance(info, dict) else {}
        arrs = {}
        for split, n in (("train", meta["n_train"]), ("test", meta["n_test"])):
            fname = files.get(split)
            arr = None if fname is None else load(fname)
            if fname is not None and arr is None:
                raise IntegrityError(f"{meta_path}: label set {set_name!r}: {fname} not listed")
            if arr is not None and (arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer)):
                raise IntegrityError(
                    f"{path / fname}: label set {set_name!r} ({split}) has {arr.dtype} "
                    f"{arr.shape}, expected integer ({n},)"
                )
            if split == "train" and arr is None:
                raise IntegrityError(f"{meta_path}: label set {set_name!r} has no train file")
            arrs[split] = arr
        extra[str(set_name)] = (arrs["train"], arrs["test"])
    groups = {}
    for split, n in (("train", meta["n_train"]), ("test", meta["n_test"])):
        arr = load(f"groups_{split}.npy")
        if arr is not None and (arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer)):
            raise IntegrityError(
                f"{path / f'groups_{split}.npy'}: group ids have {arr.dtype} {arr.shape}, "
                f"expected integer ({n},)"
            )
        groups[split] = arr
    if groups["test"] is not None and groups["train"] is None:
        raise IntegrityError(f"{path}: groups_test.npy without groups_train.npy")
    if groups["train"] is not None and groups["test"] is not None:
        shared = np.intersect1d(groups["train"], groups["test"])
        if shared.size:
            raise IntegrityError(
                f"{path}: {shared.size} group(s) in both the training and the test split "
                f"(e.g. {int(shared[0])}); a test split must not share a group with training"
            )
    return Dataset(x_train, y_train, x_test, y_test, meta, extra, groups["train"], groups["test"])
