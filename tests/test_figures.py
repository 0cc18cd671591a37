"""Readable figures: per-layer figures wrap for any number of checkpoints, confusion matrices
never overlap their numbers, legends have headings and show how many runs a line is."""

from __future__ import annotations

import io

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from mfoml.plots import pipeline as plots
from mfoml.plots.common import ANNOTATE_MAX_CLASSES

LAYERS = ["input", "block1", "block2", "logits"]


def _layers_table(n_checkpoints: int, n_folds: int = 2, models=("mlp-a",)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for model in models:
        for act in ("relu", "tanh"):
            for fold in range(n_folds):
                run = f"mnist1d/{model}/{act}/ce/noise0/fold{fold}"
                for epoch in range(1, n_checkpoints + 1):
                    for i, layer in enumerate(LAYERS):
                        rows.append(
                            {
                                "experiment": "e",
                                "dataset": "mnist1d",
                                "model": model,
                                "activation": act,
                                "loss": "ce",
                                "noise": 0.0,
                                "seed": 0,
                                "fold": fold,
                                "run": run,
                                "epoch": epoch,
                                "layer": layer,
                                "layer_index": i,
                                "alpha": rng.random(),
                            }
                        )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("n_checkpoints", [1, 5, 20])
def test_per_layer_figure_wraps_and_stays_readable(tmp_path, n_checkpoints):
    path = tmp_path / "alpha.png"
    dpi = 40
    plots.plot_alpha_layers(_layers_table(n_checkpoints, n_folds=1), path, dpi=dpi)
    height, width = mpimg.imread(path).shape[:2]
    shown = min(n_checkpoints, plots.MAX_CHECKPOINTS)
    cols = min(shown, plots.PANELS_PER_ROW)
    rows = -(-shown // cols)
    panel_w, panel_h = width / cols, height / rows
    # every panel keeps the size of one 2.8 x 3.4 in facet, whatever the number of checkpoints
    assert panel_w >= 0.8 * 3.36 * dpi and panel_h >= 0.8 * 2.8 * dpi, (width, height)
    assert width <= (plots.PANELS_PER_ROW * 3.36 + 3.5) * dpi, width  # wraps instead of a strip
    assert 0.25 <= height / width <= 4, (width, height)


def test_many_checkpoints_are_thinned_and_said_so():
    assert plots.checkpoint_subset(list(range(1, 6))) == [1, 2, 3, 4, 5]
    sub = plots.checkpoint_subset(list(range(0, 31)), limit=12)
    assert len(sub) == 12 and sub[0] == 0 and sub[-1] == 30 and sub == sorted(set(sub))


def _captured(monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi: figures.append(fig))
    return figures


def test_legend_shows_how_many_runs_a_line_is(monkeypatch, tmp_path):
    figures = _captured(monkeypatch)
    table = _layers_table(2, n_folds=1)
    table = pd.concat([table, _layers_table(2, n_folds=3).query("activation == 'tanh'")])
    table = table.drop_duplicates(["run", "epoch", "layer"])
    plots.plot_alpha_layers(table, tmp_path / "a.png")
    texts = [t.get_text() for t in figures[0].legends[0].get_texts()]
    assert "relu (n=1, one run)" in texts and "tanh (n=3)" in texts


@pytest.mark.parametrize("n_classes", [10, 15, 30])
def test_confusion_numbers_never_overlap(monkeypatch, tmp_path, n_classes):
    figures = _captured(monkeypatch)
    rng = np.random.default_rng(1)
    t, p = np.meshgrid(range(n_classes), range(n_classes), indexing="ij")
    rows = []
    for act in ("relu",):
        counts = rng.integers(0, 50, size=t.size)
        rows.append(
            pd.DataFrame(
                {
                    "dataset": "d",
                    "model": "m",
                    "activation": act,
                    "run": f"d/m/{act}/ce/noise0/fold0",
                    "epoch": 3,
                    "true": t.ravel(),
                    "predicted": p.ravel(),
                    "count": counts,
                }
            )
        )
    plots.plot_confusion(pd.concat(rows), tmp_path / "c.png", dpi=110)
    fig = figures[0]
    fig.set_dpi(110)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        if not ax.get_visible() or not ax.has_data():
            continue
        boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text()]
        # many classes: smaller tick labels than the default 10 pt (one panel, one run here)
        if ax.get_xlabel() == "predicted":  # a matrix, not its colour bar
            sizes = {t.get_fontsize() for t in ax.get_xticklabels()}
            assert max(sizes) < 10 if n_classes > 10 else max(sizes) >= 10, sizes
        if n_classes > ANNOTATE_MAX_CLASSES:
            assert boxes == []  # colours only
            continue
        assert len(boxes) == n_classes * n_classes
        cell = ax.get_window_extent(renderer).width / n_classes
        for box in boxes:
            assert box.width < cell, (box.width, cell)
        xs = np.array([[b.x0, b.x1] for b in boxes])
        ys = np.array([[b.y0, b.y1] for b in boxes])
        for i in range(len(boxes)):
            overlap_x = (xs[i, 0] < xs[:, 1]) & (xs[:, 0] < xs[i, 1])
            overlap_y = (ys[i, 0] < ys[:, 1]) & (ys[:, 0] < ys[i, 1])
            overlap_x[i] = False
            assert not np.any(overlap_x & overlap_y), f"number {i} overlaps another"
    assert "n=1 run" in fig.axes[0].get_title()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # and it renders


def test_correlation_legend_has_headings(monkeypatch, tmp_path):
    from mfoml.analysis import runstats
    from mfoml.plots import studies

    figures = []
    monkeypatch.setattr(studies, "save_figure", lambda fig, path, dpi: figures.append(fig))
    rng = np.random.default_rng(2)
    points = pd.DataFrame(
        [
            {"experiment": "e", "dataset": "mnist1d", "model": "mlp-a", "activation": act,
             "loss": "ce", "noise": 0.0, "seed": 0, "fold": k, "run": f"{act}/fold{k}",
             "epoch": e, "alpha_last_inner": rng.random(), "alpha_depth_slope": rng.random(),
             "ncc_mismatch_penultimate": rng.random(), "accuracy": rng.random()}
            for act in ("relu", "tanh") for k in range(3) for e in (1, 4)
        ]
    )  # fmt: skip
    final = points[points["epoch"] == 4][["run", "accuracy"]]
    points = runstats.merge_final(points, final.rename(columns={"accuracy": "final_accuracy"}))
    corr = runstats.checkpoint_correlations(points, n_permutations=19, n_boot=20)
    studies.plot_correlation(points, corr, tmp_path / "x.png", dpi=40)
    legend = figures[0].legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[0] == "points (one per run), colour: activation"
    assert {"relu", "tanh"} <= set(texts)
    assert "bottom row, line colour: experiment" in texts
    assert "bottom row, line style: rho against" in texts
    bold = {t.get_text() for t in legend.get_texts() if t.get_fontweight() == "bold"}
    assert bold == {
        texts[0],
        "bottom row, line colour: experiment",
        "bottom row, line style: rho against",
    }


def test_confusion_matrices_have_their_models_class_count(monkeypatch):
    """A 10-class and a 2-class model in one figure: each matrix has its own size (the tables
    hold every true x predicted pair of a run, zeros included)."""
    figures = _captured(monkeypatch)
    rows = []
    for dataset, k in (("ten", 10), ("two", 2)):
        t, p = np.meshgrid(range(k), range(k), indexing="ij")
        rows.append(
            pd.DataFrame(
                {
                    "dataset": dataset,
                    "model": "m",
                    "activation": "relu",
                    "run": f"{dataset}/m/relu/ce/noise0/fold0",
                    "epoch": 3,
                    "true": t.ravel(),
                    "predicted": p.ravel(),
                    "count": np.where(t.ravel() == p.ravel(), 9, 1),
                }
            )
        )
    plots.plot_confusion(pd.concat(rows), "unused.png", dpi=60)
    panels = [ax for ax in figures[0].axes if ax.get_visible() and ax.has_data()]
    sizes = sorted(len([t for t in ax.texts if t.get_text()]) for ax in panels)
    assert sizes == [4, 100]  # 2 x 2 and 10 x 10 numbers
    for ax in panels:
        k = int(np.sqrt(len(ax.texts)))
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in range(k)]
