"""Rule `aggregate`: tidy tables over all runs (results/tables), fold summaries, the run-level
correlations of training-data layer dynamics with test accuracy (mfoml.analysis.runstats) and
the study tables (mfoml.analysis.studies)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
from mfoml.analysis import aggregate as agg  # noqa: E402
from mfoml.analysis import runstats, stability, studies, tablecheck  # noqa: E402
from mfoml.io import atomic_write_csv, read_csv_checked, read_json  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.dumps import dump_epochs, open_activations  # noqa: E402
from mfoml.similarity.merge import merge_intrinsic_dim  # noqa: E402

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
# every table holds the rows its run's dumps and the configuration call for (names the file)
expect = cfg["tables"]
for r, p_path, n_path in zip(runs, snakemake.input.probe, snakemake.input.ncc, strict=True):
    rid = r["run"]
    want = tablecheck.probe_rows(act_dirs[rid], expect["probe_splits"], expect["probe_layers"])
    tablecheck.check_rows(probe[rid], p_path, ("epoch", "split", "layer"), want)
    want = tablecheck.ncc_rows(act_dirs[rid], expect["ncc_layers"])
    tablecheck.check_rows(ncc[rid], n_path, ("epoch", "layer"), want)
    last = max(tablecheck.checkpoint_epochs(act_dirs[rid]), default=0)
    tablecheck.check_epochs(metrics[rid], Path(ckpt_dirs[rid]) / "metrics.csv", last)
info = {r["run"]: read_json(Path(ckpt_dirs[r["run"]]) / "run.json") for r in runs}

layers = agg.layers_table(runs, probe, ncc)
# the TwoNN intrinsic dimension per layer (rule intrinsic_dim; no input when intrinsic_dim is off)
layers = merge_intrinsic_dim(
    layers,
    {
        r["run"]: read_csv_checked(
            p, ("epoch", "layer", "intrinsic_dim"), ("epoch", "intrinsic_dim")
        )
        for r, p in zip(runs, snakemake.input.intrinsic_dim, strict=False)
    },
)
layers.insert(0, "name", cfg["name"])
epochs = agg.epochs_table(runs, metrics)

rows, confusion = [], []
for meta in runs:
    rid = meta["run"]
    act = Path(act_dirs[rid])
    epochs_done = dump_epochs(act)
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
# edge of stability (runs with train.sharpness_every): the sharpness after its first crossing
# of 2/lr beside the peak (mfoml.analysis.stability)
eos = stability.stability_table(epochs)
if len(eos):
    dynamics = dynamics.merge(eos, on="run", how="left")
dynamics_corr = runstats.dynamics_correlations(dynamics, **opts)
# the accuracy measured: test_acc, or heldout_acc for data sets without a test split
targets = points.groupby("experiment")["target"].agg(lambda t: "+".join(sorted(set(t.dropna()))))
targets["all"] = "+".join(sorted(set(points["target"].dropna())))
for frame in (correlation, dynamics_corr):
    frame.insert(frame.columns.get_loc("outcome") + 1, "target", frame["experiment"].map(targets))
# the interpolation threshold: end-of-epoch training accuracy in eval mode (METHODS section 11)
phases = studies.training_phases(epochs, train_col="train_eval_acc", test_col=acc_col)
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
        # the per-layer measures (a new one is listed in mfoml.analysis.aggregate.LAYER_VALUES)
        agg.layer_summary_columns(layers.columns),
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
            "%s (%s) %s vs %s%s: rho %.3f [%.3f, %.3f] (pooled %.3f), p_holm %.3g (raw p %.3g, "
            "smallest attainable %.3g), rho with n_wavelets %.3f, %d variants / %d runs (%s)",
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
not_reached = phases[phases["status"] == "tpt_not_reached"]
if len(not_reached):
    log.info(
        "%d of %d runs never reach zero training error (eval mode): no terminal phase, "
        "best_in_tpt NaN (%s)",
        len(not_reached),
        len(phases),
        ", ".join(not_reached["run"].astype(str)),
    )
