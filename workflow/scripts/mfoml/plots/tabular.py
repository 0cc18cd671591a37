"""Figures of the tabular track (seaborn / matplotlib, Agg backend).

Every function takes the aggregated tables of :func:`mfoml.tabular.tables.aggregate` (mean and std over
folds), writes one figure atomically to ``path`` (format from the suffix) and returns it (closed).
A figure whose table is empty (e.g. confusion matrices when no classification data set is configured) is drawn
with a short note instead of failing, so the report always has every configured figure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from mfoml.plots.common import confusion_layout, empty_figure, save_figure  # noqa: E402

__all__ = ["FIGURES", "plot_all"]


def _save(fig: plt.Figure, path: str | os.PathLike[str], dpi: int) -> plt.Figure:
    fig.tight_layout()
    save_figure(fig, path, dpi)
    return fig


def _empty(path: str | os.PathLike[str], title: str, note: str, dpi: int) -> plt.Figure:
    return empty_figure(path, title, note, dpi, figsize=(5, 2))


def _grid(n: int, ncols: int = 3, size: tuple[float, float] = (4.0, 3.2)):
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False
    )
    for ax in axes.flat[n:]:
        ax.remove()  # only the cells that exist
    return fig, list(axes.flat[:n])


def _legend(ax: Any) -> None:
    """``ax``'s legend at its right, outside every data area (the tight layout makes room);
    drawn on the last panel of a row when it explains the whole row."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _tasks(t: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    ds = t.get("datasets")
    if ds is None or ds.empty:
        return {}
    return dict(zip(ds["dataset"], ds["task"], strict=False))


def _folds(frame: pd.DataFrame, col: str = "n_folds") -> str:
    """The number of folds behind a panel's means, ``"n=3 folds"`` (``"n=2-3 folds"`` when
    its rows differ), from the table's fold counts ``col``."""
    n = pd.to_numeric(frame[col], errors="coerce").dropna() if col in frame else frame.index[:0]
    if not len(n):
        return "n unknown"
    lo, hi = int(n.min()), int(n.max())
    return f"n={lo}-{hi} folds" if lo != hi else f"n={hi} fold" + "s" * (hi != 1)


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


