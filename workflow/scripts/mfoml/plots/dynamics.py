"""Figures of the training-dynamics and class-geometry measures (issue 13).

Each function takes a tidy table of ``results/tables`` and writes one image atomically (an
explanatory placeholder when there is nothing to plot). Panels are one per data set and model;
curves one per variant (the run dimensions that vary), averaged over folds with a band of one
standard deviation where several folds exist, with the number of folds ``n`` in the legend.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mfoml.plots.common import add_variant, empty_figure, save_figure, variant_palette  # noqa: E402
from mfoml.plots.grid import (  # noqa: E402
    draw_summary,
    figure_legend,
    footnote,
    n_text,
    new_grid,
    panel_title,
    summarize,
)

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


def _grid(n: int, ncols: int = 4, size: float = 3.6) -> tuple[plt.Figure, np.ndarray]:
    """``n`` panels of ``size`` inches, ``ncols`` to a row (constrained layout, no unused axes)."""
    fig, axes = new_grid(n, panel_size=(size, 0.8 * size), min_cols=ncols)
    return fig, np.asarray(axes, dtype=object)


def _mean_band(
    ax: plt.Axes,
    part: pd.DataFrame,
    x: str,
    y: str,
    color: object,
    label: str = "",
    ls: str = "-",
    *,
    log: bool = False,
) -> int:
    """Mean over runs of ``y`` against ``x`` with a +-1 sd band (in log space when ``log``).
    Returns the number of runs behind the line (0: nothing drawn)."""
    if y not in part or not pd.to_numeric(part[y], errors="coerce").notna().any():
        return 0
    g = summarize(part, x, y, log=log)
    if g.empty:
        return 0
    draw_summary(ax, g, x, color, ls=ls, marker=None)
    key = "run" if "run" in part else "fold" if "fold" in part else None
    return int(part[key].nunique()) if key else 1


def _panels(frame: pd.DataFrame) -> tuple[pd.DataFrame, str, list[str], dict]:
    f, kind = add_variant(frame)
    panels = list(dict.fromkeys(f["panel"]))[:_MAX_PANELS]
    return f, kind, panels, variant_palette(f["variant"].unique(), kind)


def _variant_handles(pal: dict, ls: str = "-") -> list[Line2D]:
    return [Line2D([], [], color=c, ls=ls, label=str(v)) for v, c in sorted(pal.items())]


def _style_handles(styles: list[tuple[str, str]]) -> list[Line2D]:
    return [Line2D([], [], color="0.3", ls=ls, label=label) for ls, label in styles]


def plot_gradnorm_epochs(
    epochs: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> plt.Figure:
    """Training loss (left axis, solid) and gradient norm (right axis: mean dashed, max dotted,
    log scale, bands in log space) over the epochs, one panel per data set and model; the
    legend sits at the right of the panels. Returns the figure (saved and closed)."""
    title = "Training loss and gradient norm"
    if epochs.empty or "grad_norm_mean" not in epochs or epochs["grad_norm_mean"].isna().all():
        return empty_figure(
            path, title, "no gradient norms recorded (metrics.csv without grad_norm_*)", dpi
        )
    f, _, panels, pal = _panels(epochs)
    fig, axes = _grid(len(panels))
    for ax, panel in zip(axes.flat, panels, strict=False):
        part = f[f["panel"] == panel]
        ax2 = ax.twinx()
        log = bool((part["grad_norm_max"] > 0).any()) if "grad_norm_max" in part else False
        counts = {}
        for v, sub in part.groupby("variant", sort=True):
            c = pal[str(v)]
            counts[str(v)] = _mean_band(ax, sub, "epoch", "train_loss", c)
            _mean_band(ax2, sub, "epoch", "grad_norm_mean", c, ls="--", log=log)
            _mean_band(ax2, sub, "epoch", "grad_norm_max", c, ls=":", log=log)
        panel_title(ax, f"{panel}\n{n_text(counts)}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("training loss (solid)", fontsize=8)
        ax2.set_ylabel("gradient norm", fontsize=8)
        if log:
            ax2.set_yscale("log")
    figure_legend(
        fig,
        _variant_handles(pal)
        + _style_handles(
            [("-", "training loss"), ("--", "gradient norm, mean"), (":", "gradient norm, max")]
        ),
    )
    fig.suptitle(title)
    save_figure(fig, path, dpi)
    return fig


def plot_error_params(
    epochs: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> plt.Figure:
    """Final-epoch test and training error against the parameter count (log x), per data set;
    one line per label-noise level (the double-descent figure). Returns the figure."""
    title = "Error against the number of parameters (last epoch)"
    need = {"n_parameters", "target_acc", "train_acc", "epoch"}
    if epochs.empty or not need <= set(epochs.columns):
        return empty_figure(path, title, "no parameter counts recorded", dpi)
    last = epochs.loc[epochs.groupby("run")["epoch"].idxmax()].copy()
    last["test_error"] = 1.0 - last["target_acc"]
    last["train_error"] = 1.0 - last["train_acc"]
    sets = list(dict.fromkeys(last["dataset"]))[:_MAX_PANELS]
    fig, axes = _grid(len(sets), ncols=2, size=4.2)
    noise_levels = sorted(last["noise"].unique())
    pal = variant_palette([f"{100 * n:g}%" for n in noise_levels])
    for ax, ds in zip(axes.flat, sets, strict=False):
        part = last[last["dataset"] == ds]
        counts = {}
        for nz in noise_levels:
            sub = part[part["noise"] == nz]
            if sub.empty:
                continue
            c = pal[f"{100 * nz:g}%"]
            counts[f"noise {100 * nz:g}%"] = _mean_band(ax, sub, "n_parameters", "test_error", c)
            _mean_band(ax, sub, "n_parameters", "train_error", c, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("number of parameters")
        ax.set_ylabel("error")
        panel_title(ax, f"{ds}\n{n_text(counts)} (all models)")
    figure_legend(
        fig,
        [Line2D([], [], color=c, label=f"noise {v}") for v, c in pal.items()]
        + _style_handles([("-", "test error"), (":", "training error")]),
    )
    fig.suptitle(title)
    save_figure(fig, path, dpi)
    return fig


_GEOMETRY = [
    ("cdnv", "CDNV (log)", True),
    ("trace_ratio", "tr(Sigma_W)/tr(Sigma_B) (log)", True),
    ("etf_error_means", "simplex-ETF error of the means", False),
    ("effective_rank", "effective rank", False),
]
#: Fewest classes for which a geometry measure says something: two class means always form a
#: simplex ETF (their error is rounding noise), so that measure is left out at 2 classes.
_MIN_CLASSES = {"etf_error_means": 3}


def _n_classes(part: pd.DataFrame) -> int | None:
    for col in ("n_classes_present", "n_classes"):
        if col in part and part[col].notna().any():
            return int(part[col].max())
    return None


def plot_geometry_layers(
    layers: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> plt.Figure:
    """Class geometry per layer at the last checkpoint: CDNV, trace ratio, ETF error and effective
    rank (columns) for each data set and model (rows, at most 4); bands in log space on the log
    axes. A measure undefined or constant for a model's class count (the ETF error of 2 class
    means) is left out with a note. Returns the figure (saved and closed)."""
    title = "Class geometry per layer (last checkpoint, training split)"
    if layers.empty or "cdnv" not in layers or layers["cdnv"].isna().all():
        return empty_figure(path, title, "no geometry columns (ncc.geometry: false?)", dpi)
    last = layers[layers["epoch"] == layers.groupby("run")["epoch"].transform("max")]
    f, _, panels, pal = _panels(last)
    shown = panels[:4]
    cells: list[tuple[str, str, str, bool]] = []
    notes = [f"{len(panels) - len(shown)} more data sets / models not drawn."] * (
        len(panels) > len(shown)
    )
    left_out: dict[tuple[str, int], list[str]] = {}
    for panel in shown:
        part = f[f["panel"] == panel]
        k = _n_classes(part)
        for col, label, logy in _GEOMETRY:
            if col not in part or not pd.to_numeric(part[col], errors="coerce").notna().any():
                continue
            if k is not None and k < _MIN_CLASSES.get(col, 0):
                left_out.setdefault((label, k), []).append(panel)
                continue
            cells.append((panel, col, label, logy))
    for (label, k), where in left_out.items():
        notes.append(
            f"{label} left out for {', '.join(where)}: with {k} classes it depends only on the "
            "class counts (two class means always form a simplex ETF)."
        )
    if not cells:
        return empty_figure(path, title, "no finite geometry value", dpi)
    rows = list(dict.fromkeys(c[0] for c in cells))
    ncols = max(sum(c[0] == p for c in cells) for p in rows)
    fig = plt.figure(figsize=(3.0 * ncols + 2.5, 1.75 * len(rows) + 1.0), layout="constrained")
    grid = fig.subplots(len(rows), ncols, squeeze=False)
    used = set()
    for panel, col, label, logy in cells:
        i = rows.index(panel)
        j = sum(1 for a, b in used if a == i)
        used.add((i, j))
        ax = grid[i, j]
        part = f[f["panel"] == panel]
        names = part.drop_duplicates("layer_index").sort_values("layer_index")
        log = logy and bool((pd.to_numeric(part[col], errors="coerce") > 0).any())
        counts = {}
        for v, sub in part.groupby("variant", sort=True):
            counts[str(v)] = _mean_band(ax, sub, "layer_index", col, pal[str(v)], log=log)
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(label, fontsize=7)
        ax.set_xticks(names["layer_index"])
        ax.set_xticklabels(names["layer"], rotation=45, fontsize=6)
        panel_title(ax, f"{panel}\n{n_text(counts)}")
    for i, j in np.ndindex(grid.shape):
        if (i, j) not in used:
            grid[i, j].remove()
    figure_legend(fig, _variant_handles(pal))
    fig.suptitle(title)
    footnote(fig, notes)
    save_figure(fig, path, dpi)
    return fig


def _measure_grid(
    frame: pd.DataFrame, x: str, cols: Sequence[tuple[str, str]], path: str, title: str, dpi: int
) -> plt.Figure:
    cols = [(c, lab) for c, lab in cols if c in frame and frame[c].notna().any()]
    if frame.empty or not cols:
        return empty_figure(path, title, "nothing computed", dpi)
    f, _, panels, pal = _panels(frame)
    panels = panels[:4]
    cells = [(p, c, lab) for p in panels for c, lab in cols]
    fig, axes = new_grid(len(cells), panel_size=(3.2, 2.4), min_cols=len(cols))
    for ax, (panel, col, label) in zip(axes, cells, strict=True):
        part = f[f["panel"] == panel]
        counts = {}
        for v, sub in part.groupby("variant", sort=True):
            counts[str(v)] = _mean_band(ax, sub, x, col, pal[str(v)])
        ax.set_ylabel(label, fontsize=8)
        ax.set_xlabel(x)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        panel_title(ax, f"{panel}\n{n_text(counts)}")
    figure_legend(fig, _variant_handles(pal))
    fig.suptitle(title)
    save_figure(fig, path, dpi)
    return fig


def plot_checkpoint_measures(
    table: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> plt.Figure:
    """Sharpness (top Hessian eigenvalue), Hessian trace and input sensitivity per checkpoint.
    Returns the figure (saved and closed)."""
    cols = [
        ("top_eigenvalue", "top Hessian eigenvalue"),
        ("hessian_trace", "Hessian trace (Hutchinson)"),
        ("sensitivity_train", "input sensitivity, train"),
        ("sensitivity_test", "input sensitivity, test"),
    ]
    return _measure_grid(table, "epoch", cols, str(path), "Sharpness and input sensitivity", dpi)


def plot_sharpness_epochs(
    epochs: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> plt.Figure:
    """Edge of stability: the sharpness over the epochs (steps of full-batch gradient descent)
    with the stability threshold 2/lr dashed, and the training loss below. Returns the figure."""
    title = "Sharpness against 2/lr (edge of stability)"
    if "sharpness" not in epochs or epochs["sharpness"].isna().all():
        return empty_figure(path, title, "no sharpness tracked (train.sharpness_every: 0)", dpi)
    tracked = epochs.groupby("run")["sharpness"].transform(lambda c: c.notna().any())
    f, _, panels, pal = _panels(epochs[tracked.astype(bool)])
    panels = panels[:4]
    fig = plt.figure(figsize=(4.2 * len(panels) + 2.5, 6), layout="constrained")
    axes = fig.subplots(2, len(panels), squeeze=False)
    for j, panel in enumerate(panels):
        part = f[f["panel"] == panel]
        counts = {}
        for v, sub in part.groupby("variant", sort=True):
            c = pal[str(v)]
            s = sub[sub["sharpness"].notna()]
            counts[str(v)] = _mean_band(axes[0, j], s, "epoch", "sharpness", c)
            if "stability_threshold" in s and s["stability_threshold"].notna().any():
                axes[0, j].plot(s["epoch"], s["stability_threshold"], "--", color=c, lw=1)
            _mean_band(axes[1, j], sub, "epoch", "train_loss", c)
        panel_title(axes[0, j], f"{panel}\n{n_text(counts)}")
        axes[0, j].set_ylabel("top Hessian eigenvalue")
        axes[1, j].set_ylabel("training loss")
        axes[1, j].set_xlabel("epoch (= step with full_batch)")
        for ax in axes[:, j]:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure_legend(fig, _variant_handles(pal) + _style_handles([("-", "sharpness"), ("--", "2/lr")]))
    fig.suptitle(title)
    save_figure(fig, path, dpi)
    return fig


def plot_interpolation(
    table: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> plt.Figure:
    """Loss (solid: train, dashed: test) along theta(t) for each interpolated pair; vertical lines
    at the end points t = 0 and 1; each panel's pairs are listed under it. Returns the figure."""
    title = "Linear interpolation between models"
    if table.empty:
        return empty_figure(path, title, "no interpolation", dpi)
    t = table.copy()
    short = {r: "/".join(str(r).split("/")[1:3]) for r in set(t["run_a"]) | set(t["run_b"])}
    t["pair"] = [
        f"{short[a]}@{ea} -> {short[b]}@{eb}" if a != b else f"{short[a]}: epoch {ea} -> {eb}"
        for a, ea, b, eb in zip(t["run_a"], t["epoch_a"], t["run_b"], t["epoch_b"], strict=True)
    ]
    groups = list(dict.fromkeys(zip(t["kind"], t["dataset"], strict=True)))[:_MAX_PANELS]
    fig, axes = new_grid(len(groups), panel_size=(4.6, 4.2), min_cols=2, legend=False)
    for ax, (kind, ds) in zip(axes, groups, strict=False):
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
        # below the panel, outside its data area
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    fig.suptitle(title)
    save_figure(fig, path, dpi)
    return fig


