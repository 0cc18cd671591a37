"""Figures of the training-dynamics and class-geometry measures (issue 13).

Each function takes a tidy table of ``results/tables`` and writes one image atomically (an
explanatory placeholder when there is nothing to plot). Panels are one per data set and model;
curves one per variant (the run dimensions that vary), averaged over folds with a band of one
standard deviation where several folds exist, with the number of folds ``n`` in the legend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mfoml.plots.common import add_variant, empty_figure, save_figure, variant_palette  # noqa: E402

__all__ = [
    "plot_checkpoint_measures",
    "plot_error_params",
    "plot_geometry_layers",
    "plot_gradnorm_epochs",
    "plot_interpolation",
    "plot_sharpness_epochs",
    "plot_trajectory",
]

_MAX_PANELS = 12


def _grid(n: int, ncols: int = 3, size: float = 3.6) -> tuple[plt.Figure, np.ndarray]:
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, 0.8 * size * nrows), squeeze=False
    )
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes


def _mean_band(
    ax: plt.Axes, part: pd.DataFrame, x: str, y: str, color: tuple, label: str, ls: str = "-"
) -> None:
    """Mean over folds of ``y`` against ``x`` with a +-1 std band (n folds in the label)."""
    g = part.groupby(x)[y].agg(["mean", "std", "count"]).reset_index().sort_values(x)
    g = g[np.isfinite(g["mean"])]
    if g.empty:
        return
    n = int(part["fold"].nunique()) if "fold" in part else 1
    ax.plot(g[x], g["mean"], ls, color=color, label=f"{label} (n={n})", lw=1.4)
    if n > 1:
        sd = g["std"].fillna(0.0)
        ax.fill_between(g[x], g["mean"] - sd, g["mean"] + sd, color=color, alpha=0.15, lw=0)


def _panels(frame: pd.DataFrame) -> tuple[pd.DataFrame, str, list[str], dict]:
    f, kind = add_variant(frame)
    panels = list(dict.fromkeys(f["panel"]))[:_MAX_PANELS]
    return f, kind, panels, variant_palette(f["variant"].unique(), kind)


def plot_gradnorm_epochs(
    epochs: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> None:
    """Training loss (left axis, solid) and gradient norm (right axis: mean dashed, max dotted,
    log scale) over the epochs, one panel per data set and model."""
    title = "Training loss and gradient norm"
    if epochs.empty or "grad_norm_mean" not in epochs or epochs["grad_norm_mean"].isna().all():
        empty_figure(
            path, title, "no gradient norms recorded (metrics.csv without grad_norm_*)", dpi
        )
        return
    f, _, panels, pal = _panels(epochs)
    fig, axes = _grid(len(panels))
    for ax, panel in zip(axes.flat, panels, strict=False):
        part = f[f["panel"] == panel]
        ax2 = ax.twinx()
        for v, sub in part.groupby("variant", sort=True):
            _mean_band(ax, sub, "epoch", "train_loss", pal[str(v)], f"{v} loss")
            _mean_band(ax2, sub, "epoch", "grad_norm_mean", pal[str(v)], f"{v} |g| mean", "--")
            _mean_band(ax2, sub, "epoch", "grad_norm_max", pal[str(v)], f"{v} |g| max", ":")
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (solid)")
        ax2.set_ylabel("gradient norm (--- mean, ... max)")
        if (part["grad_norm_max"] > 0).any():
            ax2.set_yscale("log")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=6, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi)


def plot_error_params(epochs: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Final-epoch test and training error against the parameter count (log x), per data set;
    one line per label-noise level (the double-descent figure)."""
    title = "Error against the number of parameters (last epoch)"
    need = {"n_parameters", "target_acc", "train_acc", "epoch"}
    if epochs.empty or not need <= set(epochs.columns):
        empty_figure(path, title, "no parameter counts recorded", dpi)
        return
    last = epochs.loc[epochs.groupby("run")["epoch"].idxmax()].copy()
    last["test_error"] = 1.0 - last["target_acc"]
    last["train_error"] = 1.0 - last["train_acc"]
    sets = list(dict.fromkeys(last["dataset"]))[:_MAX_PANELS]
    fig, axes = _grid(len(sets), ncols=2, size=4.2)
    noise_levels = sorted(last["noise"].unique())
    pal = variant_palette([f"{100 * n:g}%" for n in noise_levels])
    for ax, ds in zip(axes.flat, sets, strict=False):
        part = last[last["dataset"] == ds]
        for nz in noise_levels:
            sub = part[part["noise"] == nz]
            if sub.empty:
                continue
            c = pal[f"{100 * nz:g}%"]
            _mean_band(ax, sub, "n_parameters", "test_error", c, f"test, noise {100 * nz:g}%")
            _mean_band(
                ax, sub, "n_parameters", "train_error", c, f"train, noise {100 * nz:g}%", ":"
            )
        ax.set_xscale("log")
        ax.set_xlabel("number of parameters")
        ax.set_ylabel("error")
        ax.set_title(str(ds), fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi)


