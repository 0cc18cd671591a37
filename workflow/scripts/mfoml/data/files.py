"""Data from the user's files: the shared pieces of the four file sources.

The sources (``data.variants.<name>.source``): ``imagefolder`` (:mod:`mfoml.data.imagefolder`),
``table``, ``textfile`` and ``arrays`` (:mod:`mfoml.data.filesources`). Each reads the file or
folder named by the variant's ``path`` (relative to the working directory, or absolute) and
writes the project's normalized store (:func:`mfoml.data.store.write_normalized`), so nothing
downstream knows where the data came from. What is shared lives here: the option names, path
resolution, reading a CSV/TSV/Parquet/JSON Lines file into a ``pandas.DataFrame``, the
``split`` column, the held-out test split (stratified, seeded, group-disjoint), label and group
encoding, and the list of files that are the ``data`` rule's inputs (:func:`source_files`).

Light at import (numpy and the standard library): pandas and scikit-learn are imported by the
functions that need them, so the catalog and the configuration layer stay cheap.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_TEST_FRACTION",
    "FILE_KEYS",
    "FILE_SOURCES",
    "IMAGE_EXTENSIONS",
    "FileSourceError",
    "cell",
    "encode_groups",
    "encode_labels",
    "holdout_split",
    "read_frame",
    "resolve_path",
    "source_files",
    "split_mask",
]

#: The file-based sources.
FILE_SOURCES: tuple[str, ...] = ("imagefolder", "table", "textfile", "arrays")
#: Variant keys of the file sources (passed to the source as ``files={...}`` by the data rule).
FILE_KEYS: tuple[str, ...] = (
    "path",
    "test_fraction",
    "image_size",
    "label",
    "features",
    "split",
    "text_column",
    "group",
    "task",
)
#: Which of :data:`FILE_KEYS` apply to which source (``path`` to all).
SOURCE_KEYS: dict[str, frozenset[str]] = {
    "imagefolder": frozenset({"path", "test_fraction", "image_size", "grayscale"}),
    "table": frozenset({"path", "test_fraction", "label", "features", "split", "group", "task"}),
    "textfile": frozenset({"path", "test_fraction", "label", "text_column", "split", "group"}),
    "arrays": frozenset({"path", "test_fraction", "task"}),
}
DEFAULT_TEST_FRACTION = 0.2
#: Image file name endings read by ``imagefolder`` (torchvision's ``IMG_EXTENSIONS``).
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".bmp",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)
TABLE_EXTENSIONS: tuple[str, ...] = (".csv", ".tsv", ".parquet")
TEXT_EXTENSIONS: tuple[str, ...] = (".jsonl", ".csv", ".tsv")


class FileSourceError(ValueError):
    """A user's data file is malformed (names the file and the row, column or image)."""


