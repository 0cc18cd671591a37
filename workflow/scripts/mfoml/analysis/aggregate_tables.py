"""The ``aggregate`` rule's work: its per-run inputs read and checked, and every table it writes.

- :func:`read_run_tables`: each run's ``probe.csv``, ``ncc.csv``, ``metrics.csv``, ``run.json``
  and ``intrinsic_dim.csv``, read with :func:`mfoml.io.read_csv_checked` (a corrupted file is
  named) and checked to hold the rows its dumps and the configuration call for
  (:mod:`mfoml.analysis.tablecheck`);
- :func:`checkpoint_tables`: the classification metrics of every dumped checkpoint and split
  (from the dumps' labels and predictions) and the final model's confusion matrix;
- :func:`aggregate_tables`: from these and the layers table, every output table (``layers``,
  the fold summaries, the correlation points and run-level correlations of
  :mod:`mfoml.analysis.runstats`, the study tables of :mod:`mfoml.analysis.studies`), keyed by
  the rule's output names.

The dumps are opened by a function the caller passes (``mfoml.nets.dumps.open_activations``),
so that this layer does not import the networks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from mfoml.analysis import aggregate as agg
from mfoml.analysis import runstats, stability, studies, tablecheck
from mfoml.io import read_csv_checked, read_json

__all__ = [
    "CHECKPOINT_VALUES",
    "EPOCH_VALUES",
    "EPOCH_VALUE_SUFFIXES",
    "RunTables",
    "aggregate_tables",
    "checkpoint_tables",
    "epoch_summary_columns",
    "read_run_tables",
]

log = logging.getLogger(__name__)

#: ``epochs_summary.csv`` summarizes every column of ``epochs.csv`` ending with one of these
#: and the :data:`EPOCH_VALUES`.
EPOCH_VALUE_SUFFIXES = ("_loss", "_acc")
#: Per-epoch measures summarized by exact name.
EPOCH_VALUES = ("grad_norm_mean", "grad_norm_max", "sharpness")
#: The columns of ``checkpoints.csv`` that ``checkpoints_summary.csv`` summarizes.
CHECKPOINT_VALUES = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "cross_entropy")
#: Columns of the per-run intrinsic-dimension table the aggregation needs, and its numbers.
_INTRINSIC_REQUIRED = ("epoch", "layer", "intrinsic_dim")
_INTRINSIC_NUMERIC = ("epoch", "intrinsic_dim")

Paths = Sequence[str | os.PathLike[str]]


class DumpLike(Protocol):
    """What :func:`checkpoint_tables` reads of an activation dump (``mfoml.nets.dumps``)."""

    labels: np.ndarray
    predictions: np.ndarray
    manifest: dict[str, Any]


@dataclass
class RunTables:
    """The per-run inputs of the aggregation, each ``{run id: table}``."""

    probe: dict[str, pd.DataFrame]
    ncc: dict[str, pd.DataFrame]
    metrics: dict[str, pd.DataFrame]
    info: dict[str, dict[str, Any]]  # run.json
    intrinsic_dim: dict[str, pd.DataFrame] = field(default_factory=dict)

    def probe_splits(self) -> list[str]:
        """The probed splits (of every run), sorted."""
        return sorted({str(s) for t in self.probe.values() for s in t["split"].unique()})


def _read(path: str | os.PathLike[str], name: str) -> pd.DataFrame:
    """A per-run result table, checked (a corrupted file is named with what is wrong)."""
    required, numeric = agg.RESULT_TABLES[name]
    return read_csv_checked(path, required, numeric)


def read_run_tables(
    runs: Sequence[Mapping[str, Any]],
    probe: Paths,
    ncc: Paths,
    checkpoints: Paths,
    activations: Paths,
    expect: Mapping[str, Any],
    intrinsic_dim: Paths = (),
) -> RunTables:
    """Read and check every run's result tables.

    Parameters
    ----------
    runs : run descriptions (``run`` and the :data:`mfoml.analysis.aggregate.RUN_COLUMNS`).
    probe, ncc : each run's ``probe.csv`` and ``ncc.csv``, in the order of ``runs``.
    checkpoints : each run's checkpoint directory (``metrics.csv``, ``run.json``).
    activations : each run's activation directory (the dumps' manifests say which rows the
        tables must have).
    expect : ``probe_splits``, ``probe_layers``, ``ncc_layers`` (the configuration's).
    intrinsic_dim : each run's ``intrinsic_dim.csv`` (none when the measure is off).

    Raises
    ------
    ValueError
        ``"{path}: ..."``: a table that is corrupted, truncated or from other settings.
    """
    ids = [r["run"] for r in runs]
    ckpt = dict(zip(ids, map(Path, checkpoints), strict=True))
    act = dict(zip(ids, activations, strict=True))
    tables = RunTables(
        probe={rid: _read(p, "probe.csv") for rid, p in zip(ids, probe, strict=True)},
        ncc={rid: _read(p, "ncc.csv") for rid, p in zip(ids, ncc, strict=True)},
        metrics={rid: _read(ckpt[rid] / "metrics.csv", "metrics.csv") for rid in ids},
        info={},
    )
    # every table holds the rows its run's dumps and the configuration call for (names the file)
    for rid, p_path, n_path in zip(ids, probe, ncc, strict=True):
        want = tablecheck.probe_rows(act[rid], expect["probe_splits"], expect["probe_layers"])
        tablecheck.check_rows(tables.probe[rid], p_path, ("epoch", "split", "layer"), want)
        want_ncc = tablecheck.ncc_rows(act[rid], expect["ncc_layers"])
        tablecheck.check_rows(tables.ncc[rid], n_path, ("epoch", "layer"), want_ncc)
        last = max(tablecheck.checkpoint_epochs(act[rid]), default=0)
        tablecheck.check_epochs(tables.metrics[rid], ckpt[rid] / "metrics.csv", last)
    tables.info = {rid: read_json(ckpt[rid] / "run.json") for rid in ids}
    tables.intrinsic_dim = {
        rid: read_csv_checked(p, _INTRINSIC_REQUIRED, _INTRINSIC_NUMERIC)
        for rid, p in zip(ids, intrinsic_dim, strict=False)
    }
    return tables


def checkpoint_tables(
    runs: Sequence[Mapping[str, Any]],
    activations: Paths,
    n_classes: Mapping[str, int],
    open_dump: Callable[[Path], DumpLike],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The classification metrics of every dumped checkpoint and split, and the confusion matrix
    of each run's last checkpoint on its ``test`` split (else ``heldout``, else ``train``).

    Parameters
    ----------
    runs : run descriptions.
    activations : each run's activation directory (``{epoch}/{split}/``), in the order of runs.
    n_classes : run id -> number of classes C.
    open_dump : a split directory -> its dump (labels, predictions, manifest).

    Returns
    -------
    ``(checkpoints, confusion)``: one row per run, checkpoint and split
    (:func:`mfoml.analysis.aggregate.checkpoint_metrics`), and the long confusion matrices
    (run columns, ``epoch, split, true, predicted, count``; C*C rows per run).
    """
    rows, confusion = [], []
    for meta, act_dir in zip(runs, activations, strict=True):
        act = Path(act_dir)
        epochs_done = tablecheck.checkpoint_epochs(act)
        for epoch in epochs_done:
            split_dirs = sorted(p for p in (act / str(epoch)).iterdir() if p.is_dir())
            names = [p.name for p in split_dirs]
            conf_split = next(s for s in ("test", "heldout", "train") if s in names)
            for split_dir in split_dirs:
                split = split_dir.name
                dump = open_dump(split_dir)
                # accuracy and loss of the same eval-mode pass over the same samples and labels
                row, conf = agg.checkpoint_metrics(
                    meta,
                    epoch,
                    split,
                    dump.labels,
                    dump.predictions,
                    int(n_classes[meta["run"]]),
                    dump.manifest.get("cross_entropy"),
                )
                rows.append(row)
                if epoch == epochs_done[-1] and split == conf_split:
                    conf = agg.with_run_columns(conf, meta)
                    conf.insert(len(agg.RUN_COLUMNS), "epoch", epoch)
                    conf.insert(len(agg.RUN_COLUMNS) + 1, "split", split)
                    confusion.append(conf)
    return pd.DataFrame(rows), pd.concat(confusion, ignore_index=True)


def epoch_summary_columns(columns: Sequence[str]) -> list[str]:
    """The columns of ``epochs.csv`` (in their order) that ``epochs_summary.csv`` summarizes:
    :data:`EPOCH_VALUE_SUFFIXES` and :data:`EPOCH_VALUES`."""
    return [c for c in columns if c.endswith(EPOCH_VALUE_SUFFIXES) or c in EPOCH_VALUES]


def _target_names(points: pd.DataFrame) -> pd.Series:
    """Per experiment (and ``all``) the accuracy measured: ``test_acc``, or ``heldout_acc`` for
    data sets without a test split (joined by ``+`` when both occur)."""
    targets = points.groupby("experiment")["target"].agg(
        lambda t: "+".join(sorted(set(t.dropna())))
    )
    targets["all"] = "+".join(sorted(set(points["target"].dropna())))
    return targets


def aggregate_tables(
    cfg: Mapping[str, Any],
    tables: RunTables,
    layers: pd.DataFrame,
    checkpoints: pd.DataFrame,
    confusion: pd.DataFrame,
) -> dict[str, pd.DataFrame]:
    """Every table of the ``aggregate`` rule.

    Parameters
    ----------
    cfg : the rule's parameter slice (``name, runs, target, strata, ci_level, min_runs,
        n_permutations, n_boot, seed, ncc_threshold, top_confused``).
    tables : :func:`read_run_tables` output.
    layers : the layers table (:func:`mfoml.analysis.aggregate.layers_table` with the
        intrinsic dimension merged in).
    checkpoints, confusion : :func:`checkpoint_tables` output.

    Returns
    -------
    ``{output name: table}`` for ``layers, layers_summary, epochs, epochs_summary, checkpoints,
    checkpoints_summary, confusion, correlation_points, correlation, dynamics,
    dynamics_correlation, phases, phases_pivot, noise_alpha, confused_pairs`` (every table but
    the summaries and ``confusion`` with the ``name`` column first).
    """
    runs = cfg["runs"]
    layers = layers.copy()
    layers.insert(0, "name", cfg["name"])
    epochs = agg.epochs_table(runs, tables.metrics)
    penultimate = {rid: i["penultimate_layer"] for rid, i in tables.info.items()}
    for rid, gaps in agg.penultimate_gaps(layers, penultimate).items():
        for what, reason in gaps.items():
            log.warning(
                "run %s: penultimate layer %r has no %s result (%s); its correlation features "
                "are NaN",
                rid,
                penultimate[rid],
                what,
                reason,
            )
    points = agg.correlation_points(
        layers, epochs, penultimate, target=cfg["target"], checkpoints=checkpoints
    )
    acc_col = "target_acc" if cfg["target"] == "test_acc" else "heldout_acc"
    points = runstats.merge_final(points, runstats.final_accuracy(epochs, acc_col))
    opts = {k: cfg[k] for k in ("min_runs", "n_permutations", "n_boot", "seed")}
    opts.update(strata=list(cfg["strata"]), level=float(cfg["ci_level"]))
    correlation = runstats.checkpoint_correlations(points, **opts)
    dynamics = runstats.dynamics_features(points, float(cfg["ncc_threshold"]))
    # edge of stability (runs with train.sharpness_every): the sharpness after its first crossing
    # of 2/lr beside the peak (mfoml.analysis.stability)
    eos = stability.stability_table(epochs)
    if len(eos):
        dynamics = dynamics.merge(eos, on="run", how="left")
    dynamics_corr = runstats.dynamics_correlations(dynamics, **opts)
    targets = _target_names(points)
    for frame in (correlation, dynamics_corr):
        at = frame.columns.get_loc("outcome") + 1
        frame.insert(at, "target", frame["experiment"].map(targets))
    # the interpolation threshold: end-of-epoch training accuracy in eval mode (METHODS section 11)
    phases = studies.training_phases(epochs, train_col="train_eval_acc", test_col=acc_col)
    out = {
        "layers": layers,
        "epochs": epochs,
        "checkpoints": checkpoints,
        "correlation_points": points,
        "correlation": correlation,
        "dynamics": dynamics,
        "dynamics_correlation": dynamics_corr,
        "phases": phases,
        "phases_pivot": studies.phases_pivot(phases),
        "noise_alpha": studies.noise_table(layers, penultimate),
        "confused_pairs": studies.confused_pairs(confusion, top=cfg["top_confused"]),
    }
    for key, frame in out.items():
        if key != "layers":
            frame.insert(0, "name", cfg["name"])
    layer_keys = ["epoch", "layer", "layer_index"]
    splits = tables.probe_splits()
    summaries = {
        "layers_summary": agg.summarize(
            layers.drop(columns=["name"]),
            layer_keys,
            # the per-layer measures of the registry (mfoml.layer_measures.LAYER_MEASURES)
            agg.layer_summary_columns(layers.columns, splits),
        ),
        "epochs_summary": agg.summarize(
            epochs.drop(columns=["name"]), ["epoch"], epoch_summary_columns(epochs.columns)
        ),
        "checkpoints_summary": agg.summarize(
            checkpoints.drop(columns=["name"]), ["epoch", "split"], list(CHECKPOINT_VALUES)
        ),
    }
    _log_results(runs, out)
    return {**out, **summaries, "confusion": confusion}


def _log_results(runs: Sequence[Any], out: Mapping[str, pd.DataFrame]) -> None:
    """Log the table sizes, every headline correlation and the runs without a terminal phase."""
    log.info(
        "%d runs: %d layer rows, %d epoch rows, %d checkpoint rows",
        len(runs),
        len(out["layers"]),
        len(out["epochs"]),
        len(out["checkpoints"]),
    )
    for _, r in pd.concat([out["correlation"], out["dynamics_correlation"]]).iterrows():
        if r["headline"]:
            log.info(
                "%s (%s) %s vs %s%s: rho %.3f [%.3f, %.3f] (pooled %.3f), p_holm %.3g (raw p "
                "%.3g, smallest attainable %.3g), rho with n_wavelets %.3f, %d variants / %d "
                "runs (%s)",
                r["experiment"],
                r["scope"],
                r["feature"],
                r["outcome"],
                f", within {r['strata']}" if r["strata"] else "",
                r["rho"],
                r["ci_low"],
                r["ci_high"],
                r["rho_pooled"],
                r["p_holm"],
                r["p_value"],
                r["p_min"],
                r["rho_n_wavelets"],
                r["n_variants"],
                r["n_runs"],
                r["status"],
            )
    phases = out["phases"]
    not_reached = phases[phases["status"] == "tpt_not_reached"]
    if len(not_reached):
        log.info(
            "%d of %d runs never reach zero training error (eval mode): no terminal phase, "
            "best_in_tpt NaN (%s)",
            len(not_reached),
            len(phases),
            ", ".join(not_reached["run"].astype(str)),
        )
