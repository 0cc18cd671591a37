"""Figures of the layer lenses (rule ``lenses_figures``, ``embedding``): CKA heat maps between
layers, CKA of each layer across checkpoints and across runs, the intrinsic dimension over depth,
and the UMAP pictures of one run's layers.

Inputs are the summaries over folds written by ``similarity_tables`` and ``aggregate``
(``cka_mean, cka_std, cka_n``; ``intrinsic_dim_mean, intrinsic_dim_std, intrinsic_dim_n``).
Every function writes one figure atomically (:func:`mfoml.plots.common.save_figure`), or a
placeholder saying why there is nothing to draw, and returns it (closed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from mfoml.plots.common import (
    add_variant,
    empty_figure,
    legend_with_headings,
    save_figure,
    variant_palette,
)
from mfoml.plots.grid import (
    MAX_CHECKPOINTS,
    MAX_FIG_HEIGHT_IN,
    MAX_PANELS,
    checkpoint_subset,
    figure_legend,
    footnote,
    n_text,
    new_grid,
    panel_title,
)

__all__ = [
    "plot_cka_layers",
    "plot_cka_checkpoints",
    "plot_cka_runs",
    "plot_intrinsic_dim",
    "plot_embedding",
]

_PANEL_IN = 2.6  # inches per panel (width; heat maps and lines 2.5 in tall)
_COLORBAR_IN = 0.7  # width kept for a colour bar at the right, inches


def _wrapped(
    frame: pd.DataFrame, *, legend: bool = False, sharey: bool = False
) -> tuple[plt.Figure, list[tuple[plt.Axes, str, str, pd.DataFrame]], list[str]]:
    """One panel per (data set / model, variant) present, at most
    :data:`~mfoml.plots.grid.MAX_PANELS` in :func:`~mfoml.plots.grid.new_grid`'s rows (the
    figure stays within the stated maximum size; no unused axes). Returns ``(fig, [(ax, panel,
    variant, part)], notes)``, ``notes`` saying what is not drawn."""
    combos = sorted(frame.groupby(["panel", "variant"]).groups)
    notes = []
    if len(combos) > MAX_PANELS:
        notes.append(
            f"{len(combos) - MAX_PANELS} more data set / model / variant panels not drawn."
        )
        combos = combos[:MAX_PANELS]
    fig, axes = new_grid(len(combos), panel_size=(_PANEL_IN, 2.5), legend=legend, sharey=sharey)
    items = [
        (ax, panel, variant, frame[(frame["panel"] == panel) & (frame["variant"] == variant)])
        for ax, (panel, variant) in zip(axes, combos, strict=True)
    ]
    return fig, items, notes


def _layer_order(frame: pd.DataFrame, name: str, index: str) -> list[str]:
    return list(frame.sort_values(index, kind="stable").drop_duplicates(name)[name])


def _runs(part: pd.DataFrame) -> str:
    """``"n=3 runs"``: the folds behind a panel's means (the summary's ``cka_n``)."""
    return n_text({"": int(part["cka_n"].max())})


def plot_cka_layers(summary: pd.DataFrame, path: str | os.PathLike[str], dpi: int) -> plt.Figure:
    """Layer x layer CKA (mean over folds) at each variant's last checkpoint: one heat map per
    data set / model and variant; colour 0 (light) to 1 (dark). Pairs of layers whose CKA is
    undefined are blank, and the panel's title says how many."""
    title = "Linear CKA between layers (last checkpoint)"
    if summary.empty:
        return empty_figure(path, title, "no CKA values (similarity.across_layers off?)", dpi)
    frame, _ = add_variant(summary)
    last = frame.groupby(["panel", "variant"])["epoch"].transform("max")
    frame = frame[frame["epoch"] == last]
    fig, items, notes = _wrapped(frame)
    width, height = fig.get_size_inches()
    fig.set_size_inches(width + _COLORBAR_IN, height)
    image = None
    for ax, panel, variant, part in items:
        order = _layer_order(part, "layer_a", "layer_index_a")
        mat = part.pivot_table(index="layer_a", columns="layer_b", values="cka_mean", dropna=False)
        mat = mat.reindex(index=order, columns=order)
        image = ax.imshow(mat.to_numpy(float), vmin=0, vmax=1, cmap="viridis_r")
        ax.set_xticks(range(len(order)), order, rotation=90, fontsize=7)
        ax.set_yticks(range(len(order)), order, fontsize=7)
        undefined = int(np.isnan(mat.to_numpy(float)).sum())
        extra = [f"CKA undefined (blank) at {undefined} pairs of layers"] * (undefined > 0)
        epoch = int(part["epoch"].iloc[0])
        panel_title(ax, f"{panel}\n{variant} (epoch {epoch}, {_runs(part)})", extra)
    if image is not None:
        fig.colorbar(image, ax=[ax for ax, *_ in items], shrink=0.6, label="CKA (mean over folds)")
    fig.suptitle(title)
    footnote(fig, notes)
    save_figure(fig, path, dpi)
    return fig


