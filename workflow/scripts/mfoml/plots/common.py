"""Shared figure helpers: the Agg backend, fixed colours, variant labels, atomic saving.

Colours are consistent across figures: each activation has a fixed colour
(:data:`ACTIVATION_COLORS`); other variant labels get colours from a fixed palette in sorted
order (:func:`variant_palette`). :func:`save_figure` writes atomically; :func:`empty_figure` is
the placeholder that says why there is nothing to plot (never a missing file).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from mfoml.io import atomic_path  # noqa: E402

__all__ = [
    "ANNOTATE_MAX_CLASSES",
    "ACTIVATION_COLORS",
    "FEATURE_LABELS",
    "add_variant",
    "confusion_layout",
    "empty_figure",
    "legend_with_headings",
    "save_figure",
    "variant_palette",
]

_COLORBLIND = sns.color_palette("colorblind", 10)
#: Fixed colour of every activation (same in every figure and experiment).
ACTIVATION_COLORS = {
    "relu": _COLORBLIND[0],
    "gelu": _COLORBLIND[1],
    "prelu": _COLORBLIND[2],
    "sigmoid": _COLORBLIND[3],
    "tanh": _COLORBLIND[4],
    "heaviside": _COLORBLIND[5],
}
_DIMENSIONS = ["activation", "loss", "noise", "seed"]

FEATURE_LABELS = {
    "alpha_last_inner": "alpha of the last inner layer",
    "alpha_last_inner_adj": "alpha of the last inner layer, adjusted for log(n_wavelets)",
    "alpha_depth_slope": "slope of alpha over depth",
    "ncc_mismatch_penultimate": "NCC mismatch, penultimate layer (train)",
}


def _noise_label(v: float) -> str:
    return f"noise {100 * float(v):g}%"


def add_variant(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Add ``variant`` (the varying run dimensions) and ``panel`` (data set / model) columns.

    Returns
    -------
    (frame, kind) : a copy with the columns, and ``"activation"`` when the variant is the
    activation alone (fixed colours), else ``"variant"``.
    """
    out = frame.copy()
    varying = [c for c in _DIMENSIONS if c in out and out[c].nunique(dropna=False) > 1]
    if not varying or varying == ["activation"]:
        out["variant"] = out["activation"].astype(str) if "activation" in out else "run"
        kind = "activation"
    else:
        parts = []
        for c in varying:
            if c == "noise":
                parts.append(out[c].map(_noise_label))
            elif c == "seed":
                parts.append("seed " + out[c].astype(str))
            else:
                parts.append(out[c].astype(str))
        label = parts[0]
        for p in parts[1:]:
            label = label + " / " + p
        out["variant"] = label
        kind = "variant"
    if "dataset" in out and "model" in out:
        out["panel"] = out["dataset"].astype(str) + " / " + out["model"].astype(str)
    else:
        out["panel"] = "all"
    return out, kind


def variant_palette(variants: Sequence[str], kind: str = "variant") -> dict[str, tuple]:
    """Colour of each variant label: fixed per activation, else a fixed palette by sorted label."""
    names = sorted({str(v) for v in variants})
    if kind == "activation" and all(n in ACTIVATION_COLORS for n in names):
        return {n: ACTIVATION_COLORS[n] for n in names}
    pal = sns.color_palette("colorblind" if len(names) <= 10 else "husl", max(len(names), 1))
    return {n: pal[i] for i, n in enumerate(names)}


def save_figure(fig: plt.Figure, path: str | os.PathLike[str], dpi: int) -> None:
    """Save ``fig`` atomically (format from the file suffix, tight bounding box) and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip("."))
    plt.close(fig)


def empty_figure(
    path: str | os.PathLike[str],
    title: str,
    why: str,
    dpi: int,
    figsize: tuple[float, float] = (6, 2.5),
) -> plt.Figure:
    """A placeholder figure that says why there is nothing to plot (never a missing file). It
    has no axes (no empty panel), only its title and the reason. Returns it (saved, closed)."""
    fig = plt.figure(figsize=figsize)
    fig.suptitle(title)
    fig.text(0.5, 0.5, why, ha="center", va="center", wrap=True)
    save_figure(fig, path, dpi)
    return fig


#: Largest class count whose confusion matrix shows numbers (percent of the true class);
#: larger matrices show colours only, with a colour bar.
ANNOTATE_MAX_CLASSES = 15


def confusion_layout(n_classes: int) -> tuple[float, float | None]:
    """``(side in inches of one matrix, annotation font size in points or None)``.

    Cells are at least 0.38 in wide while numbers are shown, and the font is sized so that a
    three-digit percentage fits a cell with a margin (no overlapping numbers).
    """
    if n_classes > ANNOTATE_MAX_CLASSES:
        return 2.2 + 0.12 * n_classes, None
    side = max(2.6, 0.38 * n_classes + 1.0)
    cell_pt = (side - 1.0) / n_classes * 72  # the axes take about side - 1 in (labels)
    return side, float(min(8.0, 0.4 * cell_pt))


def legend_with_headings(
    fig: plt.Figure, sections: Sequence[tuple[str, Sequence[Any]]], **kwargs: Any
) -> Any:
    """A figure legend in sections, each under a bold heading (what colour, marker or line
    style means), e.g. ``[("colour: activation", handles), ("marker: data set / model", ...)]``.

    ``kwargs`` go to ``fig.legend``. Returns the legend.
    """
    from matplotlib.lines import Line2D

    handles: list[Any] = []
    headings = set()
    for heading, items in sections:
        if not items:
            continue
        if handles:
            handles.append(Line2D([], [], linestyle="", marker="", label=" "))
        handles.append(Line2D([], [], linestyle="", marker="", label=heading))
        headings.add(heading)
        handles.extend(items)
    legend = fig.legend(handles=handles, **kwargs)
    for text in legend.get_texts():
        if text.get_text() in headings:
            text.set_fontweight("bold")
    return legend
