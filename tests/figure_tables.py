"""Tables shaped like the default run's (``config/config.yaml``) for the figure tests, without
running it: the MNIST-1D study (2 models x 3 activations x 3 folds, 10 classes, checkpoints at
epochs 1, 4, 12 unless told otherwise), the text study (2 one-block encoders, 1 fold, 2
classes, checkpoints 1 and 3, alpha undefined at some layers of ``enc-d1-pos`` with the probe's
status and its 2 wavelets) and the small self-supervised study (VICReg, 2 folds). The values are
random; the structure (which cells exist, class counts, undefined values, counts per panel) is
the default run's, which is what the figures' layout depends on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MNIST_MODELS = {
    "mlp-d4-w64": ["input", "block1", "block2", "block3", "block4", "logits"],
    "conv1d-d3-w32": ["input", "block1", "block2", "block3", "pool", "logits"],
}
TEXT_MODELS = {
    "enc-d1-pos": ["embed", "block1", "pool", "logits"],
    "enc-d1-nopos": ["embed", "block1", "pool", "logits"],
}


def _runs(checkpoints: list[int]) -> list[dict]:
    """One dict per run: its description, class count, layers and checkpoint epochs."""
    runs = []
    for model, layers in MNIST_MODELS.items():
        for act in ("relu", "tanh", "gelu"):
            for fold in range(3):
                runs.append(
                    {
                        "experiment": "nonlinearity-mnist1d", "dataset": "mnist1d",
                        "model": model, "activation": act, "loss": "ce", "noise": 0.0,
                        "seed": 0, "fold": fold, "n_classes": 10, "layers": layers,
                        "epochs": checkpoints, "last": max(checkpoints),
                    }
                )  # fmt: skip
    for model, layers in TEXT_MODELS.items():
        runs.append(
            {
                "experiment": "text-order-positional", "dataset": "textorder-small",
                "model": model, "activation": "gelu", "loss": "ce", "noise": 0.0, "seed": 0,
                "fold": 0, "n_classes": 2, "layers": layers, "epochs": [1, 3], "last": 3,
            }
        )  # fmt: skip
    for r in runs:
        r["run"] = f"{r['dataset']}/{r['model']}/{r['activation']}/ce/noise0/fold{r['fold']}"
    return runs


_DESCRIPTION = ("experiment", "dataset", "model", "activation", "loss", "noise", "seed", "fold")


def _describe(run: dict) -> dict:
    return {k: run[k] for k in (*_DESCRIPTION, "run")}


def default_like_tables(checkpoints: tuple[int, ...] = (1, 4, 12), seed: int = 0) -> dict:
    """``{table name: DataFrame}`` for ``layers, epochs, confusion, correlation_points,
    correlation, noise_alpha, ssl_layers_summary``, shaped like the default run's
    (``checkpoints``: the MNIST-1D runs' checkpoint epochs)."""
    from mfoml.analysis import runstats

    rng = np.random.default_rng(seed)
    runs = _runs(sorted(checkpoints))
    layers, epochs, confusion, points = [], [], [], []
    for r in runs:
        k = r["n_classes"]
        for e in r["epochs"]:
            for i, layer in enumerate(r["layers"]):
                undefined = r["model"] == "enc-d1-pos" and layer in ("block1", "pool")
                layers.append(
                    {
                        **_describe(r), "epoch": e, "layer": layer, "layer_index": i,
                        "alpha": np.nan if undefined else 0.2 + 0.1 * i + 0.05 * rng.random(),
                        "alpha_status": "empty_set_for_all_eps" if undefined else "ok",
                        "n_wavelets": 2 if undefined else int(rng.integers(20, 200)),
                        "ncc_mismatch_train": 0.5 / (i + 1) * rng.random(),
                        "ncc_mismatch_test": 0.6 / (i + 1) * rng.random(),
                        "nc1": 10.0 ** (1 - i + rng.normal(0, 0.5)),
                        "collapse_status": "ok", "n_classes": k, "n_classes_present": k,
                        "cdnv": 10.0 ** (-i + rng.normal(0, 0.3)),
                        "trace_ratio": 10.0 ** (1 - i + rng.normal(0, 0.3)),
                        # two class means always form a simplex ETF: rounding noise only
                        "etf_error_means": 1e-16 * rng.random() if k == 2 else rng.random(),
                        "effective_rank": 1 + 8 * rng.random(),
                    }
                )  # fmt: skip
        for e in range(1, r["last"] + 1):
            gn = 10.0 ** rng.normal(0, 0.3)
            epochs.append(
                {
                    **_describe(r), "epoch": e, "train_loss": 2.0 / e,
                    "target_acc": 1 - 0.8 / (e + 1) - 0.05 * rng.random(),
                    "train_acc": 1 - 0.7 / (e + 1), "grad_norm_mean": gn,
                    "grad_norm_max": 3 * gn, "n_parameters": 1000 * len(r["layers"]),
                }
            )  # fmt: skip
        t, p = np.meshgrid(range(k), range(k), indexing="ij")
        confusion.append(
            pd.DataFrame(
                {
                    **_describe(r),
                    "epoch": r["last"],
                    "true": t.ravel(),
                    "predicted": p.ravel(),
                    "count": np.where(t == p, 40, rng.integers(0, 5, (k, k))).ravel(),
                }
            )  # fmt: skip
        )
        for e in r["epochs"]:
            points.append(
                {
                    **_describe(r), "epoch": e, "alpha_last_inner": rng.random(),
                    "alpha_depth_slope": rng.random(), "ncc_mismatch_penultimate": rng.random(),
                    "accuracy": rng.random(),
                }
            )  # fmt: skip
    points = pd.DataFrame(points)
    last = points.groupby("run")["epoch"].transform("max") == points["epoch"]
    final = points.loc[last, ["run", "accuracy"]].rename(columns={"accuracy": "final_accuracy"})
    points = runstats.merge_final(points, final)
    correlation = runstats.checkpoint_correlations(points, n_permutations=19, n_boot=20)
    layer_frame = pd.DataFrame(layers)
    noise = (
        layer_frame[layer_frame["epoch"] == layer_frame.groupby("run")["epoch"].transform("max")]
        .groupby(["dataset", "model", "activation", "loss", "noise"], as_index=False)
        .agg(
            alpha_mean=("alpha", "mean"),
            alpha_std=("alpha", "std"),
            alpha_n=("alpha", "count"),
            n_wavelets_mean=("n_wavelets", "mean"),
        )
    )
    return {
        "layers": layer_frame,
        "epochs": pd.DataFrame(epochs),
        "confusion": pd.concat(confusion, ignore_index=True),
        "correlation_points": points,
        "correlation": correlation,
        "noise_alpha": noise,
        "ssl_layers_summary": ssl_summary(rng),
    }


SSL_MEASURES = ("ncc_accuracy_test", "linear_probe_test", "knn_test", "nc1", "alpha")


def ssl_summary(rng: np.random.Generator) -> pd.DataFrame:
    """The fold summary of the default run's self-supervised sweep (VICReg on the Conv1D
    backbone, 2 folds, checkpoints 0 and 10)."""
    layers = ["input", "block1", "block2", "block3", "pool", "proj1", "projector"]
    rows = []
    for epoch in (0, 10):
        for i, layer in enumerate(layers):
            row = {
                "experiment": "ssl-mnist1d-small", "dataset": "mnist1d",
                "model": "conv1d-d3-w32", "loss": "vicreg", "label_set": "label",
                "epoch": epoch, "layer": layer, "layer_index": i,
            }  # fmt: skip
            for m in SSL_MEASURES:
                scale = 10.0 ** (1 - i) if m == "nc1" else 1.0
                row[f"{m}_mean"] = scale * (0.3 + 0.6 * rng.random())
                row[f"{m}_std"] = 0.05 * scale * rng.random()
                row[f"{m}_n"] = 2
            rows.append(row)
    return pd.DataFrame(rows)