def _depth_colors(n: int) -> np.ndarray:
    """Colours of ``n`` layers by depth (viridis: the input darkest, the last layer lightest)."""
    return plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(n, 1)))


def plot_cka_checkpoints(
    summary: pd.DataFrame, path: str | os.PathLike[str], dpi: int
) -> plt.Figure:
    """Each layer's CKA with its own last checkpoint, over the checkpoints (mean ± std over
    folds): how early a layer settles. One panel per data set / model and variant (n in its
    title), one line per layer coloured by depth; the legend at the right lists the layers of
    each model (one section per distinct list of layers)."""
    title = "CKA of each layer with its last checkpoint"
    if summary.empty:
        return empty_figure(path, title, "no CKA values (similarity.across_checkpoints off?)", dpi)
    frame, _ = add_variant(summary)
    last = frame.groupby(["panel", "variant"])["epoch_b"].transform("max")
    frame = frame[frame["epoch_b"] == last]
    fig, items, notes = _wrapped(frame, legend=True, sharey=True)
    orders: dict[tuple[str, ...], list[str]] = {}  # layer list -> the panels that have it
    for ax, panel, variant, part in items:
        order = _layer_order(part, "layer", "layer_index")
        orders.setdefault(tuple(order), [])
        if panel not in orders[tuple(order)]:
            orders[tuple(order)].append(panel)
        colors = _depth_colors(len(order))
        for k, layer in enumerate(order):
            line = part[part["layer"] == layer].sort_values("epoch_a")
            ax.errorbar(
                line["epoch_a"],
                line["cka_mean"],
                yerr=line["cka_std"].fillna(0.0),
                color=colors[k],
                marker="o",
                ms=3,
                capsize=2,
            )
        panel_title(ax, f"{panel}\n{variant}, {_runs(part)}")
        ax.set_xlabel("checkpoint epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(-0.05, 1.05)
    fig.supylabel("CKA with last checkpoint", fontsize=9)
    sections = []
    for order, panels in orders.items():
        heading = "layer (lighter = deeper)"
        if len(orders) > 1:
            heading = "layer of " + ", ".join(panels)
        colors = _depth_colors(len(order))
        sections.append(
            (heading, [Line2D([], [], color=c, marker="o", ms=3, label=la)
                       for la, c in zip(order, colors, strict=True)])
        )  # fmt: skip
    legend_with_headings(fig, sections, loc="outside right upper", frameon=False, fontsize=7)
    fig.suptitle(title)
    footnote(fig, notes)
    save_figure(fig, path, dpi)
    return fig


def _pair_label(row: pd.Series, dims: Sequence[str]) -> str:
    a = "/".join(str(row[f"{d}_a"]) for d in dims)
    b = "/".join(str(row[f"{d}_b"]) for d in dims)
    return f"{a} vs {b}"


def plot_cka_runs(summary: pd.DataFrame, path: str | os.PathLike[str], dpi: int) -> plt.Figure:
    """CKA of the same layer between two runs on the same samples (mean over folds), one heat
    map per experiment: rows the pairs of variants, columns the shared layers; an undefined
    value is a blank cell that says so. At most :data:`~mfoml.plots.grid.MAX_FIG_HEIGHT_IN`
    tall."""
    title = "CKA of the same layer between runs (last shared checkpoint)"
    if summary.empty:
        return empty_figure(path, title, "no two runs of one sweep on the same samples", dpi)
    if summary["cka_mean"].isna().all():
        return empty_figure(path, title, "CKA undefined for every pair of runs", dpi)
    frame = summary
    dims = ["model", "activation", "loss", "noise"]
    varying = [
        d
        for d in dims
        if (frame[f"{d}_a"].astype(str) != frame[f"{d}_b"].astype(str)).any()
        or frame[f"{d}_a"].nunique() > 1
    ] or ["model"]
    frame = frame.assign(pair=frame.apply(_pair_label, axis=1, dims=varying))
    experiments = sorted(frame["experiment"].unique())
    sizes = [frame[frame["experiment"] == e]["pair"].nunique() for e in experiments]
    fig, axes = plt.subplots(
        len(experiments),
        1,
        figsize=(7, min(sum(0.3 * s + 1.2 for s in sizes), MAX_FIG_HEIGHT_IN - 0.4)),
        squeeze=False,
        gridspec_kw={"height_ratios": [s + 2 for s in sizes]},
        layout="constrained",
    )
    for ax, exp in zip(axes[:, 0], experiments, strict=True):
        part = frame[frame["experiment"] == exp]
        order = _layer_order(part, "layer", "layer_index_a")
        mat = part.pivot_table(index="pair", columns="layer", values="cka_mean").reindex(
            columns=order
        )
        image = ax.imshow(mat.to_numpy(float), vmin=0, vmax=1, cmap="viridis_r", aspect="auto")
        ax.set_xticks(range(len(order)), order, rotation=90, fontsize=7)
        ax.set_yticks(range(len(mat.index)), mat.index, fontsize=7)
        for (r, c), v in np.ndenumerate(mat.to_numpy(float)):
            finite = bool(np.isfinite(v))
            ax.text(
                c,
                r,
                f"{v:.2f}" if finite else "undefined",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if finite and v > 0.6 else "black" if finite else "0.4",
            )
        ax.set_title(f"{exp} (n = {int(part['cka_n'].max())} folds)", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8, label="CKA")
    fig.suptitle(title)
    save_figure(fig, path, dpi)
    return fig


def plot_intrinsic_dim(
    layers_summary: pd.DataFrame, path: str | os.PathLike[str], dpi: int
) -> plt.Figure:
    """TwoNN intrinsic dimension over depth (mean ± std over folds): one panel per data set /
    model and checkpoint that has a value (at most :data:`~mfoml.plots.grid.MAX_CHECKPOINTS`
    evenly spaced checkpoints per model, within :data:`~mfoml.plots.grid.MAX_PANELS`), one line
    per variant, n in each panel's title; layers without a value are gaps, named in the title,
    checkpoints without any value are named under the panels."""
    title = "Intrinsic dimension (TwoNN) over depth"
    if (
        "intrinsic_dim_mean" not in layers_summary
        or layers_summary["intrinsic_dim_mean"].isna().all()
    ):
        return empty_figure(path, title, "no intrinsic-dimension values", dpi)
    frame, kind = add_variant(layers_summary)
    palette = variant_palette(frame["variant"], kind)
    defined = frame["intrinsic_dim_mean"].notna()
    limit = max(1, min(MAX_CHECKPOINTS, MAX_PANELS // frame.loc[defined, "panel"].nunique()))
    cells, notes = [], []
    for panel in sorted(frame["panel"].unique()):
        part = frame[frame["panel"] == panel]
        epochs = sorted({int(e) for e in part.loc[defined, "epoch"]})
        undefined = sorted({int(e) for e in part["epoch"]} - set(epochs))
        if undefined:
            notes.append(
                f"{panel}, epoch {', '.join(map(str, undefined))}: not drawn, the intrinsic "
                "dimension is undefined at every layer (intrinsic_dim_status in layers.csv)."
            )
        shown = checkpoint_subset(epochs, limit)
        if len(shown) < len(epochs):
            notes.append(f"{panel}: {len(shown)} of {len(epochs)} checkpoints (evenly spaced).")
        cells += [(panel, e) for e in shown]
    fig, axes = new_grid(len(cells))
    for ax, (panel, epoch) in zip(axes, cells, strict=True):
        part = frame[(frame["panel"] == panel) & (frame["epoch"] == epoch)]
        order = _layer_order(part, "layer", "layer_index")
        counts = {}
        for variant, line in part.groupby("variant"):
            line = line.sort_values("layer_index")
            ok = line["intrinsic_dim_mean"].notna()
            counts[str(variant)] = int(line.loc[ok, "intrinsic_dim_n"].max()) if ok.any() else 0
            ax.errorbar(  # NaN at an undefined layer: a gap, never bridged
                [order.index(la) for la in line["layer"]],
                line["intrinsic_dim_mean"],
                yerr=line["intrinsic_dim_std"].fillna(0.0),
                color=palette[str(variant)],
                marker="o",
                ms=3,
                capsize=2,
            )
        gaps = part.loc[part["intrinsic_dim_mean"].isna(), "layer"].drop_duplicates()
        extra = [f"undefined at {', '.join(map(str, gaps))}"] * (len(gaps) > 0)
        ax.set_xticks(range(len(order)), order, rotation=45, ha="right", fontsize=7)
        panel_title(ax, f"{panel}\nepoch {epoch}, {n_text(counts)}", extra)
    fig.supylabel("intrinsic dimension", fontsize=9)
    figure_legend(fig, [Line2D([], [], color=c, marker="o", label=v) for v, c in palette.items()])
    fig.suptitle(title)
    footnote(fig, notes)
    save_figure(fig, path, dpi)
    return fig


def plot_embedding(
    embeddings: Mapping[tuple[int, str], np.ndarray],
    labels: np.ndarray,
    path: str | os.PathLike[str],
    dpi: int,
    *,
    title: str,
    class_names: Sequence[str] | None = None,
) -> plt.Figure:
    """UMAP pictures: ``embeddings[(epoch, layer)]`` float ``(n, 2)``, points coloured by class
    ``labels`` ``(n,)``; rows checkpoints, columns layers (in the mapping's order)."""
    if not embeddings:
        return empty_figure(path, title, "no layer to embed", dpi)
    epochs = list(dict.fromkeys(e for e, _ in embeddings))
    layers = list(dict.fromkeys(la for _, la in embeddings))
    fig, axes = plt.subplots(
        len(epochs),
        len(layers),
        figsize=(_PANEL_IN * len(layers) + 0.8, _PANEL_IN * len(epochs) + 0.6),
        squeeze=False,
        layout="constrained",
    )
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    titled = set()
    for i, epoch in enumerate(epochs):
        for j, layer in enumerate(layers):
            ax = axes[i, j]
            emb = embeddings.get((epoch, layer))
            if emb is None:  # a layer not embedded at this checkpoint: no empty panel
                ax.remove()
                continue
            ax.set_xticks([])
            ax.set_yticks([])
            for k, c in enumerate(classes):
                sel = labels == c
                name = class_names[int(c)] if class_names is not None else str(int(c))
                ax.scatter(emb[sel, 0], emb[sel, 1], s=2, color=cmap(k % cmap.N), label=name)
            if layer not in titled:  # the column's first panel names the layer
                ax.set_title(layer, fontsize=9)
                titled.add(layer)
            ax.set_ylabel(f"epoch {epoch}")
    handles, names = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", markerscale=4, fontsize=7, title="class")
    fig.suptitle(title)
    save_figure(fig, path, dpi)
    return fig
