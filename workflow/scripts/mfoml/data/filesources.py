"""The ``table`` and ``arrays`` sources (and the split helpers that ``textfile`` shares, its
source in :mod:`mfoml.data.textfile`): a user's file in the normalized store.

Each is a ``data.variants.<name>.source`` taking ``path`` (config/README.md lists every key):

``table``     a CSV, TSV or Parquet file (by extension). ``label`` names the target column,
              ``features`` the input columns (default: every other column but ``split`` and
              ``group``), ``split`` a column holding ``train``/``test`` (else ``test_fraction``
              of the rows, default 0.2, stratified and seeded, is held out), ``task``
              ``classification`` (default) or ``regression``. Stored as the OpenML tables are
              (:mod:`mfoml.data.openml.prepare`): ``x_*.npy`` float32 ``(N, d)``; numeric
              columns as numbers, any other column (text, categories) as its category code
              (sorted categories, ``meta["options"]["nominal_features"]`` lists those columns,
              ``feature_types`` their categories); an empty cell is NaN, counted in
              ``meta["options"]["missing_values"]``. One-hot encoding and imputation happen
              inside each training fold, in the tabular track's models
              (:mod:`mfoml.tabular.models`) and for a network (:mod:`mfoml.tabular.netinput`),
              never over the whole table.
``textfile``  JSON Lines, CSV or TSV with a text column (``text_column``, default ``text``) and
              a ``label`` column (default ``label``), optional ``split`` and ``group`` columns;
              tokenized with the variant's ``text`` options as the packaged text sets are
              (:func:`mfoml.data.tokens.make_tokenizer`, :func:`~mfoml.data.tokens.text_arrays`;
              the store's text format, :mod:`mfoml.data.textsets`).
``arrays``    an ``.npz`` with ``x_train``, ``y_train`` and optionally ``x_test``, ``y_test``;
              ``x`` is ``(N, D)`` or ``(N, L)`` (kind ``tabular``), ``(N, C, L)`` (``signal``) or
              ``(N, C, H, W)`` (``image``), stored as float32; integer labels are renumbered
              ``0..C-1`` in sorted order (``class_names`` keeps the original values).

Groups (``group: <column>``, ``table`` and ``textfile``): ``groups_train.npy`` /
``groups_test.npy`` int64 ``(N,)`` ids (unique across both splits) and ``meta["group_column"]``;
the held-out test split never shares a group with training, and a ``split`` column that puts
one group on both sides is an error. ``per_class_cap`` keeps at most that many training samples
per class (:func:`mfoml.data.subsample.per_class_subset`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mfoml.data.files import (
    DEFAULT_TEST_FRACTION,
    FileSourceError,
    cell,
    encode_groups,
    encode_labels,
    holdout_split,
    read_frame,
    regression_target,
    resolve_path,
    split_mask,
)
from mfoml.data.store import FORMAT_VERSION, SourceInfo, register_source, write_normalized
from mfoml.data.subsample import per_class_subset

__all__ = ["prepare_arrays", "prepare_table", "table_columns"]

log = logging.getLogger(__name__)


def table_columns(columns: list[str], opts: dict[str, Any]) -> list[str]:
    """The feature columns of a table: ``features``, else every column but label, split, group."""
    if opts.get("features"):
        return [str(c) for c in opts["features"]]
    skip = {opts.get("label", "label"), opts.get("split"), opts.get("group")}
    return [str(c) for c in columns if c not in skip]


def _split(
    frame: Any,
    path: Path,
    opts: dict[str, Any],
    y: np.ndarray,
    groups: np.ndarray | None,
    seed: int,
    classification: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, test_idx)`` by the ``split`` column or a held-out ``test_fraction``."""
    if opts.get("split"):
        is_train = split_mask(frame[opts["split"]], path, opts["split"])
        tr, te = np.flatnonzero(is_train), np.flatnonzero(~is_train)
        if groups is not None:
            both = np.intersect1d(groups[tr], groups[te])
            if len(both):
                row = int(te[np.isin(groups[te], both)][0])
                raise FileSourceError(
                    f"{path}: row {row + 1}: group {cell(frame[opts['group']].iloc[row])!r} of column "
                    f"{opts['group']!r} is in both the train and the test split "
                    f"(column {opts['split']!r}); a group must stay on one side"
                )
        return tr, te
    frac = float(opts.get("test_fraction") or DEFAULT_TEST_FRACTION)
    return holdout_split(y, fraction=frac, seed=seed, groups=groups, stratified=classification)


def _cap(
    y_tr: np.ndarray, cap: int | None, seed: int, classification: bool, name: str
) -> np.ndarray | None:
    if cap is None:
        return None
    if not classification:
        raise ValueError(f"{name}: per_class_cap applies to classification data sets only")
    return per_class_subset(y_tr, int(cap), seed)


