"""Figures of the pipeline (seaborn on matplotlib's Agg backend).

Every function takes the tidy tables written by the aggregate rule (``results/tables``) and
writes one image (PNG or SVG, by the file suffix) atomically. Colours are consistent across
figures: each activation has a fixed colour (:data:`ACTIVATION_COLORS`); other variant labels
get colours from a fixed palette in sorted order (:func:`variant_palette`). Panels are one per
data set and model (rows) and, where it applies, per checkpoint epoch (columns); bands are
one standard deviation over the folds.
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
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from seaborn.utils import relative_luminance  # noqa: E402

from mfoml.plots.common import (  # noqa: E402
    add_variant,
    confusion_layout,
    empty_figure,
    save_figure,
    variant_palette,
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


#: Most checkpoints drawn in a per-layer figure; more are thinned to an evenly spaced subset
#: (first and last kept), stated in the figure's title.
MAX_CHECKPOINTS = 12
#: Panels per row of a per-layer figure (the checkpoints of one model wrap onto further rows).
PANELS_PER_ROW = 4
_SEP = " | epoch "


def checkpoint_subset(epochs: Sequence[int], limit: int = MAX_CHECKPOINTS) -> list[int]:
    """At most ``limit`` of the sorted ``epochs``: all of them, or an evenly spaced subset that
    keeps the first and the last."""
    epochs = sorted(epochs)
    if len(epochs) <= limit:
        return epochs
    picks = np.unique(np.round(np.linspace(0, len(epochs) - 1, limit)).astype(int))
    return [epochs[i] for i in picks]


def _layer_ticks(ax: plt.Axes, part: pd.DataFrame) -> None:
    """Label the x axis with the layer names of the panel's own model (models differ)."""
    names = (
        part[["layer_index", "layer"]]
        .drop_duplicates()
        .sort_values("layer_index")
        .groupby("layer_index")["layer"]
        .first()
    )
    ax.set_xticks(list(names.index))
    ax.set_xticklabels(list(names.values), rotation=45, ha="right", fontsize=8)


def runs_per_variant(data: pd.DataFrame) -> dict[str, int]:
    """Number of runs (folds, seeds) behind each variant's line: ``{variant: n}``."""
    key = "run" if "run" in data else "fold" if "fold" in data else None
    if key is None:
        return {str(v): 1 for v in data["variant"].unique()}
    return {str(v): int(n) for v, n in data.groupby("variant")[key].nunique().items()}


def label_with_n(legend: object, n_runs: dict[str, int]) -> None:
    """Append ``(n=k)`` to each variant entry of a legend: a line of one run (no band) must not
    look like a mean over folds."""
    if legend is None:
        return
    for text in legend.get_texts():  # type: ignore[attr-defined]
        label = text.get_text()
        if label in n_runs:
            n = n_runs[label]
            text.set_text(f"{label} (n={n}{', one run' if n == 1 else ''})")


def _per_layer_grid(
    data: pd.DataFrame,
    y: str,
    kind: str | None,
    *,
    ylabel: str,
    title: str,
    path: str | os.PathLike[str],
    dpi: int,
    variants: pd.Series | None = None,
    sharey: bool | None = None,
    logy: bool = False,
    **line_kws: object,
) -> None:
    """One line per variant of ``y`` over the layer index (mean +- sd over the runs, ``n`` in
    the legend), one panel per model and checkpoint, saved to ``path``.

    The checkpoints of a model fill rows of :data:`PANELS_PER_ROW` panels (each model starts a
    new row); more than :data:`MAX_CHECKPOINTS` checkpoints are thinned to an evenly spaced
    subset, said in the title. The figure stays readable for any number of checkpoints.
    """
    pal = variant_palette(data["variant"] if variants is None else variants, kind)
    n_runs = runs_per_variant(data)
    epochs = sorted(int(e) for e in data["epoch"].unique())
    shown = checkpoint_subset(epochs)
    data = data[data["epoch"].isin(shown)].copy()
    ncols = min(len(shown), PANELS_PER_ROW)
    panels = sorted(data["panel"].astype(str).unique())
    data["facet"] = data["panel"].astype(str) + _SEP + data["epoch"].astype(int).astype(str)
    order: list[str] = []
    for panel in panels:
        cells = [f"{panel}{_SEP}{e}" for e in shown]
        order += cells + [f"{panel} (empty {i})" for i in range(-len(cells) % ncols)]
    facet_kws: dict[str, bool] = {"sharex": False}
    if sharey is not None:
        facet_kws["sharey"] = sharey
    g = sns.relplot(
        data=data,
        x="layer_index",
        y=y,
        hue="variant",
        hue_order=sorted(pal),
        palette=pal,
        col="facet",
        col_order=order,
        col_wrap=ncols,
        kind="line",
        marker="o",
        errorbar="sd",
        height=2.8,
        aspect=1.2,
        facet_kws=facet_kws,
        **line_kws,
    )
    if logy:
        g.set(yscale="log")
    g.set_axis_labels("layer", ylabel)
    for name, ax in g.axes_dict.items():
        if _SEP not in name:
            ax.set_visible(False)
            continue
        panel, epoch = name.rsplit(_SEP, 1)
        ax.set_title(f"{panel}\nepoch {epoch}", fontsize=9)
        _layer_ticks(ax, data[data["facet"] == name])
    label_with_n(g.legend, n_runs)
    if g.legend is not None:  # re-placed outside the panels, now that the labels are longer
        sns.move_legend(g, "upper left", bbox_to_anchor=(1.0, 0.97), frameon=False)
    if len(shown) < len(epochs):
        title += f" ({len(shown)} of {len(epochs)} checkpoints, evenly spaced)"
    g.figure.suptitle(title, y=1.02)
    g.tight_layout()
    save_figure(g.figure, path, dpi)


