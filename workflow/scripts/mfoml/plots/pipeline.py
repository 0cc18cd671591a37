"""Figures of the pipeline (seaborn on matplotlib's Agg backend).

Every function takes the tidy tables written by the aggregate rule (``results/tables``),
writes one image (PNG or SVG, by the file suffix) atomically and returns the figure (closed) so
that a test can inspect it. Colours are consistent across figures: each activation has a fixed
colour (:data:`ACTIVATION_COLORS`); other variant labels get colours from a fixed palette in
sorted order (:func:`variant_palette`). Panels are the (data set / model, checkpoint) cells that
exist (:mod:`mfoml.plots.grid`), each with its number of runs n; bands are one standard
deviation over the runs (in log space on a log axis).
"""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from seaborn.utils import relative_luminance  # noqa: E402

from mfoml.plots.common import (  # noqa: E402
    add_variant,
    confusion_layout,
    empty_figure,
    save_figure,
    variant_palette,
)
from mfoml.plots.grid import (  # noqa: E402
    MAX_CHECKPOINTS,
    MAX_FIG_HEIGHT_IN,
    MAX_FIG_WIDTH_IN,
    checkpoint_subset,
    draw_summary,
    figure_legend,
    layer_grid,
    n_text,
    new_grid,
    panel_title,
    status_reason,
    summarize,
)

__all__ = [
    "MAX_CHECKPOINTS",
    "checkpoint_subset",
    "plot_accuracy_epochs",
    "plot_alpha_layers",
    "plot_collapse_layers",
    "plot_confusion",
    "plot_ncc_layers",
]


def _with_variant(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, tuple]]:
    """``frame`` with ``variant`` and ``panel`` columns (and ``run`` when it has none) and the
    variants' colours."""
    data, kind = add_variant(frame)
    if "run" not in data:
        data["run"] = data["fold"].astype(str) if "fold" in data else "run"
    return data, variant_palette(data["variant"], kind)