def _group_arrays(
    groups: np.ndarray | None, tr: np.ndarray, te: np.ndarray
) -> dict[str, np.ndarray | None]:
    if groups is None:
        return {"groups_train.npy": None, "groups_test.npy": None}
    return {"groups_train.npy": groups[tr], "groups_test.npy": groups[te] if len(te) else None}


def prepare_table(
    name: str,
    out_dir: str | os.PathLike[str],
    *,
    files: dict[str, Any],
    seed: int = 0,
    per_class_cap: int | None = None,
    grayscale: bool = False,
    **_: Any,
) -> dict[str, Any]:
    """Write the table ``files["path"]`` (module docstring) into ``out_dir``; return the meta."""
    import pandas as pd

    if grayscale:
        raise ValueError(f"{name}: grayscale applies to image data sets only")
    path = resolve_path(files["path"])
    frame = read_frame(path)
    label = files.get("label", "label")
    task = files.get("task") or "classification"
    classification = task == "classification"
    cols = table_columns(list(frame.columns), files)
    missing_cols = [c for c in [label, *cols] if c not in frame.columns]
    if missing_cols:
        raise FileSourceError(f"{path}: no column(s) {missing_cols}; it has {list(frame.columns)}")
    class_names: list[str] | None = None
    if classification:
        y, class_names = encode_labels(frame[label], path, label)
    else:
        y = regression_target(frame[label], path, label)
    group_col = files.get("group")
    groups = encode_groups(frame[group_col], path, group_col) if group_col else None

    feats, ftypes, nominal, missing = [], [], [], {}
    for c in cols:
        col = frame[c]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            values = col.astype("float64").to_numpy()
            ftypes.append({"name": c, "type": "numeric"})
        else:
            codes, cats = pd.factorize(col.astype("string"), sort=True)
            values = np.where(codes < 0, np.nan, codes).astype(np.float64)
            nominal.append(len(feats))
            ftypes.append({"name": c, "type": "nominal", "categories": [str(v) for v in cats]})
        if np.isinf(values).any():
            row = int(np.flatnonzero(np.isinf(values))[0])
            raise FileSourceError(f"{path}: row {row + 1}: column {c!r} is infinite")
        n_miss = int(np.isnan(values).sum())
        if n_miss:
            missing[c] = n_miss
        feats.append(values)
    if not feats:
        raise FileSourceError(f"{path}: no feature columns besides the label {label!r}")
    x = np.stack(feats, axis=1).astype(np.float32)
    tr, te = _split(frame, path, files, y, groups, seed, classification)
    keep = _cap(y[tr], per_class_cap, seed, classification, name)
    if keep is not None:
        tr = tr[keep]
    if classification:
        assert class_names is not None
        present = np.unique(y[tr])
        if len(present) < 2:
            raise FileSourceError(f"{path}: the training rows hold fewer than 2 classes")
    arrays: dict[str, np.ndarray | None] = {
        "x_train.npy": np.ascontiguousarray(x[tr]),
        "y_train.npy": y[tr],
        "x_test.npy": np.ascontiguousarray(x[te]) if len(te) else None,
        "y_test.npy": y[te] if len(te) else None,
        **_group_arrays(groups, tr, te),
    }
    meta = {
        "name": name,
        "source": f"table:{path}",
        "task": task,
        "kind": "tabular",
        "n_classes": len(class_names) if class_names is not None else None,
        "class_names": class_names,
        "feature_names": cols,
        "input_shape": [int(x.shape[1])],
        "n_train": int(len(tr)),
        "n_test": int(len(te)),
        "options": {
            **{k: files.get(k) for k in ("path", "label", "features", "split", "group")},
            "test_fraction": None if files.get("split") else files.get("test_fraction"),
            "feature_types": ftypes,
            "nominal_features": nominal,
            "missing_values": missing,
            "per_class_cap": per_class_cap,
            "seed": seed,
        },
        "format_version": FORMAT_VERSION,
    }
    if group_col:
        meta["group_column"] = group_col
    log.info(
        "%s: %s, %d train / %d test rows, %d features", name, path, len(tr), len(te), len(cols)
    )
    return write_normalized(Path(out_dir), arrays, meta)


