"""Rule `similarity_tables`: the CKA tables over all runs with their summaries over folds
(mean, std, n; mfoml.analysis.statistics.fold_statistics), and the CKA of the same layer between
the runs of each group of ``cfg["groups"]`` (same sweep, data sets, fold and seed:
mfoml.similarity.tables.cross_run_cka_table).

Outputs (results/tables):
- ``cka_layers``: run columns, ``epoch, layer_a, layer_index_a, layer_b, layer_index_b,
  n_samples, cka`` (the layer x layer heat map of each checkpoint);
- ``cka_checkpoints``: run columns, ``layer, layer_index, epoch_a, epoch_b, n_samples, cka``;
- ``cka_runs``: ``experiment, dataset, seed, fold``, the two runs' ``run, model, activation,
  loss, noise`` (suffixes ``_a``, ``_b``), ``epoch, layer, layer_index_a, layer_index_b,
  n_samples, cka, status``;
- each ``*_summary``: ``cka_mean, cka_std, cka_n`` over folds.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
from mfoml.analysis.aggregate import RUN_COLUMNS, summarize  # noqa: E402
from mfoml.analysis.statistics import fold_statistics  # noqa: E402
from mfoml.io import atomic_write_csv, read_csv_checked  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.dumps import dump_epochs, open_activations  # noqa: E402
from mfoml.similarity.tables import CKA_COLUMNS, cross_run_cka_table  # noqa: E402

log = setup_logging(snakemake.log[0], "similarity_tables")
cfg = json.loads(snakemake.params.cfg)
runs = cfg["runs"]
meta = {r["run"]: r for r in runs}
out = snakemake.output

frames = []
for r, path in zip(runs, snakemake.input.cka, strict=True):
    t = read_csv_checked(path, CKA_COLUMNS, ("epoch_a", "epoch_b", "n_samples", "cka"))
    for i, col in enumerate(RUN_COLUMNS):
        t.insert(i, col, r[col])
    frames.append(t)
cka = (
    pd.concat(frames, ignore_index=True)
    if frames
    else pd.DataFrame(columns=RUN_COLUMNS + CKA_COLUMNS)
)
layer_keys = ["layer_a", "layer_index_a", "layer_b", "layer_index_b"]
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
    frame.insert(0, "name", cfg["name"])
atomic_write_csv(out.cka_layers, by_layers)
atomic_write_csv(
    out.cka_layers_summary,
    summarize(by_layers.drop(columns=["name"]), ["epoch", *layer_keys], ["cka"]),
)
atomic_write_csv(out.cka_checkpoints, by_ckpt)
atomic_write_csv(
    out.cka_checkpoints_summary,
    summarize(
        by_ckpt.drop(columns=["name"]), ["layer", "layer_index", "epoch_a", "epoch_b"], ["cka"]
    ),
)

# the same layer across the runs of a group (the same samples: same data set, fold and seed)
groups = cfg["groups"]
act_dirs = dict(zip([r["run"] for r in runs], snakemake.input.activations, strict=False))
needed = sorted({rid for g in groups for rid in g})
run_dumps = {}
for rid in needed:
    act = Path(act_dirs[rid])
    epochs = dump_epochs(act)
    run_dumps[rid] = {e: open_activations(act / str(e) / cfg["split"]) for e in epochs}
pairs = cross_run_cka_table(
    run_dumps, groups, layers=cfg["layers"], max_samples=cfg["max_samples"], seed=int(cfg["seed"])
)
shared = ["experiment", "dataset", "seed", "fold"]
own = ["model", "activation", "loss", "noise"]
for side in ("b", "a"):  # inserted in front: a first
    for col in reversed(own):
        pairs.insert(0, f"{col}_{side}", pairs[f"run_{side}"].map(lambda r, c=col: meta[r][c]))
for col in reversed(shared):
    pairs.insert(0, col, pairs["run_a"].map(lambda r, c=col: meta[r][c]))
pairs.insert(0, "name", cfg["name"])
atomic_write_csv(out.cka_runs, pairs)
group_cols = [
    "experiment",
    "dataset",
    "seed",
    *[f"{c}_a" for c in own],
    *[f"{c}_b" for c in own],
    "epoch",
    "layer",
    "layer_index_a",
    "layer_index_b",
]
atomic_write_csv(out.cka_runs_summary, fold_statistics(pairs, group_cols, ["cka"]))
log.info(
    "%d runs: %d layer x layer, %d checkpoint, %d cross-run CKA values (%d groups)",
    len(runs),
    len(by_layers),
    len(by_ckpt),
    len(pairs),
    len(groups),
)