def cell(value: Any) -> Any:
    """A table cell as a plain Python value (for messages: ``0``, not ``np.int64(0)``)."""
    return value.item() if isinstance(value, np.generic) else value


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as given (absolute, or relative to the working directory), ``~`` expanded."""
    return Path(os.path.expanduser(os.fspath(path)))


def image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` (recursively, sorted; hidden entries skipped)."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS):
                out.append(Path(root) / f)
    return out


def source_files(source: str, path: str | os.PathLike[str] | None) -> list[str]:
    """The files a file-source data set is made of (the ``data`` rule's inputs), as strings.

    A file for ``table``, ``textfile`` and ``arrays``; every image under the folder for
    ``imagefolder`` (so that a changed image reruns the data job). ``[]`` for other sources or
    a path that does not exist (the configuration check reports that before any job).
    """
    if source not in FILE_SOURCES or path is None:
        return []
    p = resolve_path(path)
    if source == "imagefolder":
        return [str(f) for f in image_files(p)] if p.is_dir() else []
    return [str(p)] if p.is_file() else []


def read_frame(path: Path, kinds: Sequence[str] = TABLE_EXTENSIONS) -> Any:
    """Read a CSV (``,``), TSV (tab), Parquet or JSON Lines file into a ``pandas.DataFrame``,
    chosen by the extension (one of ``kinds``). Raises :class:`FileSourceError` naming the file
    for an unknown extension or a file that does not parse."""
    import pandas as pd

    ext = path.suffix.lower()
    if ext not in kinds:
        raise FileSourceError(
            f"{path}: unknown file type {ext or '(none)'!r}; expected one of {', '.join(kinds)}"
        )
    try:
        if ext == ".csv":
            return pd.read_csv(path)
        if ext == ".tsv":
            return pd.read_csv(path, sep="\t")
        if ext == ".jsonl":
            return pd.read_json(path, lines=True)
        with warnings.catch_warnings():  # pandas 3 deprecates the engine (in favour of pyarrow)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            return pd.read_parquet(path, engine="fastparquet")
    except ImportError as exc:  # fastparquet missing
        raise FileSourceError(f"{path}: cannot read {ext} files ({exc})") from exc
    except Exception as exc:  # noqa: BLE001  (pandas raises many types for malformed files)
        raise FileSourceError(f"{path}: not a readable {ext} file ({exc})") from exc


def split_mask(values: Any, path: Path, column: str) -> np.ndarray:
    """``True`` for the rows of the ``split`` column that are ``train`` (``False``: ``test``).

    ``values``: the column (a pandas Series). Any other value is an error naming the file,
    the column and the first offending row (1-based data row).
    """
    v = values.astype("string").str.strip().str.lower()
    ok = v.isin(["train", "test"]).fillna(False).to_numpy(dtype=bool)
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        raise FileSourceError(
            f"{path}: row {row + 1}: split column {column!r} holds {cell(values.iloc[row])!r}; "
            "expected 'train' or 'test'"
        )
    return (v == "train").to_numpy(dtype=bool)


def encode_labels(values: Any, path: Path, column: str) -> tuple[np.ndarray, list[str]]:
    """Class codes ``0..C-1`` (int64 ``(N,)``) in sorted order of the label values, and the
    class names (``str`` of each value). A missing label is an error naming file and row."""
    import pandas as pd

    missing = values.isna().to_numpy(dtype=bool)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise FileSourceError(f"{path}: row {row + 1}: label column {column!r} is empty")
    codes, uniques = pd.factorize(values, sort=True)
    return np.asarray(codes, dtype=np.int64), [str(u) for u in uniques]


def regression_target(values: Any, path: Path, column: str) -> np.ndarray:
    """The float64 ``(N,)`` target of a regression table; non-numbers name file and row."""
    import pandas as pd

    y = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(y)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise FileSourceError(
            f"{path}: row {row + 1}: target column {column!r} holds {cell(values.iloc[row])!r}, "
            "not a finite number (task: regression)"
        )
    return y


def encode_groups(values: Any, path: Path, column: str) -> np.ndarray:
    """Group ids int64 ``(N,)`` (``0..G-1`` in order of first appearance); an empty cell is an
    error naming the file and the row."""
    import pandas as pd

    missing = values.isna().to_numpy(dtype=bool)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise FileSourceError(f"{path}: row {row + 1}: group column {column!r} is empty")
    codes, _ = pd.factorize(values, sort=False)
    return np.asarray(codes, dtype=np.int64)


def holdout_split(
    y: np.ndarray,
    *,
    fraction: float,
    seed: int,
    groups: np.ndarray | None = None,
    stratified: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded held-out test split of a data set without one: ``(train_idx, test_idx)``, sorted.

    Parameters
    ----------
    y : ``(N,)`` labels (classification) or targets.
    fraction : share of the samples in the test split, in (0, 1).
    seed : seed of the split.
    groups : int ``(N,)`` group ids or ``None``; with groups no group is on both sides
        (``StratifiedGroupKFold`` with ``round(1 / fraction)`` folds, the first fold held out,
        for classification; ``GroupShuffleSplit`` for regression).
    stratified : keep the class proportions (classification).
    """
    from sklearn.model_selection import (
        GroupShuffleSplit,
        StratifiedGroupKFold,
        train_test_split,
    )

    idx = np.arange(len(y))
    if groups is None:
        tr, te = train_test_split(
            idx, test_size=fraction, random_state=seed, stratify=y if stratified else None
        )
    elif stratified:
        k = max(2, round(1.0 / fraction))
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        tr, te = next(splitter.split(idx, y, groups))
    else:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        tr, te = next(splitter.split(idx, y, groups))
    return np.sort(np.asarray(tr, np.int64)), np.sort(np.asarray(te, np.int64))
