"""Panel grids of the pipeline's figures: only the cells that exist, a stated maximum size, the
number of runs in every panel, undefined values explained instead of drawn, bands in log space
on log axes and legends outside the data area.

- :func:`grid_shape` / :func:`new_grid`: ``n`` panels in at most :data:`MAX_ROWS` rows, so
  that a figure stays within :data:`MAX_FIG_WIDTH_IN` x :data:`MAX_FIG_HEIGHT_IN` inches (it
  then fits the report's viewer, which cuts the top of a figure taller than the window);
- :func:`summarize`: mean and one standard deviation over runs per x (geometric on log axes);
- :func:`draw_summary`, :func:`n_text`, :func:`panel_title`, :func:`figure_legend`,
  :func:`footnote`;
- :func:`layer_grid`: one panel per existing (data set / model, checkpoint) cell with one line
  per variant over the layers (the alpha, NCC and NC1 figures);
- :func:`status_reason`: why a probe's alpha is undefined, in words.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

__all__ = [
    "MAX_CHECKPOINTS",
    "MAX_FIG_HEIGHT_IN",
    "MAX_FIG_WIDTH_IN",
    "MAX_PANELS",
    "MAX_ROWS",
    "checkpoint_subset",
    "draw_summary",
    "figure_legend",
    "footnote",
    "grid_shape",
    "layer_grid",
    "n_text",
    "new_grid",
    "panel_title",
    "status_reason",
    "summarize",
]

#: Stated maximum size of a figure of the pipeline as saved, in inches (width x height, legend
#: and notes included). At the default 110 dpi the height is 935 px: the report's viewer shows
#: an image at its natural size or narrower (never taller), and cuts the top of one taller
#: than its window, so a figure within this height is seen whole, title included.
MAX_FIG_WIDTH_IN = 24.0
MAX_FIG_HEIGHT_IN = 8.5
#: Most panels of one grid; more (data set / model, checkpoint) cells are thinned (evenly
#: spaced checkpoints per model, first and last kept) and the figure says so.
MAX_PANELS = 20
#: Most rows of panels (a grid grows wide, not tall).
MAX_ROWS = 3
#: Most checkpoints of one model drawn in a per-layer figure.
MAX_CHECKPOINTS = 12
#: Fewest columns of a grid of more panels than that (rows fill first up to this width).
MIN_COLS = 4
#: Size of one panel, inches (width, height).
PANEL_SIZE = (3.0, 2.3)
#: Width kept for the figure legend at the right of the panels, inches.
LEGEND_WIDTH = 2.5
_HEADER = 0.9  # suptitle and margins, inches

#: Why the sparsity probe's alpha is undefined (``AlphaResult.status``), in words.
STATUS_REASONS = {
    "empty_set_for_all_eps": "the angle curve never reaches -90 degrees",
    "no_wavelets": "the probe's forest has no wavelets (constant labels or inputs)",
    "all_norms_zero": "every wavelet norm is zero (the forest is constant)",
    "too_few_points": "too few points for the log-log fit",
}


def checkpoint_subset(epochs: Sequence[int], limit: int = MAX_CHECKPOINTS) -> list[int]:
    """At most ``limit`` of the sorted ``epochs``: all of them, or an evenly spaced subset that
    keeps the first and the last."""
    epochs = sorted(epochs)
    if len(epochs) <= limit:
        return epochs
    picks = np.unique(np.round(np.linspace(0, len(epochs) - 1, max(limit, 1))).astype(int))
    return [epochs[i] for i in picks]


def status_reason(status: object, n_wavelets: object = None) -> str:
    """Why alpha is undefined, in words, from the probe's ``status`` and wavelet count."""
    text = STATUS_REASONS.get(str(status), f"probe status {status}")
    try:
        k = int(float(n_wavelets))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return text
    if str(status) == "empty_set_for_all_eps" and k <= 2:
        return f"only {k} wavelets: the root split separates the classes"
    return f"{text} ({k} wavelets)"


def grid_shape(n: int, min_cols: int = MIN_COLS, max_rows: int = MAX_ROWS) -> tuple[int, int]:
    """``(rows, columns)`` of a grid of ``n >= 1`` panels: rows of ``min_cols`` up to
    ``max_rows`` rows, then wider rows."""
    n = max(int(n), 1)
    ncols = min(n, max(min_cols, math.ceil(n / max_rows)))
    return math.ceil(n / ncols), ncols


