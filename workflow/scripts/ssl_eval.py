"""Rule `ssl_eval`: per layer, checkpoint and label set of a self-supervised run, NCC accuracy
(class means of the train split; train and test), NC1, linear-probe and k-NN accuracy
(mfoml.collapse.probes.layer_probe_table), and the Besov smoothness alpha of the train split
(mfoml.wavelets.probe.sparsity_probe with the `probe` settings).

Output ``ssl_eval.csv``: one row per (epoch, layer, label set). There is no classifier, so the NCC
mismatch against predictions does not apply: ``ncc_mismatch`` is empty and
``ncc_mismatch_status`` says why (never a zero).
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mfoml.collapse.probes import layer_probe_table  # noqa: E402
from mfoml.data.subsample import stratified_subsample  # noqa: E402
from mfoml.io import atomic_write_csv  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.dumps import open_activations  # noqa: E402
from mfoml.wavelets.probe import sparsity_probe  # noqa: E402

log = setup_logging(snakemake.log[0], "ssl_eval")
cfg = json.loads(snakemake.params.cfg)
probe = cfg["probe"]
act_dir = Path(snakemake.input.activations)
epochs = sorted(int(p.name) for p in act_dir.iterdir() if p.is_dir() and p.name.isdigit())
frames = []
for epoch in epochs:
    train = open_activations(act_dir / str(epoch) / "train")
    test = open_activations(act_dir / str(epoch) / cfg["test_split"])
    layers = train.layers if cfg["layers"] == "all" else list(cfg["layers"])
    missing = [la for la in layers if la not in train or la not in test]
    if missing:
        raise KeyError(
            f"config key 'ssl.eval.layers': {missing} not in the dumps of epoch {epoch} "
            f"(layers: {train.layers})"
        )
    sets = {s: (np.asarray(y), np.asarray(test.label_sets[s])) for s, y in train.label_sets.items()}
    y_main = sets[train.label_set][0]
    fit_rows = None
    if cfg["linear_probe"]["max_train"] is not None:
        fit_rows = stratified_subsample(y_main, int(cfg["linear_probe"]["max_train"]), seed=0)
    table = layer_probe_table(
        train,
        test,
        sets,
        layers=layers,
        linear={"C": cfg["linear_probe"]["C"], "max_iter": cfg["linear_probe"]["max_iter"]},
        fit_rows=fit_rows,
        knn=cfg["knn"],
    )
    alpha_cols = ["alpha", "alpha_min", "alpha_max", "alpha_status"]
    for col in alpha_cols:
        table[col] = np.nan if col != "alpha_status" else "not_computed (ssl.eval.alpha false)"
    if cfg["alpha"]:
        for set_name, (y, _) in sets.items():
            idx = stratified_subsample(y, probe["max_samples"], seed=int(probe["seed"]))
            for name in layers:
                x = train.layer(name)
                res = sparsity_probe(
                    x[idx] if len(idx) < len(y) else x,
                    y[idx],
                    task="classification",
                    n_trees=int(probe["n_trees"]),
                    max_depth=int(probe["max_depth"]),
                    norm_weight=probe["norm_weight"],
                    max_features=probe["max_features"],
                    min_samples_leaf=int(probe["min_samples_leaf"]),
                    bootstrap=bool(probe["bootstrap"]),
                    random_state=int(probe["seed"]),
                    n_jobs=int(snakemake.threads),
                    method=probe["method"],
                )
                if res.status != "ok":
                    log.warning("epoch %d layer %s (%s): %s", epoch, name, set_name, res.message)
                row = (table["layer"] == name) & (table["label_set"] == set_name)
                table.loc[row, alpha_cols] = [res.alpha, res.alpha_min, res.alpha_max, res.status]
                log.info(
                    "epoch %d %-10s %s: alpha %.4f %s", epoch, name, set_name, res.alpha, res.status
                )
    table.insert(0, "epoch", epoch)
    table["test_split"] = cfg["test_split"]
    frames.append(table)
    log.info("epoch %d: %d layers x %d label sets", epoch, len(layers), len(sets))
atomic_write_csv(snakemake.output[0], pd.concat(frames, ignore_index=True))
