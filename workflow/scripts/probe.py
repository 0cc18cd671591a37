"""Rule `probe`: Besov smoothness alpha (mfoml.wavelets.probe.sparsity_probe) per layer, checkpoint
and split.

Outputs ``probe.csv`` (one row per epoch, split and layer: ``alpha, alpha_min, alpha_max,
status, n_tau``...) and ``probe_curves.json`` (the full results, with the tau grid and the
angle curve).
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mfoml.data.subsample import stratified_subsample  # noqa: E402
from mfoml.io import atomic_write_csv, atomic_write_json  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.dumps import open_activations  # noqa: E402
from mfoml.wavelets.probe import sparsity_probe  # noqa: E402

log = setup_logging(snakemake.log[0], "probe")
cfg = json.loads(snakemake.params.cfg)
act_dir = Path(snakemake.input.activations)
epochs = sorted(int(p.name) for p in act_dir.iterdir() if p.is_dir() and p.name.isdigit())
rows, curves = [], []
for epoch in epochs:
    for split in cfg["splits"]:
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
        for name in layers:
            entry = dump.entry(name)
            x = dump.layer(name)
            if len(idx) < len(y):
                x = x[idx]
            res = sparsity_probe(
                x,
                y[idx],
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
            )
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
                    "alpha": res.alpha,
                    "alpha_min": res.alpha_min,
                    "alpha_max": res.alpha_max,
                    "status": res.status,
                    "n_tau": res.n_tau,
                    "n_wavelets": res.n_wavelets,
                }
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
