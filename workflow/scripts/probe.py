"""Rule `probe`: Besov smoothness alpha (mfoml.wavelets.probe.sparsity_probe) per layer, checkpoint
and split.

Splits: ``probe.splits``, plus ``analysis`` where the run has an analysis data set (its dump
exists). Outputs ``probe.csv`` (one row per epoch, split and layer: ``alpha, alpha_min,
alpha_max, status, n_tau, n_wavelets``, the forest ``backend``...) and ``probe_curves.json``
(the full results, with the tau grid and the angle curve). With ``probe.random_label_baseline`` the same probe (same
samples, same forest settings and seed) also runs on the layer with the labels permuted, one
permutation per checkpoint and split shared by all layers (seeded by ``probe.seed``, the epoch
and the split): columns ``alpha_random, alpha_random_status, n_wavelets_random``.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mfoml.data.subsample import stratified_subsample  # noqa: E402
from mfoml.io import atomic_write_csv, atomic_write_json  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.dumps import dump_epochs, open_activations  # noqa: E402
from mfoml.wavelets.probe import random_labels_for_baseline, sparsity_probe  # noqa: E402

log = setup_logging(snakemake.log[0], "probe")
cfg = json.loads(snakemake.params.cfg)
act_dir = Path(snakemake.input.activations)
epochs = dump_epochs(act_dir)
# the tau and epsilon grids of the angle estimators (the log-log estimator has none)
grids = (
    {}
    if cfg["method"] == "loglog"
    else {k: cfg[k] for k in ("tau_min", "tau_max", "tau_step", "eps_min", "eps_max", "n_eps")}
)
rows, curves = [], []


def probe(x: np.ndarray, labels: np.ndarray):
    """The configured sparsity probe of one layer (N, D) against labels (N,)."""
    return sparsity_probe(
        x,
        labels,
        task="classification",
        n_trees=int(cfg["n_trees"]),
        max_depth=int(cfg["max_depth"]),
        norm_weight=cfg["norm_weight"],
        max_features=cfg["max_features"],
        min_samples_leaf=int(cfg["min_samples_leaf"]),
        bootstrap=bool(cfg["bootstrap"]),
        random_state=int(cfg["seed"]),
        n_jobs=int(snakemake.threads),
        method=cfg["method"],
        backend=cfg["backend"],
        **grids,
    )


for epoch in epochs:
    # the analysis data set's split (runs with an analysis_dataset) is probed as well
    extra = ["analysis"] if (act_dir / str(epoch) / "analysis").is_dir() else []
    splits = [*cfg["splits"], *extra]
    for split in splits:
        dump = open_activations(act_dir / str(epoch) / split)
        layers = dump.layers if cfg["layers"] == "all" else cfg["layers"]
        missing = [la for la in layers if la not in dump]
        if missing:
            raise KeyError(
                f"config key 'probe.layers': {missing} not in the dump {dump.path} "
                f"(layers: {dump.layers})"
            )
        y = np.asarray(dump.labels)
        idx = stratified_subsample(y, cfg["max_samples"], seed=int(cfg["seed"]))
        split_no = splits.index(split)
        y_random = random_labels_for_baseline(y[idx], int(cfg["seed"]), epoch, split_no)
        for name in layers:
            entry = dump.entry(name)
            x = dump.layer(name)
            if len(idx) < len(y):
                x = x[idx]
            res = probe(x, y[idx])
            if res.status != "ok":
                log.warning(
                    "epoch %d %s layer %s: %s (%s)", epoch, split, name, res.status, res.message
                )
            rows.append(
                {
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
            )
            if cfg["random_label_baseline"]:
                base = probe(x, y_random)
                rows[-1].update(
                    alpha_random=base.alpha,
                    alpha_random_status=base.status,
                    n_wavelets_random=base.n_wavelets,
                )
                log.info(
                    "epoch %d %s %-10s random-label alpha %.4f", epoch, split, name, base.alpha
                )
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
atomic_write_json(snakemake.output.curves, curves)
atomic_write_csv(snakemake.output.table, pd.DataFrame(rows))
