"""CKA tables read from activation dumps: within a run (layer x layer per checkpoint, each layer
across checkpoints) and across runs (the same layer of two runs on the same samples).

Every representation is the seeded stratified subsample of the dump's samples that the probe
draws (:func:`mfoml.data.subsample.stratified_subsample` on the true labels, ``max_samples``,
``seed``), read from the float16 memmap, so all the checkpoints of a run, and the runs of one
fold and data set, are compared on the same samples (checked: the labels must agree). Only
``(n, n)`` Gram matrices are kept (:mod:`mfoml.similarity.cka`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any, Protocol

import numpy as np
import pandas as pd

from mfoml.data.subsample import stratified_subsample
from mfoml.similarity.cka import cka_matrix, gram

log = logging.getLogger(__name__)

__all__ = [
    "CKA_COLUMNS",
    "DumpLike",
    "read_layer",
    "subsample_indices",
    "run_cka_table",
    "cross_run_cka_table",
]

#: Columns of the per-run CKA table (``kind`` is ``layers`` or ``checkpoints``).
CKA_COLUMNS = [
    "kind",
    "epoch_a",
    "layer_a",
    "layer_index_a",
    "epoch_b",
    "layer_b",
    "layer_index_b",
    "n_samples",
    "cka",
]


class DumpLike(Protocol):
    """What is read from an activation dump (:class:`mfoml.nets.dumps.DumpLike`; this
    package does not import :mod:`mfoml.nets`)."""

    path: Any
    layers: list[str]
    true_labels: np.ndarray

    def layer(self, name: str) -> np.ndarray: ...

    def entry(self, name: str) -> dict: ...


def subsample_indices(dump: DumpLike, max_samples: int | None, seed: int) -> np.ndarray:
    """Sorted indices ``(n,)`` of the seeded stratified subsample of ``dump`` (true labels)."""
    return stratified_subsample(np.asarray(dump.true_labels), max_samples, seed=int(seed))


def read_layer(dump: DumpLike, name: str, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of layer ``name`` of ``dump``: float16 ``(n, D)``."""
    x = dump.layer(name)
    return np.asarray(x if len(idx) == len(x) else x[idx])


def _layers(dump: DumpLike, layers: Sequence[str] | str) -> list[str]:
    if layers == "all":
        return list(dump.layers)
    missing = [la for la in layers if la not in dump.layers]
    if missing:
        raise KeyError(
            f"config key 'similarity.layers': {missing} not in the dump {dump.path} "
            f"(layers: {dump.layers})"
        )
    return list(layers)


def run_cka_table(
    dumps: Mapping[int, DumpLike],
    *,
    layers: Sequence[str] | str = "all",
    max_samples: int | None = 500,
    seed: int = 0,
    across_layers: bool = True,
    across_checkpoints: bool = True,
) -> pd.DataFrame:
    """CKA within one run's activation dumps ``dumps`` (checkpoint epoch -> dump of one split).

    Returns
    -------
    DataFrame with :data:`CKA_COLUMNS`: ``kind = layers`` rows for every pair of layers
    ``(a, b)`` (both orders and the diagonal, the full heat map) at each checkpoint
    (``epoch_a = epoch_b``); ``kind = checkpoints`` rows for each layer and every pair of
    checkpoints (``layer_a = layer_b``, both orders). ``cka`` is dimensionless.
    """
    if not dumps:
        return pd.DataFrame(columns=CKA_COLUMNS)
    first = next(iter(dumps.values()))
    idx = subsample_indices(first, max_samples, seed)
    ref = np.asarray(first.true_labels)[idx]
    names = _layers(first, layers)
    index = {n: int(first.entry(n)["index"]) for n in names}
    grams: dict[tuple[int, str], np.ndarray] = {}
    for epoch, dump in dumps.items():
        if not np.array_equal(np.asarray(dump.true_labels)[idx], ref):
            raise ValueError(f"{dump.path}: other samples than the dump of epoch {min(dumps)}")
        for name in names:
            grams[(epoch, name)] = gram(read_layer(dump, name, idx))
    rows: list[dict[str, Any]] = []

    def add(kind: str, pairs: list[tuple[int, str]], mat: np.ndarray) -> None:
        for i, (ea, la) in enumerate(pairs):
            for j, (eb, lb) in enumerate(pairs):
                rows.append(
                    dict(
                        kind=kind,
                        epoch_a=ea,
                        layer_a=la,
                        layer_index_a=index[la],
                        epoch_b=eb,
                        layer_b=lb,
                        layer_index_b=index[lb],
                        n_samples=len(idx),
                        cka=float(mat[i, j]),
                    )
                )

    if across_layers:
        for epoch in dumps:
            keys = [(epoch, n) for n in names]
            add("layers", keys, cka_matrix([grams[k] for k in keys]))
    if across_checkpoints:
        for name in names:
            keys = [(e, name) for e in dumps]
            add("checkpoints", keys, cka_matrix([grams[k] for k in keys]))
    return pd.DataFrame(rows, columns=CKA_COLUMNS)