def new_grid(
    n: int,
    *,
    panel_size: tuple[float, float] = PANEL_SIZE,
    legend: bool = True,
    sharey: bool = False,
    min_cols: int = MIN_COLS,
    max_rows: int = MAX_ROWS,
) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure (constrained layout) with ``n`` panels in :func:`grid_shape` rows; the unused
    places of the last row are removed, never left as empty axes. Returns ``(fig, axes)``."""
    nrows, ncols = grid_shape(n, min_cols, max_rows)
    width = ncols * panel_size[0] + (LEGEND_WIDTH if legend else 0.3)
    height = nrows * panel_size[1] + _HEADER
    fig = plt.figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.remove()
    if sharey:  # the first panel of each row shows the shared y tick labels
        for i, ax in enumerate(flat[:n]):
            ax.tick_params(labelleft=i % ncols == 0)
    return fig, flat[:n]


def summarize(
    frame: pd.DataFrame, x: str, y: str, *, log: bool = False, by: str = "run"
) -> pd.DataFrame:
    """Per value of ``x``: the mean of ``y`` over the rows (runs) with a finite value, one
    standard deviation below and above, and their number.

    On a log axis (``log``) only positive values count and the statistics are taken of log(y):
    the geometric mean with the band ``exp(mean(log y) +- sd(log y))``, which never reaches
    zero or below. Returns columns ``x, center, low, high, n`` sorted by ``x`` (``n >= 1``).
    """
    values = pd.to_numeric(frame[y], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(values) & (values > 0 if log else True)
    part = pd.DataFrame({x: frame[x].to_numpy()[keep], "v": values[keep]})
    if log:
        part["v"] = np.log(part["v"])
    g = part.groupby(x)["v"].agg(["mean", "std", "count"]).reset_index().sort_values(x)
    sd = g["std"].fillna(0.0)
    low, high = g["mean"] - sd, g["mean"] + sd
    out = pd.DataFrame({x: g[x], "center": g["mean"], "low": low, "high": high, "n": g["count"]})
    if log:
        for c in ("center", "low", "high"):
            out[c] = np.exp(out[c])
    return out.reset_index(drop=True)


def draw_summary(
    ax: plt.Axes,
    summary: pd.DataFrame,
    x: str,
    color: object,
    *,
    ls: str = "-",
    marker: str | None = "o",
    lw: float = 1.4,
) -> None:
    """The ``center`` line of a :func:`summarize` table with its band where n > 1."""
    if summary.empty:
        return
    ax.plot(summary[x], summary["center"], ls, color=color, marker=marker, ms=3.5, lw=lw)
    if (summary["n"] > 1).any():
        ax.fill_between(summary[x], summary["low"], summary["high"], color=color, alpha=0.15, lw=0)


def n_text(counts: Mapping[str, int]) -> str:
    """The number of runs behind the lines of one panel: ``"n=3 runs per line"``, or each
    line's count when they differ (``"n: relu 3, tanh 1"``)."""
    values = sorted(set(counts.values()))
    if not values:
        return "n=0"
    if len(values) == 1:
        k = values[0]
        return f"n={k} run{'s' if k != 1 else ''}" + (" per line" if len(counts) > 1 else "")
    return "n: " + ", ".join(f"{name} {k}" for name, k in sorted(counts.items()))


def panel_title(ax: plt.Axes, head: str, notes: Sequence[str] = (), width: int = 44) -> None:
    """``head`` (lines of the panel's identity and n) and wrapped ``notes`` in the title."""
    lines = [head] + [textwrap.fill(n, width) for n in notes]
    ax.set_title("\n".join(lines), fontsize=7.5)


def figure_legend(fig: plt.Figure, handles: Sequence[Line2D], **kwargs: object) -> object:
    """A legend at the right of all panels (outside every data area; the constrained layout
    makes room for it). ``kwargs`` go to ``fig.legend``."""
    opts: dict[str, object] = {"loc": "outside right upper", "frameon": False, "fontsize": 8}
    opts.update(kwargs)
    return fig.legend(handles=list(handles), **opts)  # type: ignore[arg-type]


def footnote(fig: plt.Figure, lines: Sequence[str], width: int = 160, max_lines: int = 4) -> None:
    """Notes under the panels (what is left out and why), as the figure's bottom label; at
    most ``max_lines`` notes (the rest counted), so that the figure keeps its size."""
    lines = [ln for ln in lines if ln]
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [f"... and {len(lines) - max_lines + 1} more notes."]
    if lines:
        text = "\n".join(textwrap.fill(ln, width) for ln in lines)
        fig.supxlabel(text, fontsize=7, x=0.01, ha="left")


def _layer_ticks(ax: plt.Axes, part: pd.DataFrame) -> None:
    """Label the x axis with the layer names of the panel's own model (models differ)."""
    names = part.drop_duplicates("layer_index").sort_values("layer_index")
    ax.set_xticks(names["layer_index"].to_numpy())
    ax.set_xticklabels(names["layer"].astype(str), rotation=45, ha="right", fontsize=7)