def plot_alpha_layers(
    layers: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> plt.Figure:
    """Alpha (train split) per layer: mean over runs with a +-1 sd band, one panel per existing
    (data set / model, checkpoint) cell, n in each panel's title. Where alpha is undefined the
    panel says why (the probe's status and wavelet count) instead of drawing it.

    Parameters
    ----------
    layers : the ``layers`` table (``layer_index, layer, epoch, alpha, alpha_status,
        n_wavelets`` and run columns).
    path : output image.

    Returns
    -------
    The figure (saved and closed).
    """
    title = "Besov smoothness alpha per layer (training data)"
    alpha = pd.to_numeric(layers.get("alpha"), errors="coerce") if "alpha" in layers else None
    if alpha is None or not np.isfinite(alpha).any():
        return empty_figure(
            path, title, "no finite alpha estimate (see the probe status in layers.csv)", dpi
        )
    data, pal = _with_variant(layers)
    status = data["alpha_status"] if "alpha_status" in data else pd.Series("", index=data.index)
    wavelets = data["n_wavelets"] if "n_wavelets" in data else pd.Series(np.nan, index=data.index)
    data["reason"] = [
        status_reason(s, k) if not np.isfinite(a) else ""
        for s, k, a in zip(status, wavelets, alpha.to_numpy(float), strict=True)
    ]
    fig = layer_grid(
        data, "alpha", palette=pal, ylabel="alpha (mean +- sd over runs)", title=title,
        what="alpha",
    )  # fmt: skip
    save_figure(fig, path, dpi)
    return fig


def plot_ncc_layers(
    layers: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> plt.Figure:
    """NCC mismatch per layer, train (solid) and test (dashed), one panel per existing
    (data set / model, checkpoint) cell. Returns the figure (saved and closed)."""
    title = "NCC mismatch with the network's prediction per layer"
    cols = [c for c in ("ncc_mismatch_train", "ncc_mismatch_test") if c in layers]
    if not cols or layers.empty:
        return empty_figure(path, title, "no NCC results", dpi)
    data, pal = _with_variant(layers)
    ids = ["variant", "panel", "epoch", "layer", "layer_index", "run"]
    long = data.melt(id_vars=ids, value_vars=cols, var_name="split", value_name="mismatch")
    long["split"] = long["split"].str.replace("ncc_mismatch_", "", regex=False)
    splits = [
        s for s in ("train", "test") if long.loc[long["split"] == s, "mismatch"].notna().any()
    ]
    if not splits:
        return empty_figure(path, title, "no finite NCC mismatch", dpi)
    long = long[long["split"].isin(splits)]
    long["reason"] = "not computed for this split"
    fig = layer_grid(
        long, "mismatch", palette=pal, ylabel="NCC mismatch (fraction)", title=title,
        what="NCC mismatch", style="split", style_order=splits,
    )  # fmt: skip
    save_figure(fig, path, dpi)
    return fig


def plot_collapse_layers(
    layers: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> plt.Figure:
    """NC1 (within-class variability relative to between-class) per layer on a log axis:
    geometric mean over runs with the band exp(mean +- sd of log NC1). Returns the figure."""
    title = "Neural collapse NC1 per layer"
    nc1 = pd.to_numeric(layers.get("nc1"), errors="coerce") if "nc1" in layers else None
    if nc1 is None or not (nc1 > 0).any():
        return empty_figure(path, title, "no positive NC1 value", dpi)
    data, pal = _with_variant(layers)
    status = (
        data["collapse_status"] if "collapse_status" in data else pd.Series("", index=data.index)
    )
    data["reason"] = [f"status {s}" if s and s != "ok" else "" for s in status.fillna("")]
    fig = layer_grid(
        data, "nc1", palette=pal, ylabel="NC1 = tr(Sw Sb+)/C (geometric mean +- sd)",
        title=title, what="NC1", log=True,
    )  # fmt: skip
    save_figure(fig, path, dpi)
    return fig


def plot_accuracy_epochs(
    epochs: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> plt.Figure:
    """Test accuracy (held-out fold where there is no test split) over epochs, mean +- 1 sd over
    runs, one panel per data set / model with its n in the title. Returns the figure."""
    title = "Test accuracy over training"
    acc = (
        pd.to_numeric(epochs.get("target_acc"), errors="coerce") if "target_acc" in epochs else None
    )
    if epochs.empty or acc is None or not np.isfinite(acc).any():
        return empty_figure(path, title, "no training metrics", dpi)
    data, pal = _with_variant(epochs[np.isfinite(acc)])
    panels = sorted(data["panel"].astype(str).unique())
    fig, axes = new_grid(len(panels), panel_size=(3.4, 2.7))
    for ax, panel in zip(axes, panels, strict=True):
        part = data[data["panel"].astype(str) == panel]
        counts = {}
        for variant in sorted(part["variant"].astype(str).unique()):
            rows = part[part["variant"].astype(str) == variant]
            counts[variant] = int(rows["run"].nunique())
            draw_summary(
                ax, summarize(rows, "epoch", "target_acc"), "epoch", pal[variant], marker=None
            )
        panel_title(ax, f"{panel}\n{n_text(counts)}")
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("test accuracy (mean +- sd)", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    figure_legend(fig, [Line2D([], [], color=pal[v], label=v) for v in sorted(pal)])
    fig.suptitle(title)
    save_figure(fig, path, dpi)
    return fig


def plot_confusion(
    confusion: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> plt.Figure:
    """Row-normalized confusion matrices of the final models, summed over folds.

    Up to :data:`mfoml.plots.common.ANNOTATE_MAX_CLASSES` classes each cell shows its percentage of the true class
    (font sized to the cell); larger matrices show colours only, with a colour bar. Returns
    the figure (saved and closed).
    """
    title = "Confusion matrices of the final models (rows: true class, normalized"
    if confusion.empty:
        return empty_figure(path, title + ")", "no predictions", dpi)
    data, _ = add_variant(confusion)
    keys = sorted(data.groupby(["panel", "variant"]).groups)
    n = len(keys)
    # the largest model's class count sets the layout; each matrix has its own model's size
    # (the tables hold every true x predicted pair of a run, zeros included)
    n_classes = int(max(data["true"].max(), data["predicted"].max())) + 1
    side, fontsize = confusion_layout(n_classes)
    side, ncol, nrow = _confusion_grid(n, side)
    if fontsize is not None:  # the numbers' font follows the (possibly smaller) matrices
        fontsize = min(fontsize, 0.4 * (side - 1.0) / n_classes * 72)
        fontsize = fontsize if fontsize >= 4 else None
    title += ", numbers in %)" if fontsize else ")"
    fig, axes = plt.subplots(nrow, ncol, figsize=(side * ncol, side * nrow), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    runs = "run" in data
    annotate: list[tuple[plt.Axes, pd.DataFrame]] = []
    for ax, (panel, variant) in zip(axes.flat, keys, strict=False):
        part = data[(data["panel"] == panel) & (data["variant"] == variant)]
        mat = part.groupby(["true", "predicted"])["count"].sum().unstack(fill_value=0)
        size = int(max(part["true"].max(), part["predicted"].max())) + 1
        mat = mat.reindex(index=range(size), columns=range(size), fill_value=0)
        rows = mat.sum(axis=1).replace(0, 1)
        norm = mat.div(rows, axis=0)
        sns.heatmap(
            norm,
            ax=ax,
            vmin=0,
            vmax=1,
            cmap="Blues",
            cbar=fontsize is None,
            square=True,
        )
        annotate.append((ax, norm))
        epoch = int(part["epoch"].max()) if "epoch" in part else None
        k = part["run"].nunique() if runs else None
        ax.set_title(
            f"{panel}\n{variant}"
            + (f" (epoch {epoch}" if epoch is not None else " (")
            + (f", n={k} run{'s' if k != 1 else ''})" if k is not None else ")"),
            fontsize=8,
        )
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if size > 10:
            ax.tick_params(labelsize=max(4, min(8, 160 / size)))
    if fontsize:
        for ax, norm in annotate:
            _annotate_cells(ax, norm.to_numpy(dtype=float), fontsize)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi)
    return fig


def _confusion_grid(n: int, side: float) -> tuple[float, int, int]:
    """``(side, columns, rows)`` of ``n`` matrices of at most ``side`` inches within
    :data:`MAX_FIG_WIDTH_IN` x :data:`MAX_FIG_HEIGHT_IN` (title and margins kept): the layout
    that shrinks the matrices least, wider rather than taller on a tie."""
    best = (0.0, 1, n)
    for ncol in range(1, n + 1):
        nrow = math.ceil(n / ncol)
        s = min(side, (MAX_FIG_WIDTH_IN - 2.0) / ncol, (MAX_FIG_HEIGHT_IN - 1.0) / nrow)
        if s > best[0] + 1e-9:
            best = (s, ncol, nrow)
    return best


def _annotate_cells(ax: plt.Axes, norm: np.ndarray, fontsize: float) -> None:
    """Write each cell's percentage (``norm`` (C, C) in [0, 1]) into a heatmap drawn with the
    ``Blues`` map on [0, 1], dark text on light cells and white on dark ones (seaborn's rule).

    ``sns.heatmap(annot=...)`` would do the same, but it draws the whole figure once per
    heatmap (to test tick labels for overlap), so with its texts a figure of n matrices cost
    O(n^2) text draws: 10 of the 38 CPU-s of the default run's figures job.
    """
    cmap = plt.get_cmap("Blues")
    percent = np.round(100 * norm).astype(int)
    for (i, j), value in np.ndenumerate(norm):
        color = ".15" if relative_luminance(cmap(value)) > 0.408 else "w"
        ax.text(
            j + 0.5,
            i + 0.5,
            str(percent[i, j]),
            ha="center",
            va="center",
            color=color,
            fontsize=fontsize,
        )
