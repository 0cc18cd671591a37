"""OpenML tabular data sets in the normalized format: :func:`prepare_openml`.

``prepare_openml("adult", out_dir)`` resolves a data set by name (the first active version, as
OpenML's own ``data/list/data_name`` query orders them) or by numeric id, downloads the
description JSON, the feature list JSON and the ARFF file through the REST client
(:class:`mfoml.data.openml.client.OpenMLClient`, cached under ``<download_dir>/openml/``),
verifies the ARFF against the description's ``md5_checksum``, and writes the project's
normalized data-set format (:func:`mfoml.data.store.write_normalized`): ``x_train.npy`` float32
``(N, d)``, ``y_train.npy`` (int64 class codes or float64 targets) and ``meta.json`` last, with
sha256 checksums.

Encoding of features: numeric columns as float; nominal columns as their integer code in the
order the ARFF header declares them (ordinal codes, fine for tree models; recorded in
``meta["options"]["feature_types"]``, their column indices in
``meta["options"]["nominal_features"]``); missing values (``?``) are stored as NaN, numeric and
nominal alike, and counted per column in ``meta["options"]["missing_values"]``: they are imputed
later, inside each training fold (:mod:`mfoml.tabular.models`), so that no held-out row informs
a fill value. String and date columns,
OpenML's ignore and row-id attributes are dropped (listed in ``meta["options"]["dropped"]``).
Rows with a missing target are dropped. ``per_class_cap`` and ``max_samples`` subsample with
:mod:`mfoml.data.subsample`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mfoml.data.openml.client import OpenMLClient
from mfoml.data.store import FORMAT_VERSION, SourceInfo, register_source, write_normalized
from mfoml.data.subsample import per_class_subset, stratified_subsample

__all__ = ["PREFIX", "parse_openml_name", "prepare_openml"]

#: Data-set ids of this source: ``openml-<name-or-id>[@version]``.
PREFIX = "openml-"

log = logging.getLogger(__name__)


def parse_openml_name(name: str) -> tuple[str | int, int | None]:
    """Split ``"openml-adult"``, ``"adult"``, ``"openml-1590"`` or ``"adult@2"``.

    Returns
    -------
    (name or integer id, version or None)
    """
    base = name[len("openml-") :] if name.startswith("openml-") else name
    if base.startswith("openml:"):
        base = base[len("openml:") :]
    version = None
    if "@" in base:
        base, v = base.rsplit("@", 1)
        version = int(v)
    if not base:
        raise ValueError(f"empty OpenML data-set name in {name!r}")
    return (int(base) if base.isdigit() else base), version


def _as_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, list):
        return [str(x) for x in v]
    return [s.strip() for s in str(v).split(",") if s.strip()]


def prepare_openml(
    name: str | int,
    out_dir: str | os.PathLike[str],
    *,
    download_dir: str | os.PathLike[str] | None = None,
    mirror: str | None = None,
    server: str | None = None,
    version: int | None = None,
    target: str | None = None,
    task: str | None = None,
    max_samples: int | None = None,
    per_class_cap: int | None = None,
    seed: int = 0,
    offline: bool = False,
    grayscale: bool = False,
) -> dict[str, Any]:
    """Download an OpenML data set and write it in the normalized data-set format.

    Parameters
    ----------
    name : ``"openml-<name-or-id>"``, a bare name or an integer id; ``"name@version"`` pins a
        version.
    out_dir : destination directory (``resources/data/openml-<name>``); written into a temp
        directory and renamed, ``meta.json`` last.
    download_dir : raw downloads root; OpenML responses are cached under
        ``download_dir/openml/`` at their URL paths (default ``resources/downloads``).
    mirror, server : base URL of the OpenML server (synonyms; default ``https://www.openml.org/``).
    version : data-set version when resolving by name.
    target : target attribute (default: the description's ``default_target_attribute``).
    task : ``"classification"`` or ``"regression"``; default: nominal target -> classification,
        numeric -> regression.
    max_samples : keep at most this many rows (stratified for classification, seeded).
    per_class_cap : keep at most this many rows per class (classification).
    seed : seed of the subsampling.
    offline : use only the cache.
    grayscale : not applicable to tables; must be False.

    Returns
    -------
    The meta dict written to ``meta.json``.
    """
    if grayscale:
        raise ValueError("prepare_openml: grayscale=True does not apply to tabular data")
    if mirror and server and mirror != server:
        raise ValueError("prepare_openml: give either mirror= or server=, not both")
    ident, v2 = parse_openml_name(str(name))
    version = version if version is not None else v2
    cache = Path(download_dir if download_dir is not None else "resources/downloads") / "openml"
    client = OpenMLClient(mirror or server, cache, offline=offline)
    data_id = ident if isinstance(ident, int) else client.resolve_name(ident, version)
    desc = client.description(data_id)
    feats = client.features(data_id)
    arff = client.arff(desc)

    tgt = target or desc.get("default_target_attribute")
    if not tgt:
        raise ValueError(f"OpenML data set {data_id} has no default target; pass target=")
    if "," in str(tgt):
        raise ValueError(f"OpenML data set {data_id}: multi-target {tgt!r} is not supported")
    if tgt not in arff.names:
        raise ValueError(f"OpenML data set {data_id}: target {tgt!r} not among the attributes")
    ignore = set(_as_list(desc.get("ignore_attribute"))) | set(
        _as_list(desc.get("row_id_attribute"))
    )
    for f in feats:
        if str(f.get("is_ignore")) == "true" or str(f.get("is_row_identifier")) == "true":
            ignore.add(f["name"])
    ignore.discard(tgt)

    ti = arff.names.index(tgt)
    ttype = arff.types[ti]
    if task is None:
        task = "classification" if ttype == "nominal" else "regression"
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    ycol = arff.columns[ti]
    class_names: list[str] | None = None
    if task == "classification":
        if ttype == "nominal":
            keep = ycol >= 0
            present = np.unique(ycol[keep])
            declared = arff.nominal_values[ti]
            assert declared is not None
            class_names = [declared[k] for k in present]
            remap = np.full(len(declared), -1, np.int64)
            remap[present] = np.arange(len(present))
            y = remap[np.where(keep, ycol, 0)]
        elif ttype == "numeric":
            keep = ~np.isnan(ycol)
            vals, y = np.unique(ycol[keep], return_inverse=True)
            y = np.asarray(y, np.int64)
            class_names = [repr(float(v)) for v in vals]
            full = np.zeros(len(ycol), np.int64)
            full[keep] = y
            y = full
        else:
            raise ValueError(f"target {tgt!r} has unsupported type {ttype}")
        y = y.astype(np.int64)
    else:
        if ttype != "numeric":
            raise ValueError(f"regression needs a numeric target; {tgt!r} is {ttype}")
        keep = ~np.isnan(ycol)
        y = ycol.astype(np.float64)

    cols, fnames, ftypes, missing, nominal, dropped = [], [], [], {}, [], sorted(ignore)
    for c, (fname, ftype) in enumerate(zip(arff.names, arff.types, strict=True)):
        if c == ti or fname in ignore:
            continue
        if ftype in ("string", "date"):
            dropped.append(fname)
            continue
        col = arff.columns[c]
        colf = col.astype(np.float64)
        miss = np.isnan(colf) if ftype == "numeric" else col < 0  # nominal: code -1 is '?'
        if np.any(miss & keep):
            missing[fname] = int(np.sum(miss & keep))
        colf[miss] = np.nan  # stored missing; imputed inside each training fold
        if ftype != "numeric":
            nominal.append(len(cols))
        cols.append(colf)
        fnames.append(fname)
        ftypes.append(
            {"name": fname, "type": ftype}
            | ({"categories": arff.nominal_values[c]} if ftype == "nominal" else {})
        )
    if not cols:
        raise ValueError(f"OpenML data set {data_id}: no usable feature columns")
    x = np.stack(cols, axis=1)[keep]
    y = y[keep]
    n_dropped_rows = int(np.sum(~keep))

    idx = np.arange(len(y))
    if per_class_cap is not None and task == "classification":
        idx = per_class_subset(y, per_class_cap, seed)
    if max_samples is not None and len(idx) > max_samples:
        pos = stratified_subsample(y[idx], max_samples, seed, stratified=task == "classification")
        idx = idx[pos]
    x, y = x[idx].astype(np.float32), y[idx]
    n_classes = int(len(class_names)) if class_names is not None else None
    if task == "classification" and n_classes is not None:
        # classes lost to subsampling: re-index so labels stay 0..C-1
        present = np.unique(y)
        if len(present) != n_classes:
            assert class_names is not None
            class_names = [class_names[k] for k in present]
            y = np.searchsorted(present, y).astype(np.int64)
            n_classes = len(present)

    ds_name = f"openml-{ident}" + (f"@{version}" if version is not None else "")
    meta: dict[str, Any] = {
        "name": ds_name,
        "source": f"openml:{data_id}",
        "task": task,
        "kind": "tabular",
        "n_classes": n_classes,
        "class_names": class_names,
        "feature_names": fnames,
        "input_shape": [int(x.shape[1])],
        "n_train": int(x.shape[0]),
        "n_test": 0,
        "options": {
            "openml_id": int(data_id),
            "openml_name": desc.get("name"),
            "openml_version": int(desc.get("version", 0)),
            "server": client.server,
            "target": tgt,
            "feature_types": ftypes,
            "dropped": dropped,
            "missing_values": missing,
            "nominal_features": nominal,
            "rows_dropped_missing_target": n_dropped_rows,
            "max_samples": max_samples,
            "per_class_cap": per_class_cap,
            "seed": seed,
            "md5_arff": desc.get("md5_checksum"),
        },
    }
    meta["format_version"] = FORMAT_VERSION
    meta = write_normalized(
        Path(out_dir),
        {
            "x_train.npy": np.ascontiguousarray(x),
            "y_train.npy": y,
            "x_test.npy": None,
            "y_test.npy": None,
        },
        meta,
    )
    log.info(
        "%s: id %s, %d rows x %d features, task %s%s",
        ds_name,
        data_id,
        x.shape[0],
        x.shape[1],
        task,
        f", {n_classes} classes" if n_classes else "",
    )
    return meta


def _prepare_source(
    name: str,
    out_dir: str | os.PathLike[str],
    *,
    grayscale: bool = False,
    download_dir: str | os.PathLike[str] | None = None,
    mirror: str | None = None,
    per_class_cap: int | None = None,
    seed: int = 0,
    **kw: Any,
) -> dict[str, Any]:
    """The registry's entry point: options that are set go to :func:`prepare_openml`."""
    if grayscale:
        raise ValueError(f"{name}: grayscale applies to image data sets only")
    extra: dict[str, Any] = {"seed": seed, **kw}
    if download_dir is not None:
        extra["download_dir"] = download_dir
    if mirror is not None:
        extra["mirror"] = mirror
    if per_class_cap is not None:
        extra["per_class_cap"] = per_class_cap
    return prepare_openml(name, out_dir, **extra)


register_source(
    SourceInfo(
        name=PREFIX,
        prepare=_prepare_source,
        prefix=True,
        hint=f"{PREFIX}<name-or-id>",
        kind="tabular",
    )
)
