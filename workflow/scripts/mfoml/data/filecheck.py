"""Checks of a file-source data set before any job: :func:`file_variant_errors`.

Called by the configuration layer (:func:`mfoml.config.datasets.dataset_errors`) for every
``data.variants`` entry whose ``source`` is a file source. Every message names the config key and
the file: the path exists; the keys apply to the source; the named columns exist; the label has
at least 2 classes in the training split, each with at least ``folds.n_splits`` samples; a sample
of the images opens (two per class, fully decoded) and, without ``image_size``, all images share
one size (read from their headers); the arrays of an ``.npz`` have consistent shapes. What only
the job can see (a corrupt image that was not sampled, a bad cell) fails there, naming the file
and the row or image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mfoml.data.files import (
    DEFAULT_TEST_FRACTION,
    FILE_KEYS,
    SOURCE_KEYS,
    TEXT_EXTENSIONS,
    FileSourceError,
    cell,
    resolve_path,
    split_mask,
)

__all__ = ["file_variant_errors"]

#: Images opened per class before any job.
SAMPLE_PER_CLASS = 2


def _class_errors(
    key: str, path: Path, y: Any, n_splits: int, train_share: float = 1.0
) -> list[str]:
    """``y``: the training labels (a sequence of values). At least 2 classes, each with at least
    ``n_splits`` samples (``train_share``: the part left after a held-out split)."""
    values, counts = np.unique(np.asarray([str(v) for v in y]), return_counts=True)
    if len(values) < 2:
        return [
            f"config key '{key}': {path}: the label has {len(values)} class"
            f"{'es' if len(values) != 1 else ''} ({', '.join(str(v) for v in values[:3])}); at least 2 are needed"
        ]
    kept = np.floor(counts * train_share).astype(int)
    k = int(np.argmin(kept))
    if kept[k] < n_splits:
        left = " after the held-out test split" if train_share < 1 else ""
        return [
            f"config key '{key}': {path}: class {str(values[k])!r} has only {kept[k]} training "
            f"samples{left}; folds.n_splits = {n_splits} needs at least {n_splits} per class"
        ]
    return []


def _share(opts: dict[str, Any], has_test: bool) -> float:
    return 1.0 if has_test else 1.0 - float(opts.get("test_fraction") or DEFAULT_TEST_FRACTION)


def _check_frame(name: str, opts: dict[str, Any], path: Path, n_splits: int) -> list[str]:
    from mfoml.data.files import TABLE_EXTENSIONS, read_frame
    from mfoml.data.filesources import table_columns

    source = opts["source"]
    base = f"data.variants.{name}"
    kinds = TABLE_EXTENSIONS if source == "table" else TEXT_EXTENSIONS
    try:
        frame = read_frame(path, kinds)
    except FileSourceError as exc:
        return [f"config key '{base}.path': {exc}"]
    columns = [str(c) for c in frame.columns]
    errors = []
    named = {
        "label": opts.get("label", "label"),
        "split": opts.get("split"),
        "group": opts.get("group"),
    }
    if source == "textfile":
        named["text_column"] = opts.get("text_column", "text")
    else:
        for c in opts.get("features") or []:
            if c not in columns:
                errors.append(
                    f"config key '{base}.features': {path} has no column {c!r} (columns: {columns})"
                )
    for key, col in named.items():
        if col is not None and col not in columns:
            errors.append(
                f"config key '{base}.{key}': {path} has no column {col!r} (columns: {columns})"
            )
    if errors:
        return errors
    if source == "table" and not table_columns(columns, opts):
        return [f"config key '{base}.features': {path} has no feature column besides the label"]
    train = np.ones(len(frame), dtype=bool)
    if opts.get("split"):
        try:
            train = split_mask(frame[opts["split"]], path, opts["split"])
        except FileSourceError as exc:
            return [f"config key '{base}.split': {exc}"]
        if opts.get("group"):
            groups = frame[opts["group"]]
            both = set(groups[train].dropna()) & set(groups[~train].dropna())
            if both:
                errors.append(
                    f"config key '{base}.group': {path}: group {cell(min(both, key=str))!r} of "
                    f"column {opts['group']!r} is in both the train and the test split (column "
                    f"{opts['split']!r}); a group must stay on one side"
                )
    if opts.get("task") == "regression":
        return []
    labels = frame[named["label"]]
    if labels.isna().any():
        row = int(np.flatnonzero(labels.isna().to_numpy())[0])
        return [f"config key '{base}.label': {path}: row {row + 1}: the label is empty"]
    share = _share(opts, bool(opts.get("split")))
    return errors + _class_errors(f"{base}.label", path, labels[train], n_splits, share)


def _check_images(name: str, opts: dict[str, Any], root: Path, n_splits: int) -> list[str]:
    from PIL import Image

    from mfoml.data.imagefolder import list_images, read_image

    base = f"data.variants.{name}"
    if not (root / "train").is_dir():
        return [
            f"config key '{base}.path': {root} has no train/ folder (layout: train/<class>/<image>)"
        ]
    files, y, classes = list_images(root / "train")
    if len(classes) < 2:
        return [
            f"config key '{base}.path': {root / 'train'} has {len(classes)} class folders; at least 2 are needed"
        ]
    counts = np.bincount(y, minlength=len(classes))
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        return [f"config key '{base}.path': {root / 'train'}: class folders {empty} hold no images"]
    has_test = (root / "test").is_dir()
    errors = _class_errors(
        f"{base}.path", root / "train", [classes[k] for k in y], n_splits, _share(opts, has_test)
    )
    test_files = list_images(root / "test", classes)[0] if has_test else []
    rng = np.random.default_rng(0)
    sample = []
    for k in range(len(classes)):
        idx = np.flatnonzero(y == k)
        sample += [
            files[i] for i in rng.choice(idx, min(SAMPLE_PER_CLASS, len(idx)), replace=False)
        ]
    for f in sample + test_files[:SAMPLE_PER_CLASS]:
        try:
            read_image(f, None)
        except FileSourceError as exc:
            return errors + [f"config key '{base}.path': {exc}"]
    if opts.get("image_size") is None:
        sizes: dict[tuple[int, int], Path] = {}
        for f in files + test_files:
            try:
                with Image.open(f) as img:
                    sizes.setdefault(img.size, f)
            except Exception as exc:  # noqa: BLE001
                return errors + [f"config key '{base}.path': {f}: not a readable image ({exc})"]
            if len(sizes) > 1:
                (s1, f1), (s2, f2) = list(sizes.items())[:2]
                errors.append(
                    f"config key '{base}.image_size': images in {root} differ in size ({f1}: "
                    f"{s1[0]}x{s1[1]}, {f2}: {s2[0]}x{s2[1]}); set image_size (an int or [H, W])"
                )
                break
    return errors


def _check_npz(name: str, opts: dict[str, Any], path: Path, n_splits: int) -> list[str]:
    from mfoml.data.filesources import load_npz

    base = f"data.variants.{name}"
    try:
        data = load_npz(path)
    except FileSourceError as exc:
        return [f"config key '{base}.path': {exc}"]
    if opts.get("task") == "regression":
        return []
    share = 1.0 if "x_test" in data or not opts.get("test_fraction") else _share(opts, False)
    return _class_errors(f"{base}.path", path, data["y_train"].tolist(), n_splits, share)


def file_variant_errors(name: str, variant: dict[str, Any], n_splits: int) -> list[str]:
    """What is wrong with file-source variant ``data.variants.<name>`` (messages naming the key
    and the file), or ``[]``. ``variant``: its options (``source`` one of the file sources).
    Missing values and categorical columns of a table are fine: the tabular track and the
    networks (:mod:`mfoml.tabular.netinput`) impute and one-hot encode inside each fold."""
    source = variant["source"]
    base = f"data.variants.{name}"
    errors = []
    wrong = sorted(k for k in FILE_KEYS if k in variant and k not in SOURCE_KEYS[source])
    if wrong:
        errors.append(
            f"config key '{base}': {wrong} do not apply to source {source!r} "
            f"(its keys: {sorted(SOURCE_KEYS[source])})"
        )
    if variant.get("text") is not None and source != "textfile":
        errors.append(f"config key '{base}.text': applies to text sources only, not {source!r}")
    if not variant.get("path"):
        return [*errors, f"config key '{base}.path': required for source {source!r}"]
    path = resolve_path(variant["path"])
    if not path.exists():
        return [
            *errors,
            f"config key '{base}.path': {path} does not exist (relative paths are taken from the working directory {Path.cwd()})",
        ]
    want_dir = source == "imagefolder"
    if path.is_dir() != want_dir:
        what = "a folder (ImageFolder layout)" if want_dir else "a file"
        return [*errors, f"config key '{base}.path': {path} is not {what}"]
    if source == "imagefolder":
        return errors + _check_images(name, variant, path, n_splits)
    if source == "arrays":
        return errors + _check_npz(name, variant, path, n_splits)
    return errors + _check_frame(name, variant, path, n_splits)
