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

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mfoml.plots.common import (  # noqa: E402
    add_variant,
    empty_figure,
    save_figure,
    variant_palette,
)

__all__ = [
    "plot_accuracy_epochs",
    "plot_alpha_layers",
    "plot_collapse_layers",
    "plot_confusion",
    "plot_ncc_layers",
]


def _layer_ticks(grid: sns.FacetGrid, frame: pd.DataFrame) -> None:
    """Label each panel's x axis with the layer names of its own model (models differ)."""

    def names_of(part: pd.DataFrame) -> pd.Series:
        return (
            part[["layer_index", "layer"]]
            .drop_duplicates()
            .sort_values("layer_index")
            .groupby("layer_index")["layer"]
            .first()
        )

    for key, ax in grid.axes_dict.items():
        row = key[0] if isinstance(key, tuple) else key
        part = (
            frame[frame["panel"] == row]
            if "panel" in frame and row in set(frame["panel"])
            else frame
        )
        names = names_of(part)
        ax.set_xticks(list(names.index))
        ax.set_xticklabels(list(names.values), rotation=45, ha="right", fontsize=8)
    grid.tight_layout()


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
    """One line per variant of ``y`` over the layer index (mean +- sd over folds), one row of
    panels per model and one column per checkpoint epoch, saved to ``path``."""
    pal = variant_palette(data["variant"] if variants is None else variants, kind)
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
        row="panel",
        col="epoch",
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
    g.set_titles(row_template="{row_name}", col_template="epoch {col_name}")
    _layer_ticks(g, data)
    g.figure.suptitle(title, y=1.02)
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
    long = data.melt(
        id_vars=["variant", "panel", "epoch", "layer", "layer_index", "fold"],
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
    g.set_axis_labels("epoch", "test accuracy (mean +- sd over folds)")
    g.set_titles(col_template="{col_name}")
    for ax in g.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    g.figure.suptitle(title, y=1.03)
    save_figure(g.figure, path, dpi)


def plot_confusion(confusion: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Row-normalized confusion matrices of the final models, summed over folds."""
    title = "Confusion matrices of the final models (rows: true class, normalized)"
    if confusion.empty:
        empty_figure(path, title, "no predictions", dpi)
        return
    data, _ = add_variant(confusion)
    keys = sorted(data.groupby(["panel", "variant"]).groups)
    n = len(keys)
    ncol = min(4, n)
    nrow = math.ceil(n / ncol)
    n_classes = int(data["true"].max()) + 1
    side = 2.2 + 0.12 * n_classes
    fig, axes = plt.subplots(nrow, ncol, figsize=(side * ncol, side * nrow), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (panel, variant) in zip(axes.flat, keys, strict=False):
        part = data[(data["panel"] == panel) & (data["variant"] == variant)]
        mat = part.groupby(["true", "predicted"])["count"].sum().unstack(fill_value=0)
        mat = mat.reindex(index=range(n_classes), columns=range(n_classes), fill_value=0)
        rows = mat.sum(axis=1).replace(0, 1)
        norm = mat.div(rows, axis=0)
        sns.heatmap(
            norm,
            ax=ax,
            vmin=0,
            vmax=1,
            cmap="Blues",
            cbar=False,
            square=True,
            annot=n_classes <= 10,
            fmt=".2f",
            annot_kws={"fontsize": 6},
        )
        epoch = int(part["epoch"].max()) if "epoch" in part else None
        ax.set_title(
            f"{panel}\n{variant}" + (f" (epoch {epoch})" if epoch is not None else ""), fontsize=8
        )
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi)
