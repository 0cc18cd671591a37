"""Figures of the tabular track (seaborn / matplotlib, Agg backend).

Every function takes the aggregated tables of :func:`mfoml.tabular.tables.aggregate` (mean and std over
folds) and writes one figure atomically to ``path`` (format from the suffix). A figure whose
table is empty (e.g. confusion matrices when no classification data set is configured) is drawn
with a short note instead of failing, so the report always has every configured figure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from mfoml.plots.common import confusion_layout, empty_figure, save_figure  # noqa: E402

__all__ = ["FIGURES", "plot_all"]


def _save(fig: plt.Figure, path: str | os.PathLike[str], dpi: int) -> None:
    fig.tight_layout()
    save_figure(fig, path, dpi)


def _empty(path: str | os.PathLike[str], title: str, note: str, dpi: int) -> None:
    empty_figure(path, title, note, dpi, figsize=(5, 2))


def _grid(n: int, ncols: int = 3, size: tuple[float, float] = (4.0, 3.2)):
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False
    )
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat)


def _tasks(t: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    ds = t.get("datasets")
    if ds is None or ds.empty:
        return {}
    return dict(zip(ds["dataset"], ds["task"], strict=False))


def _errorbars(ax: Any, frame: pd.DataFrame, x: str, y: str, hue: str, yerr: str) -> None:
    """Grouped bars with std error bars (x categories, hue groups)."""
    xs = list(dict.fromkeys(frame[x]))
    hs = list(dict.fromkeys(frame[hue]))
    width = 0.8 / max(len(hs), 1)
    colors = sns.color_palette(n_colors=max(len(hs), 1))
    for j, h in enumerate(hs):
        sub = frame[frame[hue] == h].set_index(x)
        pos = [i + (j - (len(hs) - 1) / 2) * width for i in range(len(xs))]
        vals = [sub[y].get(v, np.nan) for v in xs]
        errs = [sub[yerr].get(v, 0.0) for v in xs]
        ax.bar(pos, vals, width, yerr=errs, label=str(h), color=colors[j], capsize=2)
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels(xs, rotation=20, ha="right")


def plot_baselines(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> None:
    """Score (accuracy / R^2) of every model per data set, mean ± std over folds."""
    b = t.get("baselines")
    if b is None or b.empty:
        _empty(path, "Baselines", "no baseline results", dpi)
        return
    frame = b[["dataset", "model", "score_mean", "score_std"]].copy()
    extra = [("rf_search", "random_forest (nested search)"), ("wavelet", "wavelet_forest (M*)")]
    for key, label in extra:
        e = t.get(key)
        if e is not None and not e.empty:
            frame = pd.concat(
                [frame, e[["dataset", "score_mean", "score_std"]].assign(model=label)],
                ignore_index=True,
            )
    tasks = _tasks(t)
    frame["task"] = frame["dataset"].map(lambda d: tasks.get(d, "classification"))
    groups = [g for g in ("classification", "regression") if g in set(frame["task"])]
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4), squeeze=False)
    for ax, task in zip(axes.flat, groups, strict=True):
        _errorbars(ax, frame[frame["task"] == task], "dataset", "score_mean", "model", "score_std")
        ax.set_ylabel("accuracy" if task == "classification" else "R$^2$")
        n_folds = int(b["n_folds"].max()) if "n_folds" in b else 0
        ax.set_title(f"{task}: {n_folds}-fold CV, mean ± std")
        ax.legend(fontsize=7)
    _save(fig, path, dpi)


def plot_confusion(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> None:
    """Row-normalized confusion matrices (summed over folds) of the random-forest baseline."""
    c = t.get("confusion")
    if c is None or c.empty:
        _empty(path, "Confusion matrices", "no classification data set", dpi)
        return
    model = "random_forest" if "random_forest" in set(c["model"]) else c["model"].iloc[0]
    c = c[c["model"] == model]
    datasets = list(dict.fromkeys(c["dataset"]))
    n_max = int(max(c["true"].max(), c["predicted"].max())) + 1
    side, fontsize = confusion_layout(n_max)
    fig, axes = _grid(len(datasets), 3, (max(4.0, side), max(3.6, side)))
    for ax, ds in zip(axes, datasets, strict=False):
        sub = c[c["dataset"] == ds]
        n = int(max(sub["true"].max(), sub["predicted"].max())) + 1
        cm = np.zeros((n, n))
        cm[sub["true"].to_numpy(), sub["predicted"].to_numpy()] = sub["count"].to_numpy()
        rows = cm.sum(axis=1, keepdims=True)
        norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        sns.heatmap(
            norm,
            vmin=0,
            vmax=1,
            cmap="Blues",
            ax=ax,
            cbar=fontsize is None,
            annot=np.round(100 * norm).astype(int) if fontsize else False,
            fmt="d",
            annot_kws={"fontsize": fontsize or 6},
        )
        ax.set_title(f"{ds} ({model}" + (", %)" if fontsize else ")"))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    _save(fig, path, dpi)


def _label(v: Any) -> str:
    """A hyper-parameter value as a label ("None" for missing, "4" for 4.0)."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "None"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def plot_hparams(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> None:
    """Marginal inner-CV score per hyper-parameter value (mean ± std over outer folds)."""
    h = t.get("hparams")
    if h is None or h.empty:
        _empty(path, "Hyper-parameters", "no hyper-parameter search results", dpi)
        return
    params = list(dict.fromkeys(h["param"]))
    tasks = _tasks(t)
    h = h.assign(task=h["dataset"].map(lambda d: tasks.get(d, "classification")))
    groups = [g for g in ("classification", "regression") if g in set(h["task"])]
    fig, axes = plt.subplots(
        len(groups), len(params), figsize=(3.6 * len(params), 3.2 * len(groups)), squeeze=False
    )
    for row, task in zip(axes, groups, strict=True):
        for ax, p in zip(row, params, strict=True):
            sub = h[(h["param"] == p) & (h["task"] == task)]
            for ds, g in sub.groupby("dataset", sort=False):
                ax.errorbar(
                    [_label(v) for v in g["value"]],
                    g["score_mean"],
                    yerr=g["score_std"],
                    marker="o",
                    capsize=2,
                    label=str(ds),
                )
            ax.set_title(f"{p} ({task})")
            ax.set_xlabel("value")
            ax.set_ylabel("inner CV " + ("accuracy" if task == "classification" else "R$^2$"))
        row[0].legend(fontsize=7)
    _save(fig, path, dpi)


