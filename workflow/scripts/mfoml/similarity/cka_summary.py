"""The CKA tables over all runs (rule ``similarity_tables``) and their summaries over folds.

- :func:`run_cka_tables`: every run's ``cka.csv`` (:func:`mfoml.similarity.tables.run_cka_table`)
  with the run columns in front, split into the layer x layer table of each checkpoint
  (``cka_layers``) and each layer across checkpoints (``cka_checkpoints``), each with its
  summary over folds (``cka_mean, cka_std, cka_n``; :func:`mfoml.analysis.aggregate.summarize`);
- :func:`cross_run_tables`: the CKA of the same layer between the runs of a group
  (:func:`mfoml.similarity.tables.cross_run_cka_table`) with both runs' descriptions
  (``cka_runs``) and its summary over folds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from mfoml.analysis.aggregate import RUN_COLUMNS, summarize, with_run_columns
from mfoml.analysis.statistics import fold_statistics
from mfoml.io import read_csv_checked
from mfoml.similarity.tables import CKA_COLUMNS

__all__ = ["PAIR_OWN", "PAIR_SHARED", "cross_run_tables", "run_cka_tables"]

#: Run columns the two runs of a cross-run pair share (same samples), and those of each run
#: (suffixes ``_a`` and ``_b``).
PAIR_SHARED = ["experiment", "dataset", "seed", "fold"]
PAIR_OWN = ["model", "activation", "loss", "noise"]
_LAYER_KEYS = ["layer_a", "layer_index_a", "layer_b", "layer_index_b"]


def run_cka_tables(
    runs: Sequence[Mapping[str, Any]],
    paths: Sequence[str | os.PathLike[str]],
    name: str,
) -> dict[str, pd.DataFrame]:
    """The per-run CKA tables over all runs.

    Parameters
    ----------
    runs : run descriptions (:data:`mfoml.analysis.aggregate.RUN_COLUMNS`).
    paths : each run's ``cka.csv`` (read checked: a corrupted file is named), in run order.
    name : the configuration's name (first column).

    Returns
    -------
    ``{"cka_layers", "cka_layers_summary", "cka_checkpoints", "cka_checkpoints_summary"}``:
    ``cka_layers`` has the run columns, ``epoch, layer_a, layer_index_a, layer_b,
    layer_index_b, n_samples, cka``; ``cka_checkpoints`` the run columns, ``layer,
    layer_index, epoch_a, epoch_b, n_samples, cka``; each summary ``cka_mean, cka_std, cka_n``
    over folds.
    """
    frames = [
        with_run_columns(
            read_csv_checked(path, CKA_COLUMNS, ("epoch_a", "epoch_b", "n_samples", "cka")), r
        )
        for r, path in zip(runs, paths, strict=True)
    ]
    cka = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=RUN_COLUMNS + CKA_COLUMNS)
    )
    by_layers = (
        cka[cka["kind"] == "layers"]
        .rename(columns={"epoch_a": "epoch"})
        .drop(columns=["kind", "epoch_b"])
    )
    by_ckpt = (
        cka[cka["kind"] == "checkpoints"]
        .rename(columns={"layer_a": "layer", "layer_index_a": "layer_index"})
        .drop(columns=["kind", "layer_b", "layer_index_b"])
    )
    for frame in (by_layers, by_ckpt):
        frame.insert(0, "name", name)
    return {
        "cka_layers": by_layers,
        "cka_layers_summary": summarize(
            by_layers.drop(columns=["name"]), ["epoch", *_LAYER_KEYS], ["cka"]
        ),
        "cka_checkpoints": by_ckpt,
        "cka_checkpoints_summary": summarize(
            by_ckpt.drop(columns=["name"]),
            ["layer", "layer_index", "epoch_a", "epoch_b"],
            ["cka"],
        ),
    }


def cross_run_tables(
    pairs: pd.DataFrame, runs: Sequence[Mapping[str, Any]], name: str
) -> dict[str, pd.DataFrame]:
    """The cross-run CKA table with the runs' descriptions, and its summary over folds.

    Parameters
    ----------
    pairs : :func:`mfoml.similarity.tables.cross_run_cka_table` output (``run_a, run_b,
        epoch, layer, layer_index_a, layer_index_b, n_samples, cka, status``).
    runs : run descriptions (every run of ``pairs``).
    name : the configuration's name (first column).

    Returns
    -------
    ``{"cka_runs", "cka_runs_summary"}``: ``cka_runs`` is ``name``, :data:`PAIR_SHARED`, the
    :data:`PAIR_OWN` columns of run a then of run b (suffixes ``_a``, ``_b``), then ``pairs``;
    the summary ``cka_mean, cka_std, cka_n`` over folds per pair of variants, epoch and layer.
    """
    meta = {r["run"]: r for r in runs}
    pairs = pairs.copy()
    for side in ("b", "a"):  # inserted in front: a first
        for col in reversed(PAIR_OWN):
            pairs.insert(0, f"{col}_{side}", pairs[f"run_{side}"].map(lambda r, c=col: meta[r][c]))
    for col in reversed(PAIR_SHARED):
        pairs.insert(0, col, pairs["run_a"].map(lambda r, c=col: meta[r][c]))
    pairs.insert(0, "name", name)
    group_cols = [
        "experiment",
        "dataset",
        "seed",
        *[f"{c}_a" for c in PAIR_OWN],
        *[f"{c}_b" for c in PAIR_OWN],
        "epoch",
        "layer",
        "layer_index_a",
        "layer_index_b",
    ]
    return {"cka_runs": pairs, "cka_runs_summary": fold_statistics(pairs, group_cols, ["cka"])}