def plot_alpha_layers(layers: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Alpha (train split) per layer: mean over folds with a +-1 sd band, one column per epoch.

    Parameters
    ----------
    layers : the ``layers`` table (``layer_index, layer, epoch, alpha`` and run columns).
    path : output image.
    """
    title = "Besov smoothness alpha per layer (training data)"
    data = (
        layers[np.isfinite(pd.to_numeric(layers.get("alpha"), errors="coerce"))]
        if "alpha" in layers
        else layers.iloc[0:0]
    )
    if data.empty:
        empty_figure(
            path, title, "no finite alpha estimate (see the probe status in layers.csv)", dpi
        )
        return
    data, kind = add_variant(data)
    _per_layer_grid(
        data,
        "alpha",
        kind,
        ylabel="alpha (mean +- sd over folds)",
        title=title,
        path=path,
        dpi=dpi,
        sharey=True,
    )


def plot_ncc_layers(layers: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """NCC mismatch per layer, train (solid) and test (dashed), one column per epoch."""
    title = "NCC mismatch with the network's prediction per layer"
    cols = [c for c in ("ncc_mismatch_train", "ncc_mismatch_test") if c in layers]
    if not cols or layers.empty:
        empty_figure(path, title, "no NCC results", dpi)
        return
    data, kind = add_variant(layers)
    ids = ["variant", "panel", "epoch", "layer", "layer_index", "fold", "run"]
    long = data.melt(
        id_vars=[c for c in ids if c in data],
        value_vars=cols,
        var_name="split",
        value_name="mismatch",
    )
    long["split"] = long["split"].str.replace("ncc_mismatch_", "", regex=False)
    long = long[np.isfinite(long["mismatch"].astype(float))]
    _per_layer_grid(
        long,
        "mismatch",
        kind,
        ylabel="NCC mismatch (fraction)",
        title=title,
        path=path,
        dpi=dpi,
        variants=data["variant"],
        style="split",
        style_order=["train", "test"],
    )


def plot_collapse_layers(
    layers: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> None:
    """NC1 (within-class variability relative to between-class, log scale) per layer."""
    title = "Neural collapse NC1 per layer"
    data = (
        layers[pd.to_numeric(layers.get("nc1"), errors="coerce") > 0]
        if "nc1" in layers
        else layers.iloc[0:0]
    )
    if data.empty:
        empty_figure(path, title, "no positive NC1 value", dpi)
        return
    data, kind = add_variant(data)
    _per_layer_grid(
        data,
        "nc1",
        kind,
        ylabel="NC1 = tr(Sw Sb+)/C",
        title=title,
        path=path,
        dpi=dpi,
        logy=True,
    )


def plot_accuracy_epochs(
    epochs: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> None:
    """Test accuracy (held-out fold where there is no test split) over epochs, +-1 sd band."""
    title = "Test accuracy over training"
    if epochs.empty or "target_acc" not in epochs:
        empty_figure(path, title, "no training metrics", dpi)
        return
    data, kind = add_variant(epochs)
    data = data[np.isfinite(data["target_acc"].astype(float))]
    pal = variant_palette(data["variant"], kind)
    g = sns.relplot(
        data=data,
        x="epoch",
        y="target_acc",
        hue="variant",
        hue_order=sorted(pal),
        palette=pal,
        col="panel",
        col_wrap=min(3, data["panel"].nunique()),
        kind="line",
        errorbar="sd",
        height=3.0,
        aspect=1.3,
    )
    g.set_axis_labels("epoch", "test accuracy (mean +- sd over runs)")
    g.set_titles(col_template="{col_name}")
    label_with_n(g.legend, runs_per_variant(data))
    if g.legend is not None:
        sns.move_legend(g, "upper left", bbox_to_anchor=(1.0, 0.97), frameon=False)
    for ax in g.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    g.figure.suptitle(title, y=1.03)
    save_figure(g.figure, path, dpi)


def plot_confusion(confusion: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Row-normalized confusion matrices of the final models, summed over folds.

    Up to :data:`mfoml.plots.common.ANNOTATE_MAX_CLASSES` classes each cell shows its percentage of the true class
    (font sized to the cell); larger matrices show colours only, with a colour bar.
    """
    title = "Confusion matrices of the final models (rows: true class, normalized"
    if confusion.empty:
        empty_figure(path, title + ")", "no predictions", dpi)
        return
    data, _ = add_variant(confusion)
    keys = sorted(data.groupby(["panel", "variant"]).groups)
    n = len(keys)
    ncol = min(4, n)
    nrow = math.ceil(n / ncol)
    # the largest model's class count sets the layout; each matrix has its own model's size
    # (the tables hold every true x predicted pair of a run, zeros included)
    n_classes = int(max(data["true"].max(), data["predicted"].max())) + 1
    side, fontsize = confusion_layout(n_classes)
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