def _kind_of(shape: tuple[int, ...]) -> str:
    return {2: "tabular", 3: "signal", 4: "image"}[len(shape)]


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``arrays`` file, checked: keys, dimensions, matching lengths and shapes,
    finite values. Raises :class:`FileSourceError` naming the file and the array."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001  (zip, format and pickle errors)
        raise FileSourceError(f"{path}: not a readable .npz file ({exc})") from exc
    for key in ("x_train", "y_train"):
        if key not in data:
            raise FileSourceError(f"{path}: no array {key!r} (it has {sorted(data)})")
    if ("x_test" in data) != ("y_test" in data):
        raise FileSourceError(f"{path}: x_test and y_test must both be present or both absent")
    for split in ("train", "test"):
        if f"x_{split}" not in data:
            continue
        x, y = data[f"x_{split}"], data[f"y_{split}"]
        if x.ndim not in (2, 3, 4):
            raise FileSourceError(
                f"{path}: x_{split} has shape {x.shape}; expected (N, D), (N, C, L) or (N, C, H, W)"
            )
        if y.ndim != 1 or len(y) != len(x):
            raise FileSourceError(
                f"{path}: y_{split} has shape {y.shape}; expected ({len(x)},) like x_{split}"
            )
        if not np.isfinite(x.astype(np.float64, copy=False)).all():
            bad = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0])
            raise FileSourceError(f"{path}: x_{split} sample {bad} has NaN or infinite values")
    if "x_test" in data and data["x_test"].shape[1:] != data["x_train"].shape[1:]:
        raise FileSourceError(
            f"{path}: x_test samples have shape {data['x_test'].shape[1:]}, x_train samples "
            f"{data['x_train'].shape[1:]}"
        )
    return data


def prepare_arrays(
    name: str,
    out_dir: str | os.PathLike[str],
    *,
    files: dict[str, Any],
    seed: int = 0,
    per_class_cap: int | None = None,
    grayscale: bool = False,
    **_: Any,
) -> dict[str, Any]:
    """Write the ``.npz`` ``files["path"]`` (module docstring) into ``out_dir``; return the meta.

    Without ``x_test`` the data set has no test split (the folds supply held-out data), unless
    ``test_fraction`` is set, which then holds out that share (stratified, seeded).
    """
    path = resolve_path(files["path"])
    data = load_npz(path)
    task = files.get("task") or "classification"
    classification = task == "classification"
    x_tr, y_tr = data["x_train"].astype(np.float32), data["y_train"]
    x_te, y_te = data.get("x_test"), data.get("y_test")
    class_names = None
    if classification:
        both = y_tr if y_te is None else np.concatenate([y_tr, y_te])
        if not np.issubdtype(both.dtype, np.integer) and not np.all(both == np.round(both)):
            raise FileSourceError(f"{path}: y_train/y_test are not integer class labels")
        values = np.unique(both)
        class_names = [str(v.item()) for v in values]
        y_tr = np.searchsorted(values, y_tr).astype(np.int64)
        y_te = None if y_te is None else np.searchsorted(values, y_te).astype(np.int64)
    else:
        y_tr = y_tr.astype(np.float64)
        y_te = None if y_te is None else y_te.astype(np.float64)
    if x_te is None and files.get("test_fraction"):
        tr, te = holdout_split(
            y_tr, fraction=float(files["test_fraction"]), seed=seed, stratified=classification
        )
        x_tr, y_tr, x_te, y_te = x_tr[tr], y_tr[tr], x_tr[te], y_tr[te]
    if x_te is not None:
        x_te = x_te.astype(np.float32)
    if grayscale:
        from mfoml.data.sources import to_grayscale

        x_tr = to_grayscale(x_tr)
        x_te = None if x_te is None else to_grayscale(x_te)
    keep = _cap(y_tr, per_class_cap, seed, classification, name)
    if keep is not None:
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    arrays: dict[str, np.ndarray | None] = {
        "x_train.npy": np.ascontiguousarray(x_tr),
        "y_train.npy": y_tr,
        "x_test.npy": None if x_te is None else np.ascontiguousarray(x_te),
        "y_test.npy": y_te,
    }
    meta = {
        "name": name,
        "source": f"arrays:{path}",
        "task": task,
        "kind": _kind_of(x_tr.shape),
        "n_classes": None if class_names is None else len(class_names),
        "class_names": class_names,
        "feature_names": None,
        "input_shape": [int(s) for s in x_tr.shape[1:]],
        "n_train": int(len(y_tr)),
        "n_test": 0 if y_te is None else int(len(y_te)),
        "options": {
            "path": files.get("path"),
            "test_fraction": files.get("test_fraction"),
            "grayscale": bool(grayscale),
            "per_class_cap": per_class_cap,
            "seed": seed,
        },
        "format_version": FORMAT_VERSION,
    }
    log.info("%s: %s, x_train %s", name, path, tuple(x_tr.shape))
    return write_normalized(Path(out_dir), arrays, meta)


register_source(SourceInfo(name="table", prepare=prepare_table, kind="tabular"))
register_source(SourceInfo(name="arrays", prepare=prepare_arrays))
