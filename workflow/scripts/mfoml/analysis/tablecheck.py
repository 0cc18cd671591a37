"""Completeness checks of the per-run result tables the aggregation reads (issue 22).

:func:`mfoml.io.read_csv_checked` catches a file that cannot be parsed, lacks a column, has a
row cut short or a value that is not a number. A table can still be incomplete with every row
well formed: cut at a row boundary, or written by a job whose settings differ from the
configuration's. These checks compare a table's rows with the rows it must have, read from the
activation dumps' manifests (``results/runs/{run}/activations/{epoch}/{split}/manifest.json``):
``probe.csv`` one row per checkpoint x probed split x probed layer, ``ncc.csv`` one row per
checkpoint x layer, ``metrics.csv`` one row per epoch 1..E with E at least the last
checkpoint's epoch. Every error starts with the file's path, as the README promises.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mfoml.io import read_json

__all__ = [
    "checkpoint_epochs",
    "check_epochs",
    "check_rows",
    "dump_layers",
    "ncc_rows",
    "probe_rows",
]

_FIX = "delete the file (or use --forcerun on the rule that writes it) to recompute it"


def checkpoint_epochs(act_dir: str | os.PathLike[str]) -> list[int]:
    """The checkpoint epochs dumped under ``act_dir`` (its integer-named subfolders), sorted."""
    return sorted(int(p.name) for p in Path(act_dir).iterdir() if p.is_dir() and p.name.isdigit())


def dump_layers(split_dir: str | os.PathLike[str]) -> list[str]:
    """The layer names of one dump, from its ``manifest.json``, in probe order."""
    return [entry["name"] for entry in read_json(Path(split_dir) / "manifest.json")["layers"]]


def _layers(split_dir: Path, layers: str | Sequence[str]) -> list[str]:
    return dump_layers(split_dir) if layers == "all" else list(layers)


def probe_rows(
    act_dir: str | os.PathLike[str], splits: Sequence[str], layers: str | Sequence[str]
) -> set[tuple[int, str, str]]:
    """The ``(epoch, split, layer)`` rows ``probe.csv`` must have: every checkpoint, every
    ``probe.splits`` entry plus ``analysis`` where the checkpoint has that dump, and every layer
    of ``probe.layers`` (``"all"``: the dump manifest's layers)."""
    act = Path(act_dir)
    out = set()
    for epoch in checkpoint_epochs(act):
        extra = ["analysis"] if (act / str(epoch) / "analysis").is_dir() else []
        for split in [*splits, *extra]:
            for layer in _layers(act / str(epoch) / split, layers):
                out.add((epoch, split, layer))
    return out


def ncc_rows(act_dir: str | os.PathLike[str], layers: str | Sequence[str]) -> set[tuple[int, str]]:
    """The ``(epoch, layer)`` rows ``ncc.csv`` must have: every checkpoint x every layer of
    ``ncc.layers`` (``"all"``: the train dump manifest's layers)."""
    act = Path(act_dir)
    return {
        (epoch, layer)
        for epoch in checkpoint_epochs(act)
        for layer in _layers(act / str(epoch) / "train", layers)
    }


def _show(keys: Iterable[tuple[Any, ...]], limit: int = 4) -> str:
    items = sorted(keys, key=str)
    text = ", ".join(str(k) for k in items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_rows(
    frame: Any,
    path: str | os.PathLike[str],
    keys: Sequence[str],
    expected: set[tuple[Any, ...]],
) -> None:
    """Check that ``frame`` (a table read from ``path``) has exactly the rows ``expected``.

    Parameters
    ----------
    frame : pandas DataFrame with the ``keys`` columns (``epoch`` numeric).
    keys : the columns identifying a row, e.g. ``("epoch", "split", "layer")``.
    expected : the key tuples (``epoch`` as int).

    Raises
    ------
    ValueError
        ``"{path}: ..."``: a row with an empty key, duplicated rows, missing or unexpected rows
        (the first few named), and how to recompute the file.
    """
    part = frame[list(keys)]
    empty = part.isna().any(axis=1).to_numpy()
    if empty.any():
        row = int(empty.nonzero()[0][0]) + 1
        raise ValueError(f"{path}: row {row} has an empty {list(keys)} entry; {_FIX}")
    found = [
        tuple(int(v) if k == "epoch" else str(v) for k, v in zip(keys, r, strict=True))
        for r in part.itertuples(index=False)
    ]
    dup = {k for k in found if found.count(k) > 1}
    if dup:
        raise ValueError(f"{path}: duplicated rows {_show(dup)} ({list(keys)}); {_FIX}")
    missing, extra = expected - set(found), set(found) - expected
    if missing or extra:
        what = []
        if missing:
            what.append(
                f"{len(missing)} of {len(expected)} expected rows missing: {_show(missing)}"
            )
        if extra:
            what.append(f"{len(extra)} rows not expected: {_show(extra)}")
        raise ValueError(
            f"{path}: {'; '.join(what)} ({list(keys)}, from the activation dumps' manifests and "
            f"the configuration); the file is truncated or from other settings; {_FIX}"
        )


def check_epochs(frame: Any, path: str | os.PathLike[str], last_checkpoint: int) -> None:
    """Check that ``metrics.csv`` (read from ``path``) has one row per epoch 1..E, in order,
    with E >= ``last_checkpoint``; a ``ValueError`` naming the file otherwise."""
    epochs = frame["epoch"].tolist()
    if any(e != e for e in epochs):  # NaN
        raise ValueError(f"{path}: a row has no epoch; {_FIX}")
    want = list(range(1, len(epochs) + 1))
    if last_checkpoint == 0 and [int(e) for e in epochs] == [0]:
        want = [0]  # train.epochs 0: the given weights, evaluated as the row of epoch 0
    if [int(e) for e in epochs] != want or len(epochs) < last_checkpoint:
        raise ValueError(
            f"{path}: epochs {_show([(int(e),) for e in epochs], 6)}, expected 1..E in order "
            f"with E >= {last_checkpoint} (the last checkpoint); the file is truncated or "
            f"corrupted; {_FIX}"
        )