def _undefined_notes(part: pd.DataFrame, y: str, what: str, log: bool) -> list[str]:
    """What a cell leaves out: layers whose ``y`` is undefined (with the ``reason`` column's
    words) or, on a log axis, not positive."""
    values = pd.to_numeric(part[y], errors="coerce")
    notes = []
    bad = part[~np.isfinite(values)]
    if not bad.empty:
        reasons = (
            bad["reason"].fillna("").astype(str) if "reason" in bad else pd.Series("", bad.index)
        )
        for reason, rows in bad.groupby(reasons):
            layers = rows.drop_duplicates("layer_index").sort_values("layer_index")["layer"]
            why = f": {reason}" if reason else ""
            notes.append(f"{what} undefined at {', '.join(map(str, layers))}{why}")
    if log:
        nonpos = part[np.isfinite(values) & (values <= 0)]
        if not nonpos.empty:
            layers = nonpos.drop_duplicates("layer_index").sort_values("layer_index")["layer"]
            notes.append(f"{what} <= 0 at {', '.join(map(str, layers))} (not on a log axis)")
    return notes


def layer_grid(
    data: pd.DataFrame,
    y: str,
    *,
    palette: Mapping[str, object],
    ylabel: str,
    title: str,
    what: str,
    log: bool = False,
    sharey: bool = True,
    style: str | None = None,
    style_order: Sequence[str] = (),
) -> plt.Figure:
    """One panel per existing (``panel``, ``epoch``) cell, one line per ``variant`` (and
    ``style`` value) of ``y`` over ``layer_index``: mean +- sd over the runs (:func:`summarize`),
    the runs' count in each panel's title, undefined values left out with their ``reason``.

    ``data`` has the columns ``panel, epoch, layer, layer_index, variant, run, y`` (and
    ``reason``: why ``y`` is undefined on a row, and ``style`` when given). A cell whose every
    value is undefined gets no panel; the figure's footnote says which and why. More than
    :data:`MAX_PANELS` cells are thinned per model (evenly spaced checkpoints, said in the
    footnote). Returns the figure (not saved).
    """
    data = data.reset_index(drop=True)
    panels = sorted(data["panel"].astype(str).unique())
    limit = max(1, min(MAX_CHECKPOINTS, MAX_PANELS // max(len(panels), 1)))
    values = pd.to_numeric(data[y], errors="coerce")
    drawable = np.isfinite(values) & ((values > 0) if log else True)  # a Series on data's index
    cells: list[tuple[str, int]] = []
    notes: list[str] = []
    thinned = []
    for panel in panels:
        part = data[data["panel"].astype(str) == panel]
        epochs = sorted(int(e) for e in part["epoch"].unique())
        shown = checkpoint_subset(epochs, limit)
        if len(shown) < len(epochs):
            thinned.append(f"{panel} {len(shown)} of {len(epochs)}")
        for e in shown:
            sel = part["epoch"].astype(int) == e
            if drawable.loc[part.index[sel.to_numpy()]].any():
                cells.append((panel, e))
            else:
                why = _undefined_notes(part[sel], y, what, log)
                notes.append(f"{panel}, epoch {e}: not drawn, " + "; ".join(why) + ".")
    if thinned:
        notes.insert(0, "Checkpoints drawn (evenly spaced): " + "; ".join(thinned) + ".")
    if len(cells) > MAX_PANELS:
        notes.append(f"{len(cells) - MAX_PANELS} more cells not drawn (more models than panels).")
        cells = cells[:MAX_PANELS]
    fig, axes = new_grid(len(cells), sharey=sharey)
    styles = list(style_order) if style else [None]
    dashes = ["-", "--", ":", "-."]
    for ax, (panel, epoch) in zip(axes, cells, strict=True):
        part = data[(data["panel"].astype(str) == panel) & (data["epoch"].astype(int) == epoch)]
        counts = {}
        for variant in sorted(part["variant"].astype(str).unique()):
            rows = part[part["variant"].astype(str) == variant]
            counts[variant] = int(rows["run"].nunique())
            for k, s in enumerate(styles):
                sub = rows if s is None else rows[rows[style] == s]
                summary = summarize(sub, "layer_index", y, log=log)
                # undefined layers stay gaps: the line never bridges them
                summary = (
                    summary.set_index("layer_index")
                    .reindex(sorted(part["layer_index"].unique()))
                    .rename_axis("layer_index")
                    .reset_index()
                )
                draw_summary(ax, summary, "layer_index", palette[variant], ls=dashes[k % 4])
        if log:
            ax.set_yscale("log")
        _layer_ticks(ax, part)
        panel_title(
            ax, f"{panel}\nepoch {epoch}, {n_text(counts)}", _undefined_notes(part, y, what, log)
        )
        ax.grid(alpha=0.3)
    for ax in axes:
        if ax.get_subplotspec().is_last_row() or ax is axes[-1]:
            ax.set_xlabel("layer", fontsize=8)
    fig.supylabel(ylabel, fontsize=9)
    handles = [Line2D([], [], color=palette[v], marker="o", label=v) for v in sorted(palette)]
    if style:
        handles += [
            Line2D([], [], color="0.3", ls=dashes[k % 4], label=f"{style}: {s}")
            for k, s in enumerate(styles)
        ]
    figure_legend(fig, handles)
    fig.suptitle(title)
    footnote(fig, notes)
    return fig
