"""Figures of the layer lenses (rule ``lenses_figures``, ``embedding``): CKA heat maps between
layers, CKA of each layer across checkpoints and across runs, the intrinsic dimension over depth,
and the UMAP pictures of one run's layers.

Inputs are the summaries over folds written by ``similarity_tables`` and ``aggregate``
(``cka_mean, cka_std, cka_n``; ``intrinsic_dim_mean, intrinsic_dim_std, intrinsic_dim_n``).
Every function writes one figure atomically (:func:`mfoml.plots.common.save_figure`), or a
placeholder saying why there is nothing to draw.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mfoml.plots.common import add_variant, empty_figure, save_figure, variant_palette

__all__ = [
    "plot_cka_layers",
    "plot_cka_checkpoints",
    "plot_cka_runs",
    "plot_intrinsic_dim",
    "plot_embedding",
]

_PANEL_IN = 2.6  # inches per panel


def _grid(n_rows: int, n_cols: int, **kw):
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(_PANEL_IN * n_cols + 0.8, _PANEL_IN * n_rows + 0.6),
        squeeze=False,
        layout="constrained",
        **kw,
    )
    return fig, axes


def _wrapped(frame: pd.DataFrame, max_cols: int = 4, **kw):
    """One panel per (data set / model, variant) present, wrapped into rows of ``max_cols``;
    returns ``(fig, [(ax, panel, variant, part)])`` with the unused axes switched off."""
    combos = sorted(frame.groupby(["panel", "variant"]).groups)
    n_cols = min(max_cols, len(combos))
    n_rows = -(-len(combos) // n_cols)
    fig, axes = _grid(n_rows, n_cols, **kw)
    flat = list(axes.ravel())
    for ax in flat[len(combos) :]:
        ax.axis("off")
    items = [
        (ax, panel, variant, frame[(frame["panel"] == panel) & (frame["variant"] == variant)])
        for ax, (panel, variant) in zip(flat, combos, strict=False)
    ]
    return fig, items


def _layer_order(frame: pd.DataFrame, name: str, index: str) -> list[str]:
    return list(frame.sort_values(index, kind="stable").drop_duplicates(name)[name])


def plot_cka_layers(summary: pd.DataFrame, path: str | os.PathLike[str], dpi: int) -> None:
    """Layer x layer CKA (mean over folds) at each variant's last checkpoint: rows data set /
    model, columns variant; colour 0 (white) to 1 (dark)."""
    title = "Linear CKA between layers (last checkpoint)"
    if summary.empty:
        empty_figure(path, title, "no CKA values (similarity.across_layers off?)", dpi)
        return
    frame, _ = add_variant(summary)
    last = frame.groupby(["panel", "variant"])["epoch"].transform("max")
    frame = frame[frame["epoch"] == last]
    fig, items = _wrapped(frame)
    image = None
    for ax, panel, variant, part in items:
        order = _layer_order(part, "layer_a", "layer_index_a")
        mat = part.pivot_table(index="layer_a", columns="layer_b", values="cka_mean")
        mat = mat.reindex(index=order, columns=order)
        image = ax.imshow(mat.to_numpy(float), vmin=0, vmax=1, cmap="viridis_r")
        ax.set_xticks(range(len(order)), order, rotation=90, fontsize=7)
        ax.set_yticks(range(len(order)), order, fontsize=7)
        n = int(part["cka_n"].max())
        epoch = int(part["epoch"].iloc[0])
        ax.set_title(f"{panel}\n{variant} (epoch {epoch}, n={n})", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=[ax for ax, *_ in items], shrink=0.6, label="CKA (mean over folds)")
    fig.suptitle(title)
    save_figure(fig, path, dpi)


def plot_cka_checkpoints(summary: pd.DataFrame, path: str | os.PathLike[str], dpi: int) -> None:
    """Each layer's CKA with its own last checkpoint, over the checkpoints (mean ± std over
    folds): how early a layer settles. Rows data set / model, columns variant, one line per
    layer (darker = deeper)."""
    title = "CKA of each layer with its last checkpoint"
    if summary.empty:
        empty_figure(path, title, "no CKA values (similarity.across_checkpoints off?)", dpi)
        return
    frame, _ = add_variant(summary)
    last = frame.groupby(["panel", "variant"])["epoch_b"].transform("max")
    frame = frame[frame["epoch_b"] == last]
    fig, items = _wrapped(frame, sharey=True)
    for k_ax, (ax, panel, variant, part) in enumerate(items):
        order = _layer_order(part, "layer", "layer_index")
        colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(order), 1)))
        for k, layer in enumerate(order):
            line = part[part["layer"] == layer].sort_values("epoch_a")
            ax.errorbar(
                line["epoch_a"],
                line["cka_mean"],
                yerr=line["cka_std"].fillna(0.0),
                color=colors[k],
                marker="o",
                ms=3,
                label=layer,
                capsize=2,
            )
        ax.set_title(f"{panel}\n{variant}", fontsize=8)
        ax.set_xlabel("checkpoint epoch")
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("CKA with last checkpoint")
        if k_ax == 0:
            ax.legend(fontsize=6, title="layer", title_fontsize=7, loc="lower right")
    fig.suptitle(title)
    save_figure(fig, path, dpi)


def _pair_label(row: pd.Series, dims: Sequence[str]) -> str:
    a = "/".join(str(row[f"{d}_a"]) for d in dims)
    b = "/".join(str(row[f"{d}_b"]) for d in dims)
    return f"{a} vs {b}"


def plot_cka_runs(summary: pd.DataFrame, path: str | os.PathLike[str], dpi: int) -> None:
    """CKA of the same layer between two runs on the same samples (mean over folds), one heat
    map per experiment: rows the pairs of variants, columns the shared layers."""
    title = "CKA of the same layer between runs (last shared checkpoint)"
    frame = summary.dropna(subset=["cka_mean"]) if not summary.empty else summary
    if frame.empty:
        empty_figure(path, title, "no two runs of one sweep on the same samples", dpi)
        return
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
        figsize=(7, sum(0.3 * s + 1.2 for s in sizes)),
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
            if np.isfinite(v):
                ax.text(
                    c,
                    r,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if v > 0.6 else "black",
                )
        ax.set_title(f"{exp} (n = {int(part['cka_n'].max())} folds)", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8, label="CKA")
    fig.suptitle(title)
    save_figure(fig, path, dpi)


def plot_intrinsic_dim(
    layers_summary: pd.DataFrame, path: str | os.PathLike[str], dpi: int
) -> None:
    """TwoNN intrinsic dimension over depth (mean ± std over folds): rows data set / model,
    columns checkpoint epoch, one line per variant."""
    title = "Intrinsic dimension (TwoNN) over depth"
    if (
        "intrinsic_dim_mean" not in layers_summary
        or layers_summary["intrinsic_dim_mean"].isna().all()
    ):
        empty_figure(path, title, "no intrinsic-dimension values", dpi)
        return
    frame, kind = add_variant(layers_summary.dropna(subset=["intrinsic_dim_mean"]))
    panels, epochs = sorted(frame["panel"].unique()), sorted(frame["epoch"].unique())
    palette = variant_palette(frame["variant"], kind)
    fig, axes = _grid(len(panels), len(epochs), sharey="row")
    for i, panel in enumerate(panels):
        for j, epoch in enumerate(epochs):
            ax = axes[i, j]
            part = frame[(frame["panel"] == panel) & (frame["epoch"] == epoch)]
            order = _layer_order(part, "layer", "layer_index")
            for variant, line in part.groupby("variant"):
                line = line.sort_values("layer_index")
                ax.errorbar(
                    [order.index(la) for la in line["layer"]],
                    line["intrinsic_dim_mean"],
                    yerr=line["intrinsic_dim_std"].fillna(0.0),
                    color=palette[str(variant)],
                    marker="o",
                    ms=3,
                    capsize=2,
                    label=f"{variant} (n={int(line['intrinsic_dim_n'].max())})",
                )
            ax.set_xticks(range(len(order)), order, rotation=90, fontsize=7)
            ax.set_title(f"{panel}, epoch {epoch}", fontsize=8)
            if j == 0:
                ax.set_ylabel("intrinsic dimension")
    axes[0, -1].legend(fontsize=6)
    fig.suptitle(title)
    save_figure(fig, path, dpi)


def plot_embedding(
    embeddings: Mapping[tuple[int, str], np.ndarray],
    labels: np.ndarray,
    path: str | os.PathLike[str],
    dpi: int,
    *,
    title: str,
    class_names: Sequence[str] | None = None,
) -> None:
    """UMAP pictures: ``embeddings[(epoch, layer)]`` float ``(n, 2)``, points coloured by class
    ``labels`` ``(n,)``; rows checkpoints, columns layers (in the mapping's order)."""
    if not embeddings:
        empty_figure(path, title, "no layer to embed", dpi)
        return
    epochs = list(dict.fromkeys(e for e, _ in embeddings))
    layers = list(dict.fromkeys(la for _, la in embeddings))
    fig, axes = _grid(len(epochs), len(layers))
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for i, epoch in enumerate(epochs):
        for j, layer in enumerate(layers):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            emb = embeddings.get((epoch, layer))
            if emb is None:
                ax.axis("off")
                continue
            for k, c in enumerate(classes):
                sel = labels == c
                name = class_names[int(c)] if class_names is not None else str(int(c))
                ax.scatter(emb[sel, 0], emb[sel, 1], s=2, color=cmap(k % cmap.N), label=name)
            if i == 0:
                ax.set_title(layer, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"epoch {epoch}")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", markerscale=4, fontsize=7, title="class")
    fig.suptitle(title)
    save_figure(fig, path, dpi)
