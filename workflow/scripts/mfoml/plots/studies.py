"""Figures of the run-level statistics and the study tables (rule ``figures``).

- :func:`plot_correlation`: per experiment and layer-dynamics feature, one point per run at the
  last checkpoint against the final accuracy, titled with the variant-level statistics
  (``correlation.csv``: rho, bootstrap interval, Holm-adjusted and raw p, numbers of variants
  and runs), and a bottom row with rho and its interval at every checkpoint;
- :func:`plot_noise_alpha`: alpha of the last inner layer against the label-noise level
  (``noise_alpha.csv``), mean +- sd over folds, with the wavelet count beside every point and
  the random-label baseline (dashed) when it was computed.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from mfoml.plots.common import (  # noqa: E402
    FEATURE_LABELS,
    add_variant,
    empty_figure,
    legend_with_headings,
    save_figure,
    variant_palette,
)

__all__ = ["plot_correlation", "plot_noise_alpha"]


def _stat_text(row: pd.Series) -> str:
    """The row's statistic with its Holm-adjusted p (raw p beside it, labelled) and its n."""
    n = f"{int(row['n_variants'])} variants / {int(row['n_runs'])} runs"
    if row["status"] not in ("ok", "underpowered"):
        return f"{row['status']} ({n})"
    strata = row.get("strata")
    what = f"rho within {strata}" if isinstance(strata, str) and strata else "rho"
    text = (
        f"{what} {row['rho']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}], "
        f"p_holm {row['p_holm']:.2g} (raw p {row['p_value']:.2g}), {n}"
    )
    return text + (
        f"\nunderpowered: smallest p {row['p_min']:.2g}" if row["status"] != "ok" else ""
    )


def _headline(points: pd.DataFrame) -> pd.DataFrame:
    """Each run's row at the last checkpoint of its experiment."""
    last = points.groupby("experiment")["epoch"].transform("max")
    return points[points["epoch"] == last]