def plot_baselines(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> plt.Figure:
    """Score (accuracy / R^2) of every model per data set, mean ± std over folds."""
    b = t.get("baselines")
    if b is None or b.empty:
        return _empty(path, "Baselines", "no baseline results", dpi)
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
        _legend(ax)
    return _save(fig, path, dpi)


def plot_confusion(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> plt.Figure:
    """Row-normalized confusion matrices (summed over folds) of the random-forest baseline."""
    c = t.get("confusion")
    if c is None or c.empty:
        return _empty(path, "Confusion matrices", "no classification data set", dpi)
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
    return _save(fig, path, dpi)


def _label(v: Any) -> str:
    """A hyper-parameter value as a label ("None" for missing, "4" for 4.0)."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "None"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def plot_hparams(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> plt.Figure:
    """Marginal inner-CV score per hyper-parameter value (mean ± std over outer folds)."""
    h = t.get("hparams")
    if h is None or h.empty:
        return _empty(path, "Hyper-parameters", "no hyper-parameter search results", dpi)
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
            ax.set_title(f"{p} ({task}, {_folds(sub)})")
            ax.set_xlabel("value")
            ax.set_ylabel("inner CV " + ("accuracy" if task == "classification" else "R$^2$"))
        _legend(row[-1])
    return _save(fig, path, dpi)


#: Error vs model size by study: (table, empty-figure title and note, panel size, x column,
#: x label, log x axis, marker). "trees": the wavelet forest (all wavelets and M*) vs its
#: number of trees; "stages": the boosted models (all wavelets of the first stages).
_ERROR_VS = {
    "trees": ("trees", "Compression vs trees", "no trees_grid configured", (4.0, 3.2), "n_trees",
              "number of trees", True, "o"),
    "stages": ("boosting_stages", "Boosting: error vs stages", "no boosting results", (4.2, 3.3),
               "n_stages", "number of stages", False, "."),
}  # fmt: skip


def plot_error_vs_size(
    t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110, *, study: str = "trees"
) -> plt.Figure:
    """Held-out error (mean ± std over folds) vs the number of trees (``study="trees"``: all
    wavelets and the validation-chosen M*) or of boosting stages (``"stages"``: per model)."""
    key, title, note, size, x, xlabel, log_x, marker = _ERROR_VS[study]
    c = t.get(key)
    if c is None or c.empty:
        return _empty(path, title, note, dpi)
    datasets = list(dict.fromkeys(c["dataset"]))
    fig, axes = _grid(len(datasets), 3, size)
    for ax, ds in zip(axes, datasets, strict=False):
        g = c[c["dataset"] == ds]
        if study == "trees":
            series = [(g, "test_error_full", "all wavelets"), (g, "test_error_selected", "M*")]
        else:
            series = [(g[g["model"] == model], "test_error", _LABELS.get(model, model))
                      for model in dict.fromkeys(g["model"])]  # fmt: skip
        for h, col, label in series:
            ax.errorbar(
                h[x], h[f"{col}_mean"], yerr=h[f"{col}_std"].fillna(0.0),
                marker=marker, capsize=2, label=label,
            )  # fmt: skip
        if log_x:
            ax.set_xscale("log")
        _error_axes(ax, g, xlabel, ds)
    _legend(axes[min(3, len(axes)) - 1])
    return _save(fig, path, dpi)


#: Rank-agreement figures by study: (table, empty-figure title and note, panel title prefix).
#: "methods": the three importance methods; "boosting": the wavelet importances of the forest
#: and the boosted models.
_RANK_AGREEMENT = {
    "methods": ("rank_agreement", "Feature importance", "no importance results", ""),
    "boosting": (
        "boosting_rank_agreement",
        "Wavelet importance: forest vs boosting",
        "no boosting results",
        "wavelet importance, ",
    ),
}


def plot_importance(
    t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110, *, study: str = "methods"
) -> plt.Figure:
    """Rank agreement (Spearman, Kendall) between importance methods (``study="methods"``) or
    between the wavelet importances of the forest and the boosted models (``"boosting"``)."""
    key, title, note, prefix = _RANK_AGREEMENT[study]
    a = t.get(key)
    if a is None or a.empty:
        return _empty(path, title, note, dpi)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), squeeze=False)
    for ax, stat in zip(axes.flat, ("spearman", "kendall"), strict=True):
        _errorbars(ax, a, "dataset", f"{stat}_mean", "pair", f"{stat}_std")
        ax.set_ylabel(f"{stat} rank correlation")
        ax.set_ylim(-1, 1.05)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{prefix}{stat}: mean ± std over folds ({_folds(a)})")
    _legend(axes.flat[-1])
    return _save(fig, path, dpi)


def plot_synthetic(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> plt.Figure:
    """Synthetic data: normalized importance per feature (true features marked) per method."""
    s, imp = t.get("synthetic"), t.get("synthetic_importance")
    if s is None or s.empty or imp is None or imp.empty:
        return _empty(path, "Synthetic importance", "synthetic check disabled", dpi)
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
            f"\n(mean over {_folds(g)})"
        )
        ax.set_xlabel("feature (red: relevant)")
        ax.set_ylabel("normalized importance")
    return _save(fig, path, dpi)


def plot_noise(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> plt.Figure:
    """Score and smoothness alpha vs label noise (classification) / target noise (regression)."""
    n = t.get("noise")
    if n is None or n.empty:
        return _empty(path, "Label noise", "noise study disabled", dpi)
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
            ax.set_title(f"{task} ({_folds(sub, f'{col}_n')})")
        _legend(row[-1])
    return _save(fig, path, dpi)


_LABELS = {
    "wavelet_forest": "wavelet forest",
    "gradient_boosting": "gradient boosting (sklearn)",
    "xgboost": "XGBoost",
}


def plot_xgb_hparams(t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110) -> plt.Figure:
    """:func:`plot_hparams` of the nested XGBoost search (table ``xgb_hparams``)."""
    h = t.get("xgb_hparams")
    if h is None or h.empty:
        return _empty(path, "XGBoost hyper-parameters", "no XGBoost search results", dpi)
    return plot_hparams({**t, "hparams": h}, path, dpi)


#: The compression figures by study: (curves table, M* table, empty-figure title and note,
#: panel size). "forest": the wavelet forest's test-fold and validation curves; "boosting": the
#: test curves of the forest and the boosted models.
_COMPRESSION = {
    "forest": ("compression", "wavelet", "Compression", "no wavelet-forest results", (4.0, 3.2)),
    "boosting": (
        "boosting_compression",
        "boosting",
        "Forest vs boosting compression",
        "no boosting results",
        (4.2, 3.3),
    ),
}


def _band(ax: Any, m: Any, mu: Any, sd: Any, style: str, alpha: float, **kw: Any) -> None:
    """A mean curve with a ± std band (``kw``: ``label`` of the line, optional ``color``)."""
    ax.plot(m, mu, style, **kw)
    ax.fill_between(
        m, mu - sd, mu + sd, alpha=alpha, **{k: v for k, v in kw.items() if k != "label"}
    )


def _error_axes(ax: Any, g: pd.DataFrame, xlabel: str, title: str) -> None:
    """x label, the table's ``error_kind`` as y label (``"error"`` without it) and title (with
    the number of folds)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(str(g["error_kind"].iloc[0]) if "error_kind" in g else "error")
    ax.set_title(f"{title} ({_folds(g)})")


def _forest_compression(ax: Any, g: pd.DataFrame, chosen: pd.DataFrame | None, ds: str) -> None:
    m = g["n_terms"].to_numpy()
    for col, style, label in (("test_error", "-", "test fold"), ("val_error", "--", "validation")):
        mu, sd = g[f"{col}_mean"].to_numpy(), g[f"{col}_std"].to_numpy()
        _band(ax, m, mu, sd, style, 0.2, label=label)
    if chosen is not None and not chosen[chosen["dataset"] == ds].empty:
        m_star = float(chosen[chosen["dataset"] == ds]["n_terms_mean"].iloc[0])
        ax.axvline(m_star, color="k", lw=0.8, ls=":", label="M* (mean)")


def _boosting_compression(
    ax: Any, g: pd.DataFrame, chosen: pd.DataFrame | None, ds: str, colors: dict[str, Any]
) -> None:
    for model, color in colors.items():
        h = g[g["model"] == model]
        if h.empty:
            continue
        m, mu, sd = h["n_terms"], h["test_error_mean"], h["test_error_std"].fillna(0.0)
        _band(ax, m, mu, sd, "-", 0.15, color=color, label=_LABELS.get(model, model))
        if chosen is not None:
            r = chosen[(chosen["dataset"] == ds) & (chosen["model"] == model)]
            if not r.empty:
                ax.axvline(float(r["n_terms_mean"].iloc[0]), color=color, lw=0.8, ls=":")


def plot_compression(
    t: Mapping[str, pd.DataFrame], path: str, dpi: int = 110, *, study: str = "forest"
) -> plt.Figure:
    """Held-out error vs number of wavelets M, with the validation-chosen M* (dotted): of the
    wavelet forest (``study="forest"``) or of the forest and the boosted models (``"boosting"``)."""
    curves_key, chosen_key, title, note, size = _COMPRESSION[study]
    c = t.get(curves_key)
    if c is None or c.empty:
        return _empty(path, title, note, dpi)
    chosen = t.get(chosen_key)
    datasets = list(dict.fromkeys(c["dataset"]))
    if study == "boosting":
        models = list(dict.fromkeys(c["model"]))
        colors = dict(zip(models, sns.color_palette(n_colors=len(models)), strict=True))
    fig, axes = _grid(len(datasets), 3, size)
    for ax, ds in zip(axes, datasets, strict=False):
        g = c[c["dataset"] == ds]
        if study == "boosting":
            _boosting_compression(ax, g, chosen, ds, colors)
        else:
            _forest_compression(ax, g, chosen, ds)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
        _error_axes(ax, g, "number of wavelets M", ds)
    _legend(axes[min(3, len(axes)) - 1])
    return _save(fig, path, dpi)


FIGURES: dict[str, Callable[[Mapping[str, pd.DataFrame], str, int], plt.Figure]] = {
    "baselines": plot_baselines,
    "confusion": plot_confusion,
    "hparams": plot_hparams,
    "xgb_hparams": plot_xgb_hparams,
    "compression": plot_compression,
    "trees": plot_error_vs_size,
    "boosting_compression": partial(plot_compression, study="boosting"),
    "boosting_stages": partial(plot_error_vs_size, study="stages"),
    "boosting_importance": partial(plot_importance, study="boosting"),
    "importance": plot_importance,
    "synthetic": plot_synthetic,
    "noise": plot_noise,
}


def plot_all(
    tables: Mapping[str, pd.DataFrame], outputs: Mapping[str, str], dpi: int = 110
) -> dict[str, plt.Figure]:
    """Draw the figures named in ``outputs`` (``{figure name: path}``; names of :data:`FIGURES`).
    Returns ``{figure name: figure}`` (each saved and closed)."""
    sns.set_theme(style="whitegrid", context="paper")
    figures = {}
    for name, path in outputs.items():
        if name not in FIGURES:
            raise ValueError(f"unknown tabular figure {name!r}; known: {', '.join(FIGURES)}")
        figures[name] = FIGURES[name](tables, path, dpi)
    return figures
