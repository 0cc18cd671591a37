"""mfoml.analysis.aggregate and mfoml.plots on small synthetic tables, against direct numpy/scipy-free
computations written here."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from mfoml import plots
from mfoml.analysis import aggregate as agg
from mfoml.analysis import runstats


def _runs(n_folds=3, acts=("relu", "tanh")):
    return [
        {
            "experiment": "exp",
            "dataset": "d",
            "model": "m",
            "activation": a,
            "loss": "ce",
            "noise": 0.0,
            "seed": 0,
            "fold": k,
            "run": f"d/m/{a}/ce/noise0/fold{k}",
        }
        for a in acts
        for k in range(n_folds)
    ]


def test_summarize_matches_numpy(rng):
    runs = _runs()
    rows = []
    for r in runs:
        for epoch in (1, 2):
            rows.append({**r, "epoch": epoch, "acc": rng.random(), "loss_value": rng.random()})
    frame = pd.DataFrame(rows)
    frame.loc[0, "acc"] = np.nan  # one missing fold value
    s = agg.summarize(frame, ["epoch"], ["acc", "loss_value"])
    assert len(s) == 2 * 2
    for _, row in s.iterrows():
        part = frame[(frame["activation"] == row["activation"]) & (frame["epoch"] == row["epoch"])]
        vals = part["acc"].to_numpy(float)
        vals = vals[np.isfinite(vals)]
        assert row["acc_n"] == len(vals)
        assert row["acc_mean"] == pytest.approx(vals.mean())
        assert row["acc_std"] == pytest.approx(
            np.sqrt(((vals - vals.mean()) ** 2).sum() / (len(vals) - 1))
        )
        assert row["loss_value_n"] == 3


def test_correlation_points_and_spearman(rng):
    runs = _runs(n_folds=2, acts=("relu", "tanh", "gelu", "elu"))  # 4 variants x 2 folds
    probe, ncc, metrics = {}, {}, {}
    layers = ["input", "block1", "block2", "block3", "logits"]
    for r in runs:
        rows_p, rows_n = [], []
        for epoch in (1, 3):
            for i, name in enumerate(layers):
                rows_p.append(
                    {
                        "epoch": epoch,
                        "split": "train",
                        "layer": name,
                        "layer_index": i,
                        "alpha": rng.random(),
                        "alpha_min": 0.0,
                        "alpha_max": 2.0,
                        "status": "ok",
                        "n_tau": 1.0,
                    }
                )
                rows_n.append(
                    {
                        "epoch": epoch,
                        "layer": name,
                        "layer_index": i,
                        "ncc_mismatch_train": rng.random(),
                        "ncc_mismatch_test": rng.random(),
                        "reduction": "null",
                    }
                )
        probe[r["run"]] = pd.DataFrame(rows_p)
        ncc[r["run"]] = pd.DataFrame(rows_n)
        metrics[r["run"]] = pd.DataFrame(
            {"epoch": [1, 2, 3], "test_acc": rng.random(3), "heldout_acc": rng.random(3)}
        )
    table = agg.layers_table(runs, probe, ncc)
    assert len(table) == len(runs) * 2 * len(layers)
    epochs = agg.epochs_table(runs, metrics)
    pts = agg.correlation_points(table, epochs, {r["run"]: "block3" for r in runs})
    assert len(pts) == len(runs) * 2
    for _, p in pts.iterrows():
        pr = probe[p["run"]]
        part = pr[(pr["epoch"] == p["epoch"]) & pr["layer"].isin(["block1", "block2", "block3"])]
        slope = np.polyfit(part["layer_index"], part["alpha"], 1)[0]
        assert p["alpha_depth_slope"] == pytest.approx(slope)
        assert p["alpha_last_inner"] == pytest.approx(
            float(part.loc[part["layer"] == "block3", "alpha"].iloc[0])
        )
        m = metrics[p["run"]]
        assert p["accuracy"] == pytest.approx(
            float(m.loc[m["epoch"] == p["epoch"], "test_acc"].iloc[0])
        )
    corr = runstats.checkpoint_correlations(pts, outcomes=["accuracy"], n_boot=200)
    assert len(corr) == 2 * 4  # checkpoints x features; one experiment, variants as the unit
    row = corr[(corr["epoch"] == 3) & (corr["feature"] == "ncc_mismatch_penultimate")].iloc[0]
    at3 = pts[pts["epoch"] == 3]
    means = at3.groupby("activation")[["ncc_mismatch_penultimate", "accuracy"]].mean()
    x, y = means["ncc_mismatch_penultimate"].to_numpy(), means["accuracy"].to_numpy()
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))  # no ties in random data
    n = len(x)
    rho = 1 - 6 * ((rx - ry) ** 2).sum() / (n * (n * n - 1))
    assert row["n_variants"] == n == 4 and row["n_runs"] == len(runs) == 8 and row["headline"]
    assert row["rho"] == pytest.approx(rho) and row["rho_pooled"] == pytest.approx(rho)
    # 4 variants: 4! = 24 permutations, the smallest attainable p is 2/24 > 0.05
    assert row["exact"] and row["n_permutations"] == 24
    assert row["p_min"] == pytest.approx(2 / 24) and row["status"] == "underpowered"
    assert 0 < row["p_value"] <= 1 and np.isfinite(row["ci_low"])
    adj = corr[corr["feature"] == "alpha_last_inner_adj"]
    assert (adj["status"] == "no_data").all()  # no wavelet counts in this probe table
    few = runstats.checkpoint_correlations(pts[pts["run"].isin([runs[0]["run"], runs[2]["run"]])])
    assert set(few["status"]) == {"too_few_variants", "no_data"} and few["rho"].isna().all()
    assert agg.missing_penultimate(table, {r["run"]: "block3" for r in runs}) == {}

    # probe.layers / ncc.layers leaving out the penultimate layer: named, and reported as no_data
    first, second = runs[0]["run"], runs[1]["run"]
    cut = table[~((table["layer"] == "block3") & table["run"].isin([first, second]))]
    pen = {r["run"]: "block3" for r in runs}
    assert agg.missing_penultimate(cut, pen) == {first: ["probe", "ncc"], second: ["probe", "ncc"]}
    gaps = agg.penultimate_gaps(cut, pen)
    assert gaps[first]["probe"] == "not analysed: config key 'probe.layers' leaves it out"
    # analysed on too few samples: alpha is NaN with a status; the reason is the sample size
    starved = table.copy()
    sel = (starved["layer"] == "block3") & (starved["run"] == first)
    starved.loc[sel, "alpha"] = np.nan
    starved.loc[sel, "alpha_status"] = "no_wavelets"
    reason = agg.penultimate_gaps(starved, pen)[first]["probe"]
    assert "alpha is not finite (probe status no_wavelets)" in reason
    assert "'activations.max_samples'" in reason and "probe.layers" not in reason
    only_missing = agg.correlation_points(
        cut[cut["run"].isin([first, second])], epochs, {first: "block3", second: "block3"}
    )
    none = runstats.checkpoint_correlations(only_missing, outcomes=["accuracy"], n_boot=100)
    last = none[none["feature"] == "alpha_last_inner"].iloc[0]
    assert last["status"] == "no_data" and last["n_runs"] == 0 and np.isnan(last["rho"])


def test_palette_is_fixed_per_activation():
    a = plots.variant_palette(["tanh", "relu"], "activation")
    b = plots.variant_palette(["relu", "gelu", "tanh"], "activation")
    assert a["relu"] == b["relu"] and a["tanh"] == b["tanh"]
    assert len({tuple(c) for c in b.values()}) == 3


def test_plot_with_no_data_still_writes_a_readable_figure(tmp_path):
    out = tmp_path / "alpha.png"
    plots.plot_alpha_layers(
        pd.DataFrame(columns=["alpha", "layer", "layer_index", "epoch"]), out, dpi=50
    )
    img = mpimg.imread(out)
    assert img.shape[0] > 20 and img.shape[1] > 20


def test_correlation_points_at_the_initialization_checkpoint(rng):
    """metrics.csv has no row for epoch 0 (a checkpoint of the initialization); its accuracy
    comes from the dumped predictions of the checkpoints table instead of being left NaN and
    silently dropped from the correlation."""
    runs = _runs(n_folds=2, acts=("relu",))
    probe, ncc, metrics, ck = {}, {}, {}, []
    layers = ["input", "block1", "block2", "logits"]
    for r in runs:
        rows = [
            {"epoch": e, "layer": n, "layer_index": i, "split": "train", "alpha": rng.random()}
            for e in (0, 3)
            for i, n in enumerate(layers)
        ]
        probe[r["run"]] = pd.DataFrame(rows)
        ncc[r["run"]] = pd.DataFrame(
            [{**row, "ncc_mismatch_train": rng.random()} for row in rows]
        ).drop(columns=["split", "alpha"])
        metrics[r["run"]] = pd.DataFrame(
            {"epoch": [1, 2, 3], "test_acc": rng.random(3), "heldout_acc": rng.random(3)}
        )
        for e in (0, 3):
            for split in ("train", "test"):
                ck.append({**r, "epoch": e, "split": split, "accuracy": rng.random()})
    checkpoints = pd.DataFrame(ck)
    table = agg.layers_table(runs, probe, ncc)
    epochs = agg.epochs_table(runs, metrics)
    pen = {r["run"]: "block2" for r in runs}
    pts = agg.correlation_points(table, epochs, pen, checkpoints=checkpoints)
    assert len(pts) == 4 and pts["accuracy"].notna().all()
    for _, p in pts.iterrows():
        if p["epoch"] == 0:
            sel = (
                (checkpoints["run"] == p["run"])
                & (checkpoints["epoch"] == 0)
                & (checkpoints["split"] == "test")
            )
            expected = float(checkpoints.loc[sel, "accuracy"].iloc[0])
        else:
            m = metrics[p["run"]]
            expected = float(m.loc[m["epoch"] == 3, "test_acc"].iloc[0])
        assert p["accuracy"] == expected and p["target"] == "test_acc"
    corr = runstats.checkpoint_correlations(pts, outcomes=["accuracy"], min_runs=2, n_boot=100)
    measured = corr[corr["feature"] != "alpha_last_inner_adj"]  # no wavelet counts here
    assert set(corr["epoch"]) == {0, 3} and (measured["n_runs"] == 2).all()


def test_layers_table_keeps_wavelet_counts_and_the_random_label_baseline():
    """Every alpha keeps its wavelet count (and random-label baseline) beside it; a probe split
    other than train gets the split as suffix on every column."""
    run = _runs(n_folds=1, acts=("relu",))
    probe = pd.DataFrame(
        [
            {
                "epoch": 2,
                "split": split,
                "layer": "block1",
                "layer_index": 1,
                "alpha": a,
                "status": "ok",
                "n_tau": 3.0,
                "n_wavelets": k,
                "alpha_random": a / 2,
                "alpha_random_status": "ok",
                "n_wavelets_random": k + 1,
                "method": "angle",
            }
            for split, a, k in (("train", 0.4, 120), ("test", 0.3, 80))
        ]
    )
    ncc = pd.DataFrame([{"epoch": 2, "layer": "block1", "layer_index": 1, "nc1": 0.5}])
    row = agg.layers_table(run, {run[0]["run"]: probe}, {run[0]["run"]: ncc}).iloc[0]
    assert (row["alpha"], row["n_wavelets"], row["alpha_random"]) == (0.4, 120, 0.2)
    assert (row["n_wavelets_random"], row["alpha_status"], row["nc1"]) == (121, "ok", 0.5)
    assert (row["alpha_test"], row["n_wavelets_test"], row["alpha_random_test"]) == (0.3, 80, 0.15)
    assert row["alpha_status_test"] == "ok" and "method" not in row


def test_run_level_figures_are_readable(tmp_path, rng):
    points = pd.DataFrame(
        [
            {**r, "epoch": e, "alpha_last_inner": rng.random(), "alpha_depth_slope": rng.random(),
             "ncc_mismatch_penultimate": rng.random(), "accuracy": rng.random()}
            for r in _runs(n_folds=3)
            for e in (1, 4)
        ]
    )  # fmt: skip
    points = runstats.merge_final(
        points,
        points[points["epoch"] == 4][["run", "accuracy"]].rename(
            columns={"accuracy": "final_accuracy"}
        ),
    )
    corr = runstats.checkpoint_correlations(points, n_permutations=99, n_boot=100)
    noise = pd.DataFrame(
        {
            "experiment": "exp", "dataset": "d", "model": "m", "activation": "relu", "loss": "ce",
            "seed": 0, "noise": [0.0, 0.2], "alpha_mean": [0.3, 0.1], "alpha_std": [0.02, np.nan],
            "n_wavelets_mean": [300.0, 410.0], "alpha_random_mean": [0.05, 0.04],
        }
    )  # fmt: skip
    for name, draw in (
        ("correlation.png", lambda p: plots.plot_correlation(points, corr, p, dpi=40)),
        ("noise.png", lambda p: plots.plot_noise_alpha(noise, p, dpi=40)),
    ):
        draw(tmp_path / name)
        img = mpimg.imread(tmp_path / name)
        assert img.shape[0] > 50 and img.shape[1] > 50 and float(np.std(img)) > 0, name