def plot_trajectory(
    surface: pd.DataFrame, path_table: pd.DataFrame, out: str | os.PathLike[str], dpi: int = 110
) -> plt.Figure:
    """Training-loss contours on the plane of the first two principal directions of each run's
    weight trajectory, with the checkpoints (numbered by epoch) joined in training order.
    Returns the figure (saved and closed)."""
    title = "Weight trajectory on its first two principal directions"
    if surface.empty:
        return empty_figure(out, title, "no trajectory", dpi)
    runs = list(dict.fromkeys(surface["run"]))[:_MAX_PANELS]
    fig, axes = new_grid(len(runs), panel_size=(3.8, 3.0), min_cols=3, legend=False)
    for ax, rid in zip(axes, runs, strict=False):
        s = surface[surface["run"] == rid]
        grid = s.pivot_table(index="b", columns="a", values="train_loss")
        z = np.log10(np.clip(grid.to_numpy(), 1e-8, None))
        cs = ax.contourf(grid.columns, grid.index, z, levels=15, cmap="viridis")
        fig.colorbar(cs, ax=ax, label="log10 training loss")
        p = path_table[path_table["run"] == rid].sort_values("epoch")
        ax.plot(p["a"], p["b"], "o-", color="white", ms=3, lw=1)
        for _, r in p.iterrows():
            ax.annotate(  # outlined, so that the number reads on light and dark contours
                str(int(r["epoch"])), (r["a"], r["b"]), xytext=(3, 3), textcoords="offset points",
                fontsize=7, color="white",
                path_effects=[patheffects.withStroke(linewidth=2, foreground="black")],
            )  # fmt: skip
        ev = p[["explained_variance_ratio_1", "explained_variance_ratio_2"]].iloc[0]
        ax.set_xlabel(f"PC1 ({100 * ev.iloc[0]:.0f}% var.)")
        ax.set_ylabel(f"PC2 ({100 * ev.iloc[1]:.0f}% var.)")
        ax.set_title("/".join(str(rid).split("/")[:3]), fontsize=8)
    fig.suptitle(title)
    save_figure(fig, out, dpi)
    return fig
