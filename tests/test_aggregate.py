"""mfoml.analysis.aggregate and mfoml.plots on small synthetic tables, against direct numpy/scipy-free
computations written here."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from mfoml import plots
from mfoml.analysis import aggregate as agg


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
    runs = _runs(n_folds=4)
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
    corr = agg.correlation_table(pts)
    row = corr[
        (corr["experiment"] == "exp") & (corr["feature"] == "ncc_mismatch_penultimate")
    ].iloc[0]
    x, y = pts["ncc_mismatch_penultimate"].to_numpy(), pts["accuracy"].to_numpy()
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))  # no ties in random data
    n = len(x)
    rho = 1 - 6 * ((rx - ry) ** 2).sum() / (n * (n * n - 1))
    assert row["status"] == "ok" and row["n"] == n
    assert row["rho"] == pytest.approx(rho)
    assert 0 <= row["p_value"] <= 1
    few = agg.correlation_table(pts.iloc[:2])
    assert (few["status"] == "too_few_points").all() and few["rho"].isna().all()
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
    none = agg.correlation_table(only_missing)
    last = none[none["feature"] == "alpha_last_inner"].iloc[0]
    assert last["status"] == "no_data" and last["n"] == 0 and np.isnan(last["rho"])


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
    corr = agg.correlation_table(pts, min_points=3)
    assert (corr["n"] == 4).all()