def plot_correlation(
    points: pd.DataFrame,
    correlation: pd.DataFrame,
    path: str | os.PathLike[str],
    dpi: int = 110,
) -> plt.Figure:
    """Layer dynamics vs final accuracy across runs, with the run-level statistics.

    Rows: one per experiment (scatter at the last checkpoint, one point per run; title from the
    ``within experiment`` headline row of ``correlation`` with ``outcome = final_accuracy``:
    rho over the variant means, its interval, ``p_holm`` and the raw p labelled, the numbers of
    variants and runs) and a last row with rho and its bootstrap interval per checkpoint epoch
    (solid: against the accuracy at that checkpoint; dashed: against the final accuracy).
    Columns: features. An experiment with too few variants for any statistic (every row
    ``too_few_*``) is left out, and the figure's caption line under the panels says so.
    Returns the figure (saved and closed).
    """
    title = "Training-data layer dynamics vs test accuracy, across variants (points: runs)"
    features = [f for f in FEATURE_LABELS if f in points]
    if points.empty or not features or "final_accuracy" not in points:
        return empty_figure(path, title, "no (run, checkpoint) points", dpi)
    experiments, left_out = _experiments_with_statistics(points, correlation)
    if not experiments:
        return empty_figure(path, title, "every experiment has too few variants: " + left_out, dpi)
    points = points[points["experiment"].astype(str).isin(experiments)]
    data, kind = add_variant(_headline(points))
    pal = variant_palette(data["variant"], kind)
    fig, axes = plt.subplots(
        len(experiments) + 1,
        len(features),
        figsize=(4.4 * len(features) + 2.5, min(2.8 * (len(experiments) + 1), 8.0)),
        squeeze=False,
    )
    within = correlation[correlation["scope"] == "within experiment"]
    exp_colors = dict(zip(experiments, plt.get_cmap("tab10").colors, strict=False))
    for j, feat in enumerate(features):
        for i, exp in enumerate(experiments):
            ax = axes[i, j]
            part = data[data["experiment"].astype(str) == exp]
            for variant, pts in part.groupby("variant"):
                ax.scatter(pts[feat], pts["final_accuracy"], color=pal[variant], s=22, linewidths=0)
            row = within[
                (within["experiment"].astype(str) == exp)
                & (within["feature"] == feat)
                & within["headline"].astype(bool)
                & (within["outcome"] == "final_accuracy")
            ]
            epoch = int(part["epoch"].max()) if len(part) else -1
            head = f"{exp}, epoch {epoch}"
            ax.set_title(head + ("\n" + _stat_text(row.iloc[0]) if len(row) else ""), fontsize=8)
            ax.set_xlabel(FEATURE_LABELS[feat], fontsize=8)
            ax.set_ylabel("final test accuracy", fontsize=8)
        ax = axes[-1, j]
        for exp in experiments:
            for outcome, style in (("accuracy", "-"), ("final_accuracy", "--")):
                r = within[
                    (within["experiment"].astype(str) == exp)
                    & (within["feature"] == feat)
                    & (within["outcome"] == outcome)
                    & within["status"].isin(["ok", "underpowered"])
                ].sort_values("epoch")
                if r.empty:
                    continue
                rho = r["rho"].to_numpy(float)
                err = np.vstack([rho - r["ci_low"].to_numpy(float), r["ci_high"] - rho])
                ax.errorbar(
                    r["epoch"], rho, yerr=err, linestyle=style, marker="o", ms=3, capsize=2,
                    color=exp_colors[exp],
                )  # fmt: skip
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("checkpoint epoch", fontsize=8)
        ax.set_ylabel("Spearman rho across variants", fontsize=8)
        ax.set_title(f"{FEATURE_LABELS[feat]}: rho and interval per checkpoint", fontsize=8)
    what = "activation" if kind == "activation" else "variant"
    legend_with_headings(
        fig,
        [
            (
                f"points (one per run), colour: {what}",
                [
                    Line2D([], [], linestyle="", marker="o", color=pal[v], label=v)
                    for v in sorted(pal)
                ],
            ),
            (
                "bottom row, line colour: experiment",
                [Line2D([], [], color=exp_colors[e], label=e) for e in experiments],
            ),
            (
                "bottom row, line style: rho against",
                [
                    Line2D([], [], color="0.3", linestyle="-", label="accuracy at the checkpoint"),
                    Line2D([], [], color="0.3", linestyle="--", label="final accuracy"),
                ],
            ),
        ],
        loc="upper left",
        bbox_to_anchor=(1.0, 0.95),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(title)
    if left_out:
        fig.text(0.01, 0.0, "Left out (too few variants): " + left_out, fontsize=8, va="top")
    fig.tight_layout()
    save_figure(fig, path, dpi)
    return fig


def _experiments_with_statistics(
    points: pd.DataFrame, correlation: pd.DataFrame
) -> tuple[list[str], str]:
    """The experiments of ``points`` with at least one within-experiment statistic (status
    ``ok`` or ``underpowered``), and a sentence naming the others (too few variants, no data)
    with their numbers of variants."""
    within = correlation[correlation["scope"] == "within experiment"]
    keep, dropped = [], []
    for exp in dict.fromkeys(points["experiment"].astype(str)):
        rows = within[within["experiment"].astype(str) == exp]
        if not rows["status"].astype(str).isin(["ok", "underpowered"]).any():
            n = rows["n_variants"].max() if "n_variants" in rows and len(rows) else None
            dropped.append(exp + (f" ({int(n)} variants)" if pd.notna(n) else ""))
        else:
            keep.append(exp)
    return keep, ", ".join(dropped)


def plot_noise_alpha(
    noise_alpha: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 110
) -> plt.Figure:
    """Alpha of the last inner layer at the last checkpoint vs label noise, one panel per data
    set and model, one line per variant (mean +- sd over its folds and seeds; a point of one
    run has no error bar); each point is labelled with the mean number of wavelets K and the
    number of runs n; dashed: the random-label baseline when present. Returns the figure."""
    title = "Alpha of the last inner layer vs label noise"
    if noise_alpha.empty or "alpha_mean" not in noise_alpha:
        return empty_figure(path, title, "no probe results of the last inner layer", dpi)
    data, kind = add_variant(noise_alpha.drop(columns="noise"))  # noise is the x axis
    data["noise"] = noise_alpha["noise"].to_numpy(float)
    pal = variant_palette(data["variant"], kind)
    panels = sorted(data["panel"].unique())
    ncol = min(3, len(panels))
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.4 * ncol + 2, 3.4 * nrow), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.remove()  # no empty panel
    has_random = "alpha_random_mean" in data and data["alpha_random_mean"].notna().any()
    for ax, panel in zip(axes.flat, panels, strict=False):
        for variant, part in data[data["panel"] == panel].groupby("variant"):
            part = part.sort_values("noise")
            x = 100 * part["noise"].to_numpy(float)
            # a point of one run has no spread: no bar (NaN), never a zero-length one
            ax.errorbar(
                x,
                part["alpha_mean"],
                yerr=part["alpha_std"].to_numpy(float),
                marker="o",
                capsize=3,
                color=pal[variant],
                label=variant,
            )
            if "n_wavelets_mean" in part:
                ns = part["alpha_n"] if "alpha_n" in part else pd.Series(np.nan, index=part.index)
                for xi, yi, k, n in zip(
                    x, part["alpha_mean"], part["n_wavelets_mean"], ns, strict=True
                ):
                    if np.isfinite(yi) and np.isfinite(k):
                        ax.annotate(
                            f"K={k:.0f}, n={n:.0f}", (xi, yi), textcoords="offset points",
                            xytext=(4, 4),
                            fontsize=6, color=pal[variant],
                        )  # fmt: skip
            if has_random:
                ax.plot(
                    x, part["alpha_random_mean"], linestyle="--", marker="x", color=pal[variant]
                )
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("label noise (% of training labels)")
        ax.set_ylabel("alpha (mean +- sd over runs; n runs)")
    legend = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, h)
    labels, handles = list(legend), list(legend.values())
    if has_random:
        handles.append(Line2D([], [], color="0.3", linestyle="--", marker="x"))
        labels.append("random-label baseline")
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi)
    return fig
