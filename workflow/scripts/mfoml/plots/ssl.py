"""Figure of a self-supervised experiment: layer x metric per algorithm, backbone and label set.

:func:`plot_ssl_layers` draws one grid per experiment (sweep) from the fold summary
(``results/tables/ssl_layers_summary.csv``): one row per measure (NCC accuracy on the test
split, linear-probe and k-NN accuracy on the test split, NC1 and alpha of the train split), one
column per data set and backbone; the x axis is the probe layer (backbone layers, then the
projector's). Colour is the SSL algorithm (the loss), the line style the label set (e.g. CIFAR-100
fine vs coarse); lines are means over folds at the last checkpoint, bands one standard deviation.
The network at initialisation (epoch 0, when dumped) is drawn in grey for reference.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mfoml.plots.common import empty_figure, save_figure, variant_palette  # noqa: E402

__all__ = ["SSL_PANEL_MEASURES", "plot_ssl_layers"]

#: ``(column, label, log scale)`` of the rows of the figure.
SSL_PANEL_MEASURES = [
    ("ncc_accuracy_test", "NCC accuracy (test)", False),
    ("linear_probe_test", "linear probe (test)", False),
    ("knn_test", "k-NN accuracy (test)", False),
    ("nc1", "NC1 (train)", True),
    ("alpha", "alpha (train)", False),
]
_STYLES = ["-", "--", ":", "-."]


def plot_ssl_layers(
    summary: pd.DataFrame, experiment: str, path: str | os.PathLike[str], dpi: int = 110
) -> None:
    """Layer x measure grid of one experiment (see the module docstring); written atomically."""
    title = f"self-supervised experiment {experiment!r}"
    frame = summary[summary["experiment"] == experiment] if not summary.empty else summary
    if frame.empty:
        empty_figure(path, title, "no evaluated self-supervised run in this experiment", dpi)
        return
    measures = [
        m for m in SSL_PANEL_MEASURES if np.isfinite(frame.get(f"{m[0]}_mean", np.nan)).any()
    ]
    frame = frame.assign(panel=frame["dataset"].astype(str) + " / " + frame["model"].astype(str))
    panels = sorted(frame["panel"].unique())
    losses = sorted(frame["loss"].astype(str).unique())
    colours = variant_palette(losses)
    label_sets = sorted(frame["label_set"].astype(str).unique(), key=lambda s: (s == "coarse", s))
    style = {s: _STYLES[i % len(_STYLES)] for i, s in enumerate(label_sets)}
    fig, axes = plt.subplots(
        len(measures),
        len(panels),
        figsize=(3.6 * len(panels) + 1.5, 2.2 * len(measures) + 0.8),
        squeeze=False,
        sharex="col",
    )
    for j, panel in enumerate(panels):
        part = frame[frame["panel"] == panel]
        last = int(part["epoch"].max())
        first_loss = sorted(part["loss"].astype(str).unique())[0]  # draws the initialisation
        layers = part.drop_duplicates("layer_index").sort_values("layer_index")
        for i, (col, label, log_scale) in enumerate(measures):
            ax = axes[i][j]
            for loss in losses:
                for s in label_sets:
                    rows = part[(part["loss"] == loss) & (part["label_set"] == s)]
                    for epoch, colour, width in ((last, colours[loss], 1.6), (0, "0.6", 0.9)):
                        sel = rows[rows["epoch"] == epoch].sort_values("layer_index")
                        if sel.empty or (epoch == 0 and (last == 0 or loss != first_loss)):
                            continue
                        x = sel["layer_index"].to_numpy()
                        m = sel[f"{col}_mean"].to_numpy(dtype=float)
                        sd = np.nan_to_num(sel[f"{col}_std"].to_numpy(dtype=float))
                        ax.plot(x, m, style[s], color=colour, lw=width, marker="o", ms=2.5)
                        if epoch == last and np.any(sd > 0):
                            ax.fill_between(x, m - sd, m + sd, color=colour, alpha=0.15, lw=0)
            if log_scale:
                ax.set_yscale("log")
            if j == 0:
                ax.set_ylabel(label)
            if i == 0:
                ax.set_title(f"{panel} (epoch {last})", fontsize=9)
            ax.set_xticks(layers["layer_index"].to_numpy())
            ax.set_xticklabels(layers["layer"].astype(str), rotation=60, fontsize=7)
            ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colours[loss], lw=1.6, label=loss) for loss in losses]
    handles += [
        plt.Line2D([], [], color="k", ls=style[s], label=f"labels: {s}") for s in label_sets
    ]
    if (frame["epoch"] == 0).any():
        handles.append(plt.Line2D([], [], color="0.6", lw=0.9, label="initialisation"))
    fig.legend(handles=handles, loc="upper right", fontsize=8, frameon=False)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 0.86, 0.97))
    save_figure(fig, path, dpi)