def cross_run_cka_table(
    run_dumps: Mapping[str, Mapping[int, DumpLike]],
    groups: Sequence[Sequence[str]],
    *,
    layers: Sequence[str] | str = "all",
    max_samples: int | None = 500,
    seed: int = 0,
) -> pd.DataFrame:
    """CKA of the same layer (by name) between every pair of runs of each group, at the last
    checkpoint the two runs share.

    Parameters
    ----------
    run_dumps : run id -> {checkpoint epoch: dump of one split}.
    groups : lists of run ids compared pairwise (e.g. the runs of one sweep, data set, fold and
        seed: the same samples).

    Returns
    -------
    DataFrame ``run_a, run_b, epoch, layer, layer_index_a, layer_index_b, n_samples, cka,
    status``; ``status`` is ``ok`` or ``different_samples`` (the two dumps' subsampled labels
    differ: NaN, logged).
    """
    rows: list[dict[str, Any]] = []
    for group in groups:
        dumps = {rid: run_dumps[rid] for rid in group}
        cache: dict[tuple[str, int, str], np.ndarray] = {}
        for ra, rb in combinations(group, 2):
            common = sorted(set(dumps[ra]) & set(dumps[rb]))
            if not common:
                log.warning("runs %s and %s share no checkpoint epoch: not compared", ra, rb)
                continue
            epoch = common[-1]
            da, db = dumps[ra][epoch], dumps[rb][epoch]
            ia = subsample_indices(da, max_samples, seed)
            ib = subsample_indices(db, max_samples, seed)
            same = len(ia) == len(ib) and np.array_equal(
                np.asarray(da.true_labels)[ia], np.asarray(db.true_labels)[ib]
            )
            names_a = _layers(da, layers)
            shared = [n for n in names_a if n in db.layers]
            if not same:
                log.warning("runs %s and %s: dumps of other samples, CKA not computed", ra, rb)
            for name in shared:
                value = np.nan
                if same:
                    for rid, d, i in ((ra, da, ia), (rb, db, ib)):
                        if (rid, epoch, name) not in cache:
                            cache[(rid, epoch, name)] = gram(read_layer(d, name, i))
                    value = float(
                        cka_matrix([cache[(ra, epoch, name)]], [cache[(rb, epoch, name)]])[0, 0]
                    )
                rows.append(
                    dict(
                        run_a=ra,
                        run_b=rb,
                        epoch=epoch,
                        layer=name,
                        layer_index_a=int(da.entry(name)["index"]),
                        layer_index_b=int(db.entry(name)["index"]),
                        n_samples=len(ia),
                        cka=value,
                        status="ok" if same else "different_samples",
                    )
                )
    cols = [
        "run_a",
        "run_b",
        "epoch",
        "layer",
        "layer_index_a",
        "layer_index_b",
        "n_samples",
        "cka",
        "status",
    ]
    return pd.DataFrame(rows, columns=cols)
