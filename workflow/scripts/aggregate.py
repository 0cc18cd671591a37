"""Rule `aggregate`: tidy tables over all runs (results/tables), fold summaries and the
correlation of training-data layer dynamics with test accuracy (mfoml.analysis.aggregate)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
from mfoml.analysis import aggregate as agg  # noqa: E402
from mfoml.io import atomic_write_csv, read_csv_checked, read_json  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.dumps import open_activations  # noqa: E402

log = setup_logging(snakemake.log[0], "aggregate")
cfg = json.loads(snakemake.params.cfg)
runs = cfg["runs"]
ckpt_dirs = dict(zip([r["run"] for r in runs], snakemake.input.checkpoints, strict=True))
act_dirs = dict(zip([r["run"] for r in runs], snakemake.input.activations, strict=True))


def read(path, name):
    """A per-run result table, checked (a corrupted file is named with what is wrong)."""
    required, numeric = agg.RESULT_TABLES[name]
    return read_csv_checked(path, required, numeric)


probe = {r["run"]: read(p, "probe.csv") for r, p in zip(runs, snakemake.input.probe, strict=True)}
ncc = {r["run"]: read(p, "ncc.csv") for r, p in zip(runs, snakemake.input.ncc, strict=True)}
metrics = {r["run"]: read(Path(ckpt_dirs[r["run"]]) / "metrics.csv", "metrics.csv") for r in runs}
info = {r["run"]: read_json(Path(ckpt_dirs[r["run"]]) / "run.json") for r in runs}

layers = agg.layers_table(runs, probe, ncc)
layers.insert(0, "name", cfg["name"])
epochs = agg.epochs_table(runs, metrics)

rows, confusion = [], []
for meta in runs:
    rid = meta["run"]
    act = Path(act_dirs[rid])
    m = metrics[rid].set_index("epoch")
    epochs_done = sorted(int(p.name) for p in act.iterdir() if p.is_dir() and p.name.isdigit())
    for epoch in epochs_done:
        split_dirs = sorted(p for p in (act / str(epoch)).iterdir() if p.is_dir())
        names = [p.name for p in split_dirs]
        conf_split = next(s for s in ("test", "heldout", "train") if s in names)
        for split_dir in split_dirs:
            split = split_dir.name
            dump = open_activations(split_dir)
            loss_col = f"{split}_loss"
            if split == "test" and (loss_col not in m or m[loss_col].isna().all()):
                loss_col = "heldout_loss"  # data sets without a test split dump the held-out fold
            loss = (
                float(m.loc[epoch, loss_col])
                if epoch in m.index and loss_col in m
                else float("nan")
            )
            row, conf = agg.checkpoint_metrics(
                meta, epoch, split, dump.labels, dump.predictions, int(info[rid]["n_classes"]), loss
            )
            rows.append(row)
            if epoch == epochs_done[-1] and split == conf_split:
                for col in reversed(agg.RUN_COLUMNS):
                    conf.insert(0, col, meta[col])
                conf.insert(len(agg.RUN_COLUMNS), "epoch", epoch)
                conf.insert(len(agg.RUN_COLUMNS) + 1, "split", split)
                confusion.append(conf)
checkpoints = pd.DataFrame(rows)
penultimate = {rid: i["penultimate_layer"] for rid, i in info.items()}
for rid, gaps in agg.penultimate_gaps(layers, penultimate).items():
    for what, reason in gaps.items():
        log.warning(
            "run %s: penultimate layer %r has no %s result (%s); its correlation features are NaN",
            rid,
            penultimate[rid],
            what,
            reason,
        )
points = agg.correlation_points(
    layers, epochs, penultimate, target=cfg["target"], checkpoints=checkpoints
)
correlation = agg.correlation_table(points, min_points=int(cfg["min_runs"]))
for frame in (epochs, checkpoints, points, correlation):
    frame.insert(0, "name", cfg["name"])

out = snakemake.output
atomic_write_csv(out.layers, layers)
atomic_write_csv(
    out.layers_summary,
    agg.summarize(
        layers.drop(columns=["name"]),
        ["epoch", "layer", "layer_index"],
        [
            c
            for c in layers.columns
            if c.startswith(("alpha", "ncc_", "nc1", "nc2", "nc3", "nc4", "n_tau"))
            and "status" not in c
        ],
    ),
)
atomic_write_csv(out.epochs, epochs)
atomic_write_csv(
    out.epochs_summary,
    agg.summarize(
        epochs.drop(columns=["name"]),
        ["epoch"],
        [c for c in epochs.columns if c.endswith(("_loss", "_acc"))],
    ),
)
atomic_write_csv(out.checkpoints, checkpoints)
atomic_write_csv(
    out.checkpoints_summary,
    agg.summarize(
        checkpoints.drop(columns=["name"]),
        ["epoch", "split"],
        ["accuracy", "precision_macro", "recall_macro", "f1_macro", "loss_value"],
    ),
)
atomic_write_csv(out.confusion, pd.concat(confusion, ignore_index=True))
atomic_write_csv(out.correlation_points, points)
atomic_write_csv(out.correlation, correlation)
log.info(
    "%d runs: %d layer rows, %d epoch rows, %d checkpoint rows",
    len(runs),
    len(layers),
    len(epochs),
    len(checkpoints),
)
for _, r in correlation.iterrows():
    log.info(
        "%s %s: rho %.3f p %.3g n %d (%s)",
        r["experiment"],
        r["feature"],
        r["rho"],
        r["p_value"],
        r["n"],
        r["status"],
    )
