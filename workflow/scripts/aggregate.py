"""Rule `aggregate`: tidy tables over all runs (results/tables), fold summaries, the run-level
correlations of training-data layer dynamics with test accuracy (mfoml.analysis.runstats) and
the study tables (mfoml.analysis.studies)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate()  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
from mfoml.analysis import aggregate as agg  # noqa: E402
from mfoml.analysis import runstats, studies  # noqa: E402
from mfoml.io import atomic_write_csv, read_csv_checked, read_json  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.dumps import open_activations  # noqa: E402

log = setup_logging(snakemake.log[0], "aggregate")
# class-geometry columns of the NCC table (mfoml.collapse.geometry), summarised over folds
GEOMETRY_VALUES = (
    "cdnv",
    "trace_within",
    "trace_between",
    "trace_ratio",
    "etf_error_means",
    "etf_error_classifier",
    "self_duality_error",
    "effective_rank",
)
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
    epochs_done = sorted(int(p.name) for p in act.iterdir() if p.is_dir() and p.name.isdigit())
    for epoch in epochs_done:
        split_dirs = sorted(p for p in (act / str(epoch)).iterdir() if p.is_dir())
        names = [p.name for p in split_dirs]
        conf_split = next(s for s in ("test", "heldout", "train") if s in names)
        for split_dir in split_dirs:
            split = split_dir.name
            dump = open_activations(split_dir)
            # accuracy and loss of the same eval-mode pass over the same samples and labels
            row, conf = agg.checkpoint_metrics(
                meta,
                epoch,
                split,
                dump.labels,
                dump.predictions,
                int(info[rid]["n_classes"]),
                dump.manifest.get("cross_entropy"),
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
acc_col = "target_acc" if cfg["target"] == "test_acc" else "heldout_acc"
points = runstats.merge_final(points, runstats.final_accuracy(epochs, acc_col))
opts = {k: cfg[k] for k in ("min_runs", "n_permutations", "n_boot", "seed")}
opts.update(strata=list(cfg["strata"]), level=float(cfg["ci_level"]))
correlation = runstats.checkpoint_correlations(points, **opts)
dynamics = runstats.dynamics_features(points, float(cfg["ncc_threshold"]))
dynamics_corr = runstats.dynamics_correlations(dynamics, **opts)
# the accuracy measured: test_acc, or heldout_acc for data sets without a test split
targets = points.groupby("experiment")["target"].agg(lambda t: "+".join(sorted(set(t.dropna()))))
targets["all"] = "+".join(sorted(set(points["target"].dropna())))
for frame in (correlation, dynamics_corr):
    frame.insert(frame.columns.get_loc("outcome") + 1, "target", frame["experiment"].map(targets))
phases = studies.training_phases(epochs, test_col=acc_col)
phases_pivot = studies.phases_pivot(phases)
noise_alpha = studies.noise_table(layers, penultimate)
confused = studies.confused_pairs(pd.concat(confusion, ignore_index=True), top=cfg["top_confused"])
for frame in (
    epochs,
    checkpoints,
    points,
    correlation,
    dynamics,
    dynamics_corr,
    phases,
    phases_pivot,
    noise_alpha,
    confused,
):
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
            if c.startswith(("alpha", "ncc_", "nc1", "nc2", "nc3", "nc4", "n_tau", "n_wavelets"))
            and "status" not in c
            or c in GEOMETRY_VALUES
        ],
    ),
)
atomic_write_csv(out.epochs, epochs)
atomic_write_csv(
    out.epochs_summary,
    agg.summarize(
        epochs.drop(columns=["name"]),
        ["epoch"],
        [
            c
            for c in epochs.columns
            if c.endswith(("_loss", "_acc"))
            or c in ("grad_norm_mean", "grad_norm_max", "sharpness")
        ],
    ),
)
atomic_write_csv(out.checkpoints, checkpoints)
atomic_write_csv(
    out.checkpoints_summary,
    agg.summarize(
        checkpoints.drop(columns=["name"]),
        ["epoch", "split"],
        ["accuracy", "precision_macro", "recall_macro", "f1_macro", "cross_entropy"],
    ),
)
atomic_write_csv(out.confusion, pd.concat(confusion, ignore_index=True))
atomic_write_csv(out.correlation_points, points)
atomic_write_csv(out.correlation, correlation)
atomic_write_csv(out.dynamics, dynamics)
atomic_write_csv(out.dynamics_correlation, dynamics_corr)
atomic_write_csv(out.phases, phases)
atomic_write_csv(out.phases_pivot, phases_pivot)
atomic_write_csv(out.noise_alpha, noise_alpha)
atomic_write_csv(out.confused_pairs, confused)
log.info(
    "%d runs: %d layer rows, %d epoch rows, %d checkpoint rows",
    len(runs),
    len(layers),
    len(epochs),
    len(checkpoints),
)
for _, r in pd.concat([correlation, dynamics_corr]).iterrows():
    if r["headline"]:
        log.info(
            "%s (%s) %s vs %s: rho %.3f [%.3f, %.3f] p %.3g, %d runs (%s)",
            r["experiment"],
            r["scope"],
            r["feature"],
            r["outcome"],
            r["rho"],
            r["ci_low"],
            r["ci_high"],
            r["p_value"],
            r["n_runs"],
            r["status"],
        )
