"""What the reader sees, checked on a drawn matplotlib figure (issue #22): no visible axes
without data, no legend over a line's, a scatter's or an error bar's points or over a bar, the
saved image within the stated maximum size (:mod:`mfoml.plots.grid`), and not a placeholder (at
least one panel with data). Shared by tests/test_figures.py and the workflow tests that
re-render a run's figures from its tables."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from mfoml.plots import grid

__all__ = ["check_figure", "check_figures", "drawn_panels", "has_points", "render"]


def _line_points(artist) -> np.ndarray:
    """Display coordinates ``(n, 2)`` of the data points of a line or a scatter (finite
    ones)."""
    if isinstance(artist, Line2D):
        xy = np.asarray(artist.get_xydata(), dtype=float)
        xy = xy[np.isfinite(xy).all(axis=1)]
        return artist.get_transform().transform(xy) if len(xy) else np.empty((0, 2))
    offsets = np.asarray(artist.get_offsets(), dtype=float)
    offsets = offsets[np.isfinite(offsets).all(axis=1)] if offsets.ndim == 2 else offsets
    if not len(offsets):
        return np.empty((0, 2))
    return artist.get_offset_transform().transform(offsets)


def _bars(ax: Axes) -> list[Rectangle]:
    """The bars of ``ax``: rectangles with a finite, non-zero size."""
    bars = []
    for patch in ax.patches:
        if isinstance(patch, Rectangle):
            x, y, w, h = patch.get_x(), patch.get_y(), patch.get_width(), patch.get_height()
            if np.isfinite([x, y, w, h]).all() and w != 0 and h != 0:
                bars.append(patch)
    return bars


def _segment_points(ax: Axes) -> np.ndarray:
    """Display coordinates ``(n, 2)`` of the ends of the segments of the line collections of
    ``ax`` (error bars, vertical and horizontal lines)."""
    ends = [np.empty((0, 2))]
    for c in ax.collections:
        if isinstance(c, LineCollection):
            for seg in c.get_segments():
                seg = np.asarray(seg, dtype=float).reshape(-1, 2)
                seg = seg[np.isfinite(seg).all(axis=1)]
                if len(seg):
                    ends.append(c.get_transform().transform(seg))
    return np.concatenate(ends)


def _data_artists(ax: Axes) -> list:
    return list(ax.get_lines()) + [c for c in ax.collections if isinstance(c, PathCollection)]


def has_points(ax: Axes) -> bool:
    """Whether a panel draws data: a line or a scatter with a finite point, a bar, an image,
    or another collection with paths (bands, error bars, heat maps, contours).
    ``ax.has_data()`` is also true for a scatter of no points."""
    if ax.images or _bars(ax):
        return True
    if any(len(_line_points(artist)) for artist in _data_artists(ax)):
        return True
    return any(not isinstance(c, PathCollection) and len(c.get_paths()) for c in ax.collections)


def drawn_panels(fig: Figure) -> list[Axes]:
    """The axes of ``fig`` that draw data (:func:`has_points`)."""
    return [ax for ax in fig.axes if has_points(ax)]


def check_figure(fig: Figure, path: str | os.PathLike[str], dpi: int) -> None:
    """No visible axes without data, no legend over a line's, a scatter's or an error bar's
    points or over a bar, and the image saved at ``path`` (at ``dpi``) within the stated
    maximum size (:data:`mfoml.plots.grid.MAX_FIG_WIDTH_IN` x
    :data:`~mfoml.plots.grid.MAX_FIG_HEIGHT_IN`)."""
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)  # a closed figure has lost its pyplot canvas
    canvas.draw()
    renderer = canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    for ax in axes:
        assert has_points(ax), f"{path}: a panel without data ({ax.get_title()!r})"
    legends = list(fig.legends) + [ax.get_legend() for ax in axes if ax.get_legend()]
    boxes = [lg.get_window_extent(renderer) for lg in legends]
    for ax in axes:
        points = [(artist, _line_points(artist)) for artist in _data_artists(ax)]
        points.append((f"the error bars of {ax.get_title()!r}", _segment_points(ax)))
        for artist, pts in points:
            for box in boxes:
                inside = (
                    (pts[:, 0] > box.x0) & (pts[:, 0] < box.x1)
                    & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1)
                )  # fmt: skip
                assert not inside.any(), f"{path}: a legend covers points of {artist}"
        for bar in _bars(ax):
            extent = bar.get_window_extent(renderer)
            for box in boxes:
                assert not box.overlaps(extent), (
                    f"{path}: a legend covers a bar of {ax.get_title()!r}"
                )
    height, width = mpimg.imread(path).shape[:2]
    assert width <= grid.MAX_FIG_WIDTH_IN * dpi + 2, (path, width / dpi)
    assert height <= grid.MAX_FIG_HEIGHT_IN * dpi + 2, (path, height / dpi)


def check_figures(
    figures: Mapping[str, tuple[Figure, str | os.PathLike[str]]],
    dpi: int,
    placeholders: Collection[str] = (),
) -> None:
    """:func:`check_figure` on every ``{name: (figure, path)}``, and each one not a placeholder
    (at least one panel with data) unless its name is in ``placeholders``."""
    assert figures
    for name, (fig, path) in figures.items():
        check_figure(fig, path, dpi)
        if name not in placeholders:
            assert drawn_panels(fig), f"{name} is a placeholder"


def render(
    jobs: Mapping[str, Callable[[Path], Figure]], out: str | os.PathLike[str]
) -> dict[str, tuple[Figure, Path]]:
    """Run every ``{name: job}``, ``job(path)`` drawing one figure to ``path`` (``out/name.png``)
    and returning it: ``{name: (figure, path)}``, the argument of :func:`check_figures`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = {}
    for name, job in jobs.items():
        path = out / f"{name}.png"
        done[name] = (job(path), path)
    return done
