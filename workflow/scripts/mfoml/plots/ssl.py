"""Figure of a self-supervised experiment: layer x metric per algorithm, backbone and label set.

:func:`plot_ssl_layers` draws one grid per experiment (sweep) from the fold summary
(``results/tables/ssl_layers_summary.csv``), laid out wide so that the report's viewer shows it
whole: one column per measure (NCC accuracy on the test split, linear-probe and k-NN accuracy on
the test split, NC1 and alpha of the train split), one row per data set and backbone; the x axis
is the probe layer (backbone layers, then the projector's). Colour is the SSL algorithm (the
loss), the line style the label set (e.g. CIFAR-100 fine vs coarse); lines are means over folds
at the last checkpoint, bands one standard deviation (on NC1's log axis the band m exp(+-sd/m),
the delta-method sd of log NC1), the number of runs n in each panel's title.
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
) -> plt.Figure:
    """Layer x measure grid of one experiment (see the module docstring), laid out wide: one
    row per data set and backbone, one column per measure, the legend at the right. Written
    atomically; returns the figure (closed)."""
    title = f"self-supervised experiment {experiment!r}"
    frame = summary[summary["experiment"] == experiment] if not summary.empty else summary
    if frame.empty:
        return empty_figure(path, title, "no evaluated self-supervised run in this experiment", dpi)
    measures = [
        m
        for m in SSL_PANEL_MEASURES
        if f"{m[0]}_mean" in frame and np.isfinite(frame[f"{m[0]}_mean"].astype(float)).any()
    ]
    frame = frame.assign(panel=frame["dataset"].astype(str) + " / " + frame["model"].astype(str))
    panels = sorted(frame["panel"].unique())
    losses = sorted(frame["loss"].astype(str).unique())
    colours = variant_palette(losses)
    label_sets = sorted(frame["label_set"].astype(str).unique(), key=lambda s: (s == "coarse", s))
    style = {s: _STYLES[i % len(_STYLES)] for i, s in enumerate(label_sets)}
    fig = plt.figure(
        figsize=(3.1 * len(measures) + 2.2, 2.5 * len(panels) + 0.9), layout="constrained"
    )
    axes = fig.subplots(len(panels), len(measures), squeeze=False)
    for i, panel in enumerate(panels):
        part = frame[frame["panel"] == panel]
        last = int(part["epoch"].max())
        first_loss = sorted(part["loss"].astype(str).unique())[0]  # draws the initialisation
        layers = part.drop_duplicates("layer_index").sort_values("layer_index")
        n = _runs(part[part["epoch"] == last])
        for j, (col, label, log_scale) in enumerate(measures):
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
                        ok = np.isfinite(m) & ((m > 0) if log_scale else True)
                        if not ok.any():
                            continue
                        x, m, sd = x[ok], m[ok], sd[ok]
                        ax.plot(x, m, style[s], color=colour, lw=width, marker="o", ms=2.5)
                        if epoch == last and np.any(sd > 0):
                            if log_scale:  # the band in log space: m * exp(+-sd/m)
                                lo, hi = m * np.exp(-sd / m), m * np.exp(sd / m)
                            else:
                                lo, hi = m - sd, m + sd
                            ax.fill_between(x, lo, hi, color=colour, alpha=0.15, lw=0)
            if log_scale:
                ax.set_yscale("log")
            ax.set_title(f"{label}\n{panel} (epoch {last}, {n})", fontsize=8)
            ax.set_xticks(layers["layer_index"].to_numpy())
            ax.set_xticklabels(layers["layer"].astype(str), rotation=60, fontsize=7)
            ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colours[loss], lw=1.6, label=loss) for loss in losses]
    handles += [
        plt.Line2D([], [], color="k", ls=style[s], label=f"labels: {s}") for s in label_sets
    ]
    if (frame["epoch"] == 0).any():
        handles.append(plt.Line2D([], [], color="0.6", lw=0.9, label="initialisation"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    fig.suptitle(title)
    save_figure(fig, path, dpi)
    return fig


def _runs(part: pd.DataFrame) -> str:
    """The number of runs behind the panel's lines (the summary's ``{measure}_n``)."""
    counts = [c for c in part.columns if c.endswith("_n")]
    if not counts:
        return "n unknown"
    n = pd.to_numeric(part[counts].stack(), errors="coerce").dropna()
    if n.empty:
        return "n unknown"
    lo, hi = int(n.min()), int(n.max())
    return f"n={hi} run{'s' if hi != 1 else ''}" if lo == hi else f"n={lo}-{hi} runs"
