"""The sparsity probe over the activation dumps of a run (rule ``probe``; numpy only, no torch).

:func:`probe_table` runs :func:`mfoml.wavelets.probe.sparsity_probe` on every probed layer,
checkpoint and split of a run's dumps; :func:`forest_settings` and :func:`probe_settings` map the
``probe`` configuration section to the probe's keywords (the ``ssl_eval`` rule uses the first,
:mod:`mfoml.nets.ssl_eval`).

Splits: ``probe.splits``, plus ``analysis`` where the run has an analysis data set (its dump
exists). With ``probe.random_label_baseline`` the same probe (same samples, same forest settings
and seed) also runs on the layer with the labels permuted, one permutation per checkpoint and
split shared by all layers (seeded by ``probe.seed``, the epoch and the split's position).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mfoml.data.subsample import stratified_subsample
from mfoml.nets.dumps import ActivationDump, dump_epochs, open_activations
from mfoml.wavelets.probe import random_labels_for_baseline, sparsity_probe

__all__ = ["GRID_KEYS", "forest_settings", "probe_dump", "probe_settings", "probe_table"]

log = logging.getLogger(__name__)

#: The tau and epsilon grids of the angle estimators (``probe`` keys; the log-log estimator has
#: none).
GRID_KEYS = ("tau_min", "tau_max", "tau_step", "eps_min", "eps_max", "n_eps")


def forest_settings(cfg: Mapping[str, Any], n_jobs: int) -> dict[str, Any]:
    """The keywords of :func:`mfoml.wavelets.probe.sparsity_probe` for a classification probe
    with the forest and estimator of the ``probe`` section ``cfg`` (``n_trees, max_depth,
    norm_weight, max_features, min_samples_leaf, bootstrap, seed, method``) on ``n_jobs``
    threads."""
    return {
        "task": "classification",
        "n_trees": int(cfg["n_trees"]),
        "max_depth": int(cfg["max_depth"]),
        "norm_weight": cfg["norm_weight"],
        "max_features": cfg["max_features"],
        "min_samples_leaf": int(cfg["min_samples_leaf"]),
        "bootstrap": bool(cfg["bootstrap"]),
        "random_state": int(cfg["seed"]),
        "n_jobs": int(n_jobs),
        "method": cfg["method"],
    }


def probe_settings(cfg: Mapping[str, Any], n_jobs: int) -> dict[str, Any]:
    """:func:`forest_settings` with the forest builder (``backend``) and, for the angle
    estimators, the tau and epsilon grids (:data:`GRID_KEYS`): every setting of the ``probe``
    rule."""
    grids = {} if cfg["method"] == "loglog" else {k: cfg[k] for k in GRID_KEYS}
    return {**forest_settings(cfg, n_jobs), "backend": cfg["backend"], **grids}


def probe_dump(
    dump: ActivationDump,
    layers: list[str],
    settings: Mapping[str, Any],
    *,
    max_samples: int | None,
    seed: int,
    epoch: int,
    split: str,
    split_no: int,
    random_label_baseline: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The probe of every layer of ``layers`` of one dump (one checkpoint and split).

    Parameters
    ----------
    dump : the dump (``labels``, ``entry(name)``, ``layer(name)`` an ``(N, D)`` float16 memmap).
    layers : the layers to probe, in order.
    settings : :func:`probe_settings`.
    max_samples : a stratified subsample of at most this many samples is probed (``None``: all),
        seeded by ``seed``.
    epoch, split, split_no : the checkpoint, the split and its position among the probed splits
        (seed of the random-label permutation).
    random_label_baseline : also probe with the labels permuted.

    Returns
    -------
    ``(rows, curves)``: one ``probe.csv`` row per layer (``epoch, split, layer, layer_index,
    dim, reduction, n_samples, method, backend, alpha, alpha_min, alpha_max, status, n_tau,
    n_wavelets`` and with the baseline ``alpha_random, alpha_random_status,
    n_wavelets_random``) and the full results (``probe_curves.json`` entries).
    """
    y = np.asarray(dump.labels)
    idx = stratified_subsample(y, max_samples, seed=seed)
    y_random = random_labels_for_baseline(y[idx], seed, epoch, split_no)
    rows, curves = [], []
    for name in layers:
        entry = dump.entry(name)
        x = dump.layer(name)
        if len(idx) < len(y):
            x = x[idx]
        res = sparsity_probe(x, y[idx], **settings)
        if res.status != "ok":
            log.warning(
                "epoch %d %s layer %s: %s (%s)", epoch, split, name, res.status, res.message
            )
        row = {
            "epoch": epoch,
            "split": split,
            "layer": name,
            "layer_index": int(entry["index"]),
            "dim": int(entry["dim"]),
            "reduction": json.dumps(entry.get("reduction")),
            "n_samples": int(len(idx)),
            "method": res.method,
            "backend": res.metadata["backend"],
            "alpha": res.alpha,
            "alpha_min": res.alpha_min,
            "alpha_max": res.alpha_max,
            "status": res.status,
            "n_tau": res.n_tau,
            "n_wavelets": res.n_wavelets,
        }
        if random_label_baseline:
            base = sparsity_probe(x, y_random, **settings)
            row.update(
                alpha_random=base.alpha,
                alpha_random_status=base.status,
                n_wavelets_random=base.n_wavelets,
            )
            log.info("epoch %d %s %-10s random-label alpha %.4f", epoch, split, name, base.alpha)
        rows.append(row)
        curves.append({"epoch": epoch, "split": split, "layer": name, **res.to_dict()})
        log.info(
            "epoch %d %s %-10s alpha %.4f [%s, %s] %s",
            epoch,
            split,
            name,
            res.alpha,
            res.alpha_min,
            res.alpha_max,
            res.status,
        )
    return rows, curves


def probe_table(
    activations: str | os.PathLike[str], cfg: Mapping[str, Any], n_jobs: int
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The ``probe`` rule: the probe of every checkpoint, split and layer of a run's dumps.

    Parameters
    ----------
    activations : the run's ``activations/`` directory (``{epoch}/{split}/`` dumps).
    cfg : the ``probe`` configuration section (``splits, layers, max_samples, seed,
        random_label_baseline`` and the settings of :func:`probe_settings`).
    n_jobs : threads of the forest.

    Returns
    -------
    ``(table, curves)``: ``probe.csv`` (rows of :func:`probe_dump`, by checkpoint, split and
    layer) and the ``probe_curves.json`` entries.

    Raises
    ------
    KeyError
        A layer of ``probe.layers`` that a dump does not have.
    """
    act_dir = Path(activations)
    settings = probe_settings(cfg, n_jobs)
    rows, curves = [], []
    for epoch in dump_epochs(act_dir):
        # the analysis data set's split (runs with an analysis_dataset) is probed as well
        extra = ["analysis"] if (act_dir / str(epoch) / "analysis").is_dir() else []
        for split_no, split in enumerate([*cfg["splits"], *extra]):
            dump = open_activations(act_dir / str(epoch) / split)
            layers = dump.layers if cfg["layers"] == "all" else cfg["layers"]
            missing = [la for la in layers if la not in dump]
            if missing:
                raise KeyError(
                    f"config key 'probe.layers': {missing} not in the dump {dump.path} "
                    f"(layers: {dump.layers})"
                )
            r, c = probe_dump(
                dump,
                list(layers),
                settings,
                max_samples=cfg["max_samples"],
                seed=int(cfg["seed"]),
                epoch=epoch,
                split=split,
                split_no=split_no,
                random_label_baseline=bool(cfg["random_label_baseline"]),
            )
            rows += r
            curves += c
    return pd.DataFrame(rows), curves
