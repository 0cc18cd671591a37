"""The evaluation of a self-supervised run's layers (rule ``ssl_eval``; numpy and scikit-learn,
no torch).

Per layer, checkpoint and label set: NCC accuracy (class means of the train split; train and
test), NC1, linear-probe and k-NN accuracy (:func:`mfoml.collapse.probes.layer_probe_table`) and
the Besov smoothness alpha of the train split (:func:`mfoml.wavelets.probe.sparsity_probe` with
every setting of the ``probe`` section: forest, estimator, builder (``backend``) and the tau and
epsilon grids, :func:`mfoml.nets.layer_probe.probe_settings`, as in rule ``probe``).
There is no classifier, so the NCC mismatch against predictions does not apply:
``ncc_mismatch`` is empty and ``ncc_mismatch_status`` says why (never a zero).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mfoml.collapse.probes import layer_probe_table
from mfoml.data.subsample import stratified_subsample
from mfoml.nets.dumps import ActivationDump, dump_epochs, open_activations
from mfoml.nets.layer_probe import probe_settings
from mfoml.wavelets.probe import sparsity_probe

__all__ = ["ALPHA_COLUMNS", "add_alpha", "ssl_eval_table"]

log = logging.getLogger(__name__)

#: The alpha columns of ``ssl_eval.csv`` (``alpha_status`` says why alpha is missing).
ALPHA_COLUMNS = ["alpha", "alpha_min", "alpha_max", "alpha_status"]


def add_alpha(
    table: pd.DataFrame,
    train: ActivationDump,
    sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    layers: list[str],
    probe: Mapping[str, Any] | None,
    n_jobs: int,
    epoch: int,
) -> None:
    """Fill the :data:`ALPHA_COLUMNS` of ``table`` (one row per layer and label set) in place.

    Parameters
    ----------
    table : :func:`mfoml.collapse.probes.layer_probe_table` output (``layer, label_set``).
    train : the train split's dump (``layer(name)``: ``(N, D)``).
    sets : label set -> ``(train labels (N,), test labels)``.
    layers : the layers to probe.
    probe : the ``probe`` configuration section (``max_samples``, ``seed`` and the forest
        settings), or ``None`` when alpha is off (``ssl.eval.alpha: false``: NaN, and the status
        says so).
    n_jobs : threads of the forest.
    epoch : the checkpoint (for the log).
    """
    for col in ALPHA_COLUMNS:
        table[col] = np.nan if col != "alpha_status" else "not_computed (ssl.eval.alpha false)"
    if probe is None:
        return
    settings = probe_settings(probe, n_jobs)
    for set_name, (y, _) in sets.items():
        idx = stratified_subsample(y, probe["max_samples"], seed=int(probe["seed"]))
        for name in layers:
            x = train.layer(name)
            res = sparsity_probe(x[idx] if len(idx) < len(y) else x, y[idx], **settings)
            if res.status != "ok":
                log.warning("epoch %d layer %s (%s): %s", epoch, name, set_name, res.message)
            row = (table["layer"] == name) & (table["label_set"] == set_name)
            table.loc[row, ALPHA_COLUMNS] = [res.alpha, res.alpha_min, res.alpha_max, res.status]
            log.info(
                "epoch %d %-10s %s: alpha %.4f %s", epoch, name, set_name, res.alpha, res.status
            )


def ssl_eval_table(
    activations: str | os.PathLike[str], cfg: Mapping[str, Any], n_jobs: int
) -> pd.DataFrame:
    """The ``ssl_eval`` rule: every checkpoint of a self-supervised run's dumps.

    Parameters
    ----------
    activations : the run's ``activations/`` directory (``{epoch}/train`` and
        ``{epoch}/{test_split}`` dumps).
    cfg : the ``ssl.eval`` section (``layers, test_split, linear_probe {C, max_iter,
        max_train}, knn, alpha``) with the ``probe`` section under ``probe``.
    n_jobs : threads of the probe's forest.

    Returns
    -------
    ``ssl_eval.csv``: one row per (epoch, layer, label set) with the columns of
    :func:`mfoml.collapse.probes.layer_probe_table`, the :data:`ALPHA_COLUMNS` and
    ``test_split``, ``epoch`` first.

    Raises
    ------
    KeyError
        A layer of ``ssl.eval.layers`` that a dump does not have.
    """
    act_dir = Path(activations)
    frames = []
    for epoch in dump_epochs(act_dir):
        train = open_activations(act_dir / str(epoch) / "train")
        test = open_activations(act_dir / str(epoch) / cfg["test_split"])
        layers = train.layers if cfg["layers"] == "all" else list(cfg["layers"])
        missing = [la for la in layers if la not in train or la not in test]
        if missing:
            raise KeyError(
                f"config key 'ssl.eval.layers': {missing} not in the dumps of epoch {epoch} "
                f"(layers: {train.layers})"
            )
        sets = {
            s: (np.asarray(y), np.asarray(test.label_sets[s])) for s, y in train.label_sets.items()
        }
        linear, y_main = cfg["linear_probe"], sets[train.label_set][0]
        fit_rows = None
        if linear["max_train"] is not None:
            fit_rows = stratified_subsample(y_main, int(linear["max_train"]), seed=0)
        table = layer_probe_table(
            train,
            test,
            sets,
            layers=layers,
            linear={"C": linear["C"], "max_iter": linear["max_iter"]},
            fit_rows=fit_rows,
            knn=cfg["knn"],
        )
        add_alpha(table, train, sets, layers, cfg["probe"] if cfg["alpha"] else None, n_jobs, epoch)
        table.insert(0, "epoch", epoch)
        table["test_split"] = cfg["test_split"]
        frames.append(table)
        log.info("epoch %d: %d layers x %d label sets", epoch, len(layers), len(sets))
    return pd.concat(frames, ignore_index=True)