def plot_compression(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> None:
    """Held-out error of the M-term wavelet forest vs M, with the validation-chosen M*."""
    c = t.get("compression")
    if c is None or c.empty:
        _empty(path, "Compression", "no wavelet-forest results", dpi)
        return
    w = t.get("wavelet")
    datasets = list(dict.fromkeys(c["dataset"]))
    fig, axes = _grid(len(datasets), 3, (4.0, 3.2))
    for ax, ds in zip(axes, datasets, strict=False):
        g = c[c["dataset"] == ds]
        m = g["n_terms"].to_numpy()
        for col, style, label in (
            ("test_error", "-", "test fold"),
            ("val_error", "--", "validation"),
        ):
            mu, sd = g[f"{col}_mean"].to_numpy(), g[f"{col}_std"].to_numpy()
            ax.plot(m, mu, style, label=label)
            ax.fill_between(m, mu - sd, mu + sd, alpha=0.2)
        if w is not None and not w[w["dataset"] == ds].empty:
            ax.axvline(
                float(w[w["dataset"] == ds]["n_terms_mean"].iloc[0]),
                color="k",
                lw=0.8,
                ls=":",
                label="M* (mean)",
            )
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
        ax.set_xlabel("number of wavelets M")
        ax.set_ylabel(str(g["error_kind"].iloc[0]) if "error_kind" in g else "error")
        ax.set_title(ds)
    axes[0].legend(fontsize=7)
    _save(fig, path, dpi)


def plot_trees(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> None:
    """Held-out error vs number of trees: all wavelets and the validation-chosen M*."""
    c = t.get("trees")
    if c is None or c.empty:
        _empty(path, "Compression vs trees", "no trees_grid configured", dpi)
        return
    datasets = list(dict.fromkeys(c["dataset"]))
    fig, axes = _grid(len(datasets), 3, (4.0, 3.2))
    for ax, ds in zip(axes, datasets, strict=False):
        g = c[c["dataset"] == ds]
        for col, label in (("test_error_full", "all wavelets"), ("test_error_selected", "M*")):
            ax.errorbar(
                g["n_trees"],
                g[f"{col}_mean"],
                yerr=g[f"{col}_std"],
                marker="o",
                capsize=2,
                label=label,
            )
        ax.set_xscale("log")
        ax.set_xlabel("number of trees")
        ax.set_ylabel(str(g["error_kind"].iloc[0]) if "error_kind" in g else "error")
        ax.set_title(ds)
    axes[0].legend(fontsize=7)
    _save(fig, path, dpi)


def plot_importance(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> None:
    """Rank agreement (Spearman, Kendall) between the three importance methods."""
    a = t.get("rank_agreement")
    if a is None or a.empty:
        _empty(path, "Feature importance", "no importance results", dpi)
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), squeeze=False)
    for ax, stat in zip(axes.flat, ("spearman", "kendall"), strict=True):
        _errorbars(ax, a, "dataset", f"{stat}_mean", "pair", f"{stat}_std")
        ax.set_ylabel(f"{stat} rank correlation")
        ax.set_ylim(-1, 1.05)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{stat}: mean ± std over folds")
    axes.flat[0].legend(fontsize=7)
    _save(fig, path, dpi)


def plot_synthetic(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> None:
    """Synthetic data: normalized importance per feature (true features marked) per method."""
    s, imp = t.get("synthetic"), t.get("synthetic_importance")
    if s is None or s.empty or imp is None or imp.empty:
        _empty(path, "Synthetic importance", "synthetic check disabled", dpi)
        return
    methods = list(dict.fromkeys(imp["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(3.8 * len(methods), 3.2), squeeze=False)
    for ax, method in zip(axes.flat, methods, strict=True):
        g = imp[imp["method"] == method]
        colors = ["tab:red" if r else "tab:gray" for r in g["relevant"]]
        ax.bar(
            g["feature_index"],
            g["importance_mean"],
            yerr=g["importance_std"],
            color=colors,
            capsize=2,
        )
        row = s[s["method"] == method].iloc[0]
        ax.set_title(
            f"{method}: {row['recovered_mean']:.2f}/{int(row['k'])} true in top {int(row['k'])}"
        )
        ax.set_xlabel("feature (red: relevant)")
        ax.set_ylabel("normalized importance")
    _save(fig, path, dpi)


def plot_noise(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> None:
    """Score and smoothness alpha vs label noise (classification) / target noise (regression)."""
    n = t.get("noise")
    if n is None or n.empty:
        _empty(path, "Label noise", "noise study disabled", dpi)
        return
    tasks = _tasks(t)
    n = n.assign(task=n["dataset"].map(lambda d: tasks.get(d, "classification")))
    groups = [g for g in ("classification", "regression") if g in set(n["task"])]
    cols = [
        ("score", "score (accuracy / R$^2$)"),
        ("alpha", "alpha (probe)"),
        ("forest_alpha", "alpha (scored forest)"),
    ]
    fig, axes = plt.subplots(len(groups), 3, figsize=(12, 3.3 * len(groups)), squeeze=False)
    for row, task in zip(axes, groups, strict=True):
        sub = n[n["task"] == task]
        for ax, (col, label) in zip(row, cols, strict=True):
            for ds, g in sub.groupby("dataset", sort=False):
                ax.errorbar(
                    g["level"],
                    g[f"{col}_mean"],
                    yerr=g[f"{col}_std"],
                    marker="o",
                    capsize=2,
                    label=str(ds),
                )
            ax.set_xlabel(
                "fraction of training labels flipped"
                if task == "classification"
                else "target noise sigma / std(y)"
            )
            ax.set_ylabel(label)
            ax.set_title(task)
        row[0].legend(fontsize=7)
    _save(fig, path, dpi)


_LABELS = {
    "wavelet_forest": "wavelet forest",
    "gradient_boosting": "gradient boosting (sklearn)",
    "xgboost": "XGBoost",
}


def plot_xgb_hparams(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> None:
    """:func:`plot_hparams` of the nested XGBoost search (table ``xgb_hparams``)."""
    h = t.get("xgb_hparams")
    if h is None or h.empty:
        _empty(path, "XGBoost hyper-parameters", "no XGBoost search results", dpi)
        return
    plot_hparams({**t, "hparams": h}, path, dpi)


def plot_boosting_compression(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> None:
    """Held-out error vs number of wavelets M: forest and boosted models, M* marked."""
    c = t.get("boosting_compression")
    if c is None or c.empty:
        _empty(path, "Forest vs boosting compression", "no boosting results", dpi)
        return
    rows = t.get("boosting")
    datasets = list(dict.fromkeys(c["dataset"]))
    models = list(dict.fromkeys(c["model"]))
    colors = dict(zip(models, sns.color_palette(n_colors=len(models)), strict=True))
    fig, axes = _grid(len(datasets), 3, (4.2, 3.3))
    for ax, ds in zip(axes, datasets, strict=False):
        for model in models:
            g = c[(c["dataset"] == ds) & (c["model"] == model)]
            if g.empty:
                continue
            m, mu, sd = g["n_terms"], g["test_error_mean"], g["test_error_std"].fillna(0.0)
            ax.plot(m, mu, "-", color=colors[model], label=_LABELS.get(model, model))
            ax.fill_between(m, mu - sd, mu + sd, color=colors[model], alpha=0.15)
            if rows is not None:
                r = rows[(rows["dataset"] == ds) & (rows["model"] == model)]
                if not r.empty:
                    ax.axvline(
                        float(r["n_terms_mean"].iloc[0]), color=colors[model], lw=0.8, ls=":"
                    )
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
        ax.set_xlabel("number of wavelets M")
        ax.set_ylabel(
            str(c[c["dataset"] == ds]["error_kind"].iloc[0]) if "error_kind" in c else "error"
        )
        ax.set_title(ds)
    axes[0].legend(fontsize=7)
    _save(fig, path, dpi)


def plot_boosting_stages(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> None:
    """Held-out error of the boosted models vs the number of stages (all wavelets of them)."""
    s = t.get("boosting_stages")
    if s is None or s.empty:
        _empty(path, "Boosting: error vs stages", "no boosting results", dpi)
        return
    datasets = list(dict.fromkeys(s["dataset"]))
    fig, axes = _grid(len(datasets), 3, (4.2, 3.3))
    for ax, ds in zip(axes, datasets, strict=False):
        g = s[s["dataset"] == ds]
        for model in dict.fromkeys(g["model"]):
            h = g[g["model"] == model]
            ax.errorbar(
                h["n_stages"], h["test_error_mean"], yerr=h["test_error_std"].fillna(0.0),
                marker=".", capsize=2, label=_LABELS.get(model, model),
            )  # fmt: skip
        ax.set_xlabel("number of stages")
        ax.set_ylabel(str(g["error_kind"].iloc[0]) if "error_kind" in g else "error")
        ax.set_title(ds)
    axes[0].legend(fontsize=7)
    _save(fig, path, dpi)


def plot_boosting_importance(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> None:
    """Rank agreement of the wavelet importances of the forest and the boosted models."""
    a = t.get("boosting_rank_agreement")
    if a is None or a.empty:
        _empty(path, "Wavelet importance: forest vs boosting", "no boosting results", dpi)
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), squeeze=False)
    for ax, stat in zip(axes.flat, ("spearman", "kendall"), strict=True):
        _errorbars(ax, a, "dataset", f"{stat}_mean", "pair", f"{stat}_std")
        ax.set_ylabel(f"{stat} rank correlation")
        ax.set_ylim(-1, 1.05)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"wavelet importance, {stat}: mean ± std over folds")
    axes.flat[0].legend(fontsize=7)
    _save(fig, path, dpi)


FIGURES: dict[str, Callable[[Mapping[str, pd.DataFrame], str, int], None]] = {
    "baselines": plot_baselines,
    "confusion": plot_confusion,
    "hparams": plot_hparams,
    "xgb_hparams": plot_xgb_hparams,
    "compression": plot_compression,
    "trees": plot_trees,
    "boosting_compression": plot_boosting_compression,
    "boosting_stages": plot_boosting_stages,
    "boosting_importance": plot_boosting_importance,
    "importance": plot_importance,
    "synthetic": plot_synthetic,
    "noise": plot_noise,
}


def plot_all(
    tables: Mapping[str, pd.DataFrame], outputs: Mapping[str, str], dpi: int = 110
) -> None:
    """Draw the figures named in ``outputs`` (``{figure name: path}``; names of :data:`FIGURES`)."""
    sns.set_theme(style="whitegrid", context="paper")
    for name, path in outputs.items():
        if name not in FIGURES:
            raise ValueError(f"unknown tabular figure {name!r}; known: {', '.join(FIGURES)}")
        FIGURES[name](tables, path, dpi)