_GEOMETRY = [
    ("cdnv", "CDNV (log)", True),
    ("trace_ratio", "tr(Sigma_W)/tr(Sigma_B) (log)", True),
    ("etf_error_means", "simplex-ETF error of the means", False),
    ("effective_rank", "effective rank", False),
]


def plot_geometry_layers(
    layers: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> None:
    """Class geometry per layer at the last checkpoint: CDNV, trace ratio, ETF error and effective
    rank (rows) for each data set and model (columns)."""
    title = "Class geometry per layer (last checkpoint, training split)"
    if layers.empty or "cdnv" not in layers or layers["cdnv"].isna().all():
        empty_figure(path, title, "no geometry columns (ncc.geometry: false?)", dpi)
        return
    last = layers[layers["epoch"] == layers.groupby("run")["epoch"].transform("max")]
    f, _, panels, pal = _panels(last)
    panels = panels[:4]
    fig, axes = plt.subplots(
        len(_GEOMETRY),
        len(panels),
        figsize=(3.6 * len(panels), 2.4 * len(_GEOMETRY)),
        squeeze=False,
    )
    for j, panel in enumerate(panels):
        part = f[f["panel"] == panel]
        names = part.drop_duplicates("layer_index").sort_values("layer_index")
        for i, (col, label, logy) in enumerate(_GEOMETRY):
            ax = axes[i, j]
            for v, sub in part.groupby("variant", sort=True):
                _mean_band(ax, sub, "layer_index", col, pal[str(v)], str(v))
            if logy and (part[col] > 0).any():
                ax.set_yscale("log")
            ax.set_ylabel(label, fontsize=8)
            ax.set_xticks(names["layer_index"])
            ax.set_xticklabels(names["layer"], rotation=45, fontsize=7)
            if i == 0:
                ax.set_title(panel, fontsize=9)
                ax.legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi)


def _measure_grid(
    frame: pd.DataFrame, x: str, cols: Sequence[tuple[str, str]], path: str, title: str, dpi: int
) -> None:
    cols = [(c, lab) for c, lab in cols if c in frame and frame[c].notna().any()]
    if frame.empty or not cols:
        empty_figure(path, title, "nothing computed", dpi)
        return
    f, _, panels, pal = _panels(frame)
    panels = panels[:4]
    fig, axes = plt.subplots(
        len(cols), len(panels), figsize=(3.8 * len(panels), 2.6 * len(cols)), squeeze=False
    )
    for j, panel in enumerate(panels):
        part = f[f["panel"] == panel]
        for i, (col, label) in enumerate(cols):
            ax = axes[i, j]
            for v, sub in part.groupby("variant", sort=True):
                _mean_band(ax, sub, x, col, pal[str(v)], str(v))
            ax.set_ylabel(label, fontsize=8)
            ax.set_xlabel(x)
            if i == 0:
                ax.set_title(panel, fontsize=9)
                ax.legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi)


def plot_checkpoint_measures(
    table: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> None:
    """Sharpness (top Hessian eigenvalue), Hessian trace and input sensitivity per checkpoint."""
    cols = [
        ("top_eigenvalue", "top Hessian eigenvalue"),
        ("hessian_trace", "Hessian trace (Hutchinson)"),
        ("sensitivity_train", "input sensitivity, train"),
        ("sensitivity_test", "input sensitivity, test"),
    ]
    _measure_grid(table, "epoch", cols, str(path), "Sharpness and input sensitivity", dpi)


def plot_sharpness_epochs(
    epochs: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> None:
    """Edge of stability: the sharpness over the epochs (steps of full-batch gradient descent)
    with the stability threshold 2/lr dashed, and the training loss below."""
    title = "Sharpness against 2/lr (edge of stability)"
    if "sharpness" not in epochs or epochs["sharpness"].isna().all():
        empty_figure(path, title, "no sharpness tracked (train.sharpness_every: 0)", dpi)
        return
    tracked = epochs.groupby("run")["sharpness"].transform(lambda c: c.notna().any())
    f, _, panels, pal = _panels(epochs[tracked.astype(bool)])
    panels = panels[:4]
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 6), squeeze=False)
    for j, panel in enumerate(panels):
        part = f[f["panel"] == panel]
        for v, sub in part.groupby("variant", sort=True):
            c = pal[str(v)]
            s = sub[sub["sharpness"].notna()]
            _mean_band(axes[0, j], s, "epoch", "sharpness", c, str(v))
            if "stability_threshold" in s and s["stability_threshold"].notna().any():
                axes[0, j].plot(
                    s["epoch"], s["stability_threshold"], "--", color=c, lw=1, label=f"{v} 2/lr"
                )
            _mean_band(axes[1, j], sub, "epoch", "train_loss", c, str(v))
        axes[0, j].set_title(panel, fontsize=9)
        axes[0, j].set_ylabel("top Hessian eigenvalue")
        axes[0, j].legend(fontsize=6)
        axes[1, j].set_ylabel("training loss")
        axes[1, j].set_xlabel("epoch (= step with full_batch)")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi)


