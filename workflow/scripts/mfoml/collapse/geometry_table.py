"""Class-geometry measures (:mod:`mfoml.collapse.geometry`) for every layer of an activation
dump: one row per layer, merged by the ``ncc`` rule into its per-layer table."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mfoml.collapse.geometry import GEOMETRY_COLUMNS, geometry_metrics
from mfoml.collapse.streaming import is_torch
from mfoml.collapse.table import dump_source

__all__ = ["geometry_table"]

log = logging.getLogger(__name__)


def _layer_dim(dump: Any, name: str) -> int:
    src = dump_source(dump, name)
    if hasattr(src, "shape"):
        return int(src.shape[1])
    return int(np.asarray(next(iter(src(1)))).shape[1])


def geometry_table(
    dump: Any,
    *,
    layers: Sequence[str] | None = None,
    n_classes: int | None = None,
    classifier_weight: Any = None,
    penultimate_layer: str | None = None,
    means: Mapping[str, np.ndarray] | None = None,
    chunk_size: int = 4096,
    max_dim: int = 1024,
    seed: int = 0,
) -> pd.DataFrame:
    """Geometry measures of every layer of one activation dump (the train split).

    Parameters
    ----------
    dump : an activation dump (``layers``, ``labels``, optional ``true_labels``, and
        ``layer(name)`` giving the ``(N, D)`` float16 memmap or ``iter_chunks(name,
        chunk_size)``). The true labels are used (``true_labels`` when present).
    layers : subset of layers (default all, in probe order).
    n_classes : default: the dimension of the ``"logits"`` layer, else ``W.shape[0]``, else
        ``max(labels) + 1``.
    classifier_weight : (C, D) last-layer weight; used on ``penultimate_layer`` when the dump
        stores that layer unreduced (its dimension equals ``W.shape[1]``); elsewhere the
        classifier columns are NaN.
    penultimate_layer : default: the layer just before ``"logits"``.
    means : optional ``{layer: (C, D) class means}`` already computed on the same dump and
        labels (saves the first pass).
    chunk_size, max_dim, seed : see :func:`mfoml.collapse.geometry.geometry_metrics`.

    Returns
    -------
    pandas.DataFrame, one row per layer: ``layer`` and the ``GEOMETRY_COLUMNS``.
    """
    names = list(dump.layers if layers is None else layers)
    unknown = [x for x in names if x not in dump.layers]
    if unknown:
        raise ValueError(f"layers {unknown} are not in the dump (has {list(dump.layers)})")
    true = getattr(dump, "true_labels", None)
    y = np.asarray(dump.labels if true is None else true)
    all_layers = list(dump.layers)
    if penultimate_layer is None and "logits" in all_layers and all_layers.index("logits") > 0:
        penultimate_layer = all_layers[all_layers.index("logits") - 1]
    w = None
    if classifier_weight is not None:
        w = classifier_weight.detach().cpu().numpy() if is_torch(classifier_weight) else None
        w = np.asarray(classifier_weight if w is None else w, dtype=np.float64)
    if n_classes is None:
        if "logits" in all_layers:
            n_classes = _layer_dim(dump, "logits")
        elif w is not None:
            n_classes = int(w.shape[0])
        else:
            n_classes = int(y.max()) + 1
    rows = []
    for name in names:
        w_here = None
        if w is not None and name == penultimate_layer:
            if _layer_dim(dump, name) == w.shape[1]:
                w_here = w
            else:
                log.info("layer %r is stored reduced: no self-duality error (NaN)", name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # inf/NaN are documented values
                met = geometry_metrics(
                    dump_source(dump, name),
                    y,
                    int(n_classes),
                    means=None if means is None else means.get(name),
                    classifier_weight=w_here,
                    chunk_size=chunk_size,
                    max_dim=max_dim,
                    seed=seed,
                )
        except ValueError as exc:
            raise type(exc)(f"layer {name!r}: {exc}") from exc
        rows.append({"layer": name, **{k: met[k] for k in GEOMETRY_COLUMNS}})
        log.info(
            "layer %r (D=%d): cdnv=%.4g trace_ratio=%.4g effective_rank=%.2f (%s)",
            name,
            met["dim"],
            met["cdnv"],
            met["trace_ratio"],
            met["effective_rank"],
            met["effective_rank_method"],
        )
    return pd.DataFrame(rows, columns=["layer", *GEOMETRY_COLUMNS])