def plot_interpolation(table: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Loss (solid: train, dashed: test) along theta(t) for each interpolated pair; vertical lines
    at the end points t = 0 and 1."""
    title = "Linear interpolation between models"
    if table.empty:
        empty_figure(path, title, "no interpolation", dpi)
        return
    t = table.copy()
    short = {r: "/".join(str(r).split("/")[1:3]) for r in set(t["run_a"]) | set(t["run_b"])}
    t["pair"] = [
        f"{short[a]}@{ea} -> {short[b]}@{eb}" if a != b else f"{short[a]}: epoch {ea} -> {eb}"
        for a, ea, b, eb in zip(t["run_a"], t["epoch_a"], t["run_b"], t["epoch_b"], strict=True)
    ]
    groups = list(dict.fromkeys(zip(t["kind"], t["dataset"], strict=True)))[:_MAX_PANELS]
    fig, axes = _grid(len(groups), ncols=2, size=4.6)
    for ax, (kind, ds) in zip(axes.flat, groups, strict=False):
        part = t[(t["kind"] == kind) & (t["dataset"] == ds)]
        pairs = list(dict.fromkeys(part["pair"]))[:8]
        pal = variant_palette(pairs)
        for p in pairs:
            sub = part[part["pair"] == p]
            g = sub.groupby("t")[["train_loss", "test_loss"]].mean().reset_index()
            ax.plot(g["t"], g["train_loss"], "-", color=pal[p], lw=1.3, label=p)
            ax.plot(g["t"], g["test_loss"], "--", color=pal[p], lw=1.0)
        for x0 in (0.0, 1.0):
            ax.axvline(x0, color="0.6", lw=0.6)
        ax.set_yscale("log")
        ax.set_xlabel("t")
        ax.set_ylabel("loss (solid train, dashed test)")
        ax.set_title(f"{ds}: between {'runs' if kind == 'runs' else 'checkpoints'}", fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi)


def plot_trajectory(
    surface: pd.DataFrame, path_table: pd.DataFrame, out: str | os.PathLike[str], dpi: int = 110
) -> None:
    """Training-loss contours on the plane of the first two principal directions of each run's
    weight trajectory, with the checkpoints (numbered by epoch) joined in training order."""
    title = "Weight trajectory on its first two principal directions"
    if surface.empty:
        empty_figure(out, title, "no trajectory", dpi)
        return
    runs = list(dict.fromkeys(surface["run"]))[:_MAX_PANELS]
    fig, axes = _grid(len(runs), ncols=3, size=3.8)
    for ax, rid in zip(axes.flat, runs, strict=False):
        s = surface[surface["run"] == rid]
        grid = s.pivot_table(index="b", columns="a", values="train_loss")
        z = np.log10(np.clip(grid.to_numpy(), 1e-8, None))
        cs = ax.contourf(grid.columns, grid.index, z, levels=15, cmap="viridis")
        fig.colorbar(cs, ax=ax, label="log10 training loss")
        p = path_table[path_table["run"] == rid].sort_values("epoch")
        ax.plot(p["a"], p["b"], "o-", color="white", ms=3, lw=1)
        for _, r in p.iterrows():
            ax.annotate(str(int(r["epoch"])), (r["a"], r["b"]), fontsize=6, color="white")
        ev = p[["explained_variance_ratio_1", "explained_variance_ratio_2"]].iloc[0]
        ax.set_xlabel(f"PC1 ({100 * ev.iloc[0]:.0f}% var.)")
        ax.set_ylabel(f"PC2 ({100 * ev.iloc[1]:.0f}% var.)")
        ax.set_title("/".join(str(rid).split("/")[:3]), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, out, dpi)
