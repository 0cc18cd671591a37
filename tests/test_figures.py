"""Readable figures: per-layer figures lay out the cells that exist, within a stated maximum
size for any number of checkpoints; n per panel; undefined values explained, not drawn; bands in
log space on log axes; confusion matrices never overlap their numbers; legends have headings and
never cover data. Every figure of the tiny run and of default-like tables is opened through
matplotlib (the plotting functions return their figures) and checked."""

from __future__ import annotations

import io

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from figure_checks import check_figure, check_figures, drawn_panels, render
from figure_tables import default_like_tables
from mfoml.plots import grid
from mfoml.plots import pipeline as plots
from mfoml.plots.common import ANNOTATE_MAX_CLASSES
from workflow_utils import completed_tiny_run

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
    fig = plots.plot_alpha_layers(_layers_table(n_checkpoints, n_folds=1), path, dpi=dpi)
    height, width = mpimg.imread(path).shape[:2]
    shown = min(n_checkpoints, grid.MAX_CHECKPOINTS)
    panels = [ax for ax in fig.axes if ax.has_data()]
    assert len(panels) == shown  # one panel per existing checkpoint, no empty ones
    rows, cols = grid.grid_shape(shown)
    assert rows <= grid.MAX_ROWS
    # every panel keeps at least 80 % of its stated size, whatever the number of checkpoints
    assert width / cols >= 0.8 * grid.PANEL_SIZE[0] * dpi, (width, cols)
    assert height / rows >= 0.8 * grid.PANEL_SIZE[1] * dpi * 0.75, (height, rows)
    assert width <= grid.MAX_FIG_WIDTH_IN * dpi and height <= grid.MAX_FIG_HEIGHT_IN * dpi


def test_many_checkpoints_are_thinned_and_said_so(tmp_path):
    assert plots.checkpoint_subset(list(range(1, 6))) == [1, 2, 3, 4, 5]
    sub = plots.checkpoint_subset(list(range(0, 31)), limit=12)
    assert len(sub) == 12 and sub[0] == 0 and sub[-1] == 30 and sub == sorted(set(sub))
    fig = plots.plot_alpha_layers(_layers_table(20, n_folds=1), tmp_path / "a.png", dpi=30)
    note = fig._supxlabel.get_text()  # the note under the panels
    assert "12 of 20" in note and "evenly spaced" in note, note


def _captured(monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi: figures.append(fig))
    return figures


def test_panel_title_shows_how_many_runs_its_lines_are(monkeypatch, tmp_path):
    """n is counted per panel, never across panels: one fold of relu, three of tanh here."""
    figures = _captured(monkeypatch)
    table = _layers_table(2, n_folds=1)
    table = pd.concat([table, _layers_table(2, n_folds=3).query("activation == 'tanh'")])
    table = table.drop_duplicates(["run", "epoch", "layer"])
    plots.plot_alpha_layers(table, tmp_path / "a.png")
    titles = [ax.get_title() for ax in figures[0].axes if ax.has_data()]
    assert len(titles) == 2 and all("n: relu 1, tanh 3" in t for t in titles), titles
    texts = [t.get_text() for t in figures[0].legends[0].get_texts()]
    assert texts == ["relu", "tanh"]


def test_log_band_is_computed_in_log_space():
    """NC1 of three runs 1e-4, 1e-2, 1: the band is exp(mean(log) +- sd(log)), positive,
    where a linear mean - sd would be below zero."""
    frame = pd.DataFrame({"x": [0, 0, 0], "y": [1e-4, 1e-2, 1.0], "run": ["a", "b", "c"]})
    out = grid.summarize(frame, "x", "y", log=True).iloc[0]
    logs = np.log([1e-4, 1e-2, 1.0])
    sd = np.sqrt(((logs - logs.mean()) ** 2).sum() / 2)  # ddof 1
    assert out["center"] == pytest.approx(1e-2)  # the geometric mean
    assert out["low"] == pytest.approx(np.exp(logs.mean() - sd))
    assert out["high"] == pytest.approx(np.exp(logs.mean() + sd))
    assert out["low"] > 0 and out["n"] == 3
    linear = grid.summarize(frame, "x", "y").iloc[0]
    assert linear["low"] < 0  # what a linear band on the log axis would have drawn


def test_undefined_alpha_is_explained_not_drawn(monkeypatch, tmp_path):
    figures = _captured(monkeypatch)
    table = _layers_table(1, n_folds=1)
    undefined = table["layer"].isin(["block1", "block2"])
    table.loc[undefined, "alpha"] = np.nan
    table["alpha_status"] = np.where(undefined, "empty_set_for_all_eps", "ok")
    table["n_wavelets"] = np.where(undefined, 2, 50)
    plots.plot_alpha_layers(table, tmp_path / "a.png")
    (ax,) = [ax for ax in figures[0].axes if ax.has_data()]
    assert "alpha undefined at block1, block2" in ax.get_title().replace("\n", " ")
    assert "root split separates the classes" in ax.get_title().replace("\n", " ")
    for line in ax.get_lines():  # the gap is not bridged: NaN at the undefined layers
        y = np.asarray(line.get_ydata(), dtype=float)
        assert np.isnan(y[1:3]).all() and np.isfinite(y[[0, 3]]).all()


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
            for act in ("relu", "tanh", "gelu", "sigmoid") for k in range(3) for e in (1, 4)
        ]
    )  # fmt: skip
    final = points[points["epoch"] == 4][["run", "accuracy"]]
    points = runstats.merge_final(points, final.rename(columns={"accuracy": "final_accuracy"}))
    corr = runstats.checkpoint_correlations(points, n_permutations=19, n_boot=20)
    studies.plot_correlation(points, corr, tmp_path / "x.png", dpi=40)
    figures.append(studies.plot_correlation(points, corr, tmp_path / "x.png", dpi=40))
    legend = figures[-1].legends[0]
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


def test_confusion_matrices_have_their_models_class_count(monkeypatch, tmp_path):
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
    plots.plot_confusion(pd.concat(rows), tmp_path / "c.png", dpi=60)
    panels = [ax for ax in figures[0].axes if ax.get_visible() and ax.has_data()]
    sizes = sorted(len([t for t in ax.texts if t.get_text()]) for ax in panels)
    assert sizes == [4, 100]  # 2 x 2 and 10 x 10 numbers
    for ax in panels:
        k = int(np.sqrt(len(ax.texts)))
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in range(k)]


# --- every figure of the tiny and the default-like runs -------------------------------------


def render_all(tables: dict, out, dpi: int) -> dict:
    """Every figure of the figures, dynamics_figures (always-on) and ssl_figures rules from
    ``tables``: ``{name: (figure, path)}``."""
    from mfoml.plots import dynamics, ssl, studies

    layers, epochs = tables["layers"], tables["epochs"]
    jobs = {
        "alpha_layers": lambda p: plots.plot_alpha_layers(layers, p, dpi),
        "ncc_layers": lambda p: plots.plot_ncc_layers(layers, p, dpi),
        "collapse_layers": lambda p: plots.plot_collapse_layers(layers, p, dpi),
        "accuracy_epochs": lambda p: plots.plot_accuracy_epochs(epochs, p, dpi),
        "confusion": lambda p: plots.plot_confusion(tables["confusion"], p, dpi),
        "correlation": lambda p: studies.plot_correlation(
            tables["correlation_points"], tables["correlation"], p, dpi
        ),
        "noise_alpha": lambda p: studies.plot_noise_alpha(tables["noise_alpha"], p, dpi),
        "gradnorm_epochs": lambda p: dynamics.plot_gradnorm_epochs(epochs, p, dpi),
        "error_params": lambda p: dynamics.plot_error_params(epochs, p, dpi),
        "geometry_layers": lambda p: dynamics.plot_geometry_layers(layers, p, dpi),
    }
    summary = tables.get("ssl_layers_summary")
    if summary is not None:
        for exp in summary["experiment"].unique():
            jobs[f"ssl_{exp}"] = lambda p, e=exp: ssl.plot_ssl_layers(summary, e, p, dpi)
    return render(jobs, out)


def _all_text(fig) -> str:
    texts = [t.get_text() for t in fig.texts]
    texts += [ax.get_title() for ax in fig.axes]
    for label in (fig._suptitle, fig._supxlabel):  # suptitle and the footnote
        if label is not None:
            texts.append(label.get_text())
    return " ".join(texts).replace("\n", " ")


def test_every_figure_of_a_default_like_run(tmp_path):
    """The default run's structure (tests/figure_tables.py): models with different checkpoints,
    a 2-class text study with undefined alpha, an experiment with too few variants."""
    dpi = 40
    figs = render_all(default_like_tables(), tmp_path, dpi)
    check_figures(figs, dpi)
    alpha = figs["alpha_layers"][0]
    panels = [ax for ax in alpha.axes if ax.has_data()]
    # the cells that exist: 2 models x 3 checkpoints + 2 text models x 2, not 4 x 4
    assert len(panels) == 10
    mnist = [ax.get_title() for ax in panels if "mnist1d" in ax.get_title()]
    text = [ax.get_title() for ax in panels if "textorder" in ax.get_title()]
    assert all("n=3 runs per line" in t for t in mnist) and all("n=1 run" in t for t in text)
    pos = " ".join(t for t in text if "enc-d1-pos" in t).replace("\n", " ")
    assert "alpha undefined at block1, pool" in pos and "root split separates the classes" in pos
    geometry = figs["geometry_layers"][0]
    etf = [ax for ax in geometry.axes if "ETF" in ax.get_ylabel()]
    assert etf and all("mnist1d" in ax.get_title() for ax in etf)  # not at 2 classes
    assert "left out for textorder-small / enc-d1-pos" in _all_text(geometry)
    correlation = figs["correlation"][0]
    assert "text-order-positional" not in " ".join(ax.get_title() for ax in correlation.axes)
    assert "Left out (too few variants): text-order-positional" in _all_text(correlation)
    ssl = figs["ssl_ssl-mnist1d-small"][0]
    width, height = ssl.get_size_inches()
    assert width > 2 * height  # wide, not tall


def test_intrinsic_dim_of_a_default_like_run(tmp_path):
    """The default run's models have different checkpoints (MNIST-1D 1, 4, 12; text 1, 3): one
    panel per (data set / model, checkpoint) that exists, never an empty cell, n per panel;
    a layer without a value is a gap named in its panel's title."""
    from mfoml.plots import lenses

    layers = default_like_tables()["layers"]
    layers["intrinsic_dim"] = 2.0 + layers["layer_index"] + layers["fold"]
    layers.loc[layers["model"] == "enc-d1-pos", "intrinsic_dim"] = np.nan
    layers.loc[(layers["model"] == "enc-d1-nopos") & (layers["layer"] == "pool"),
               "intrinsic_dim"] = np.nan  # fmt: skip
    keys = ["experiment", "dataset", "model", "activation", "loss", "noise", "seed", "epoch",
            "layer", "layer_index"]  # fmt: skip
    summary = layers.groupby(keys, as_index=False).agg(
        intrinsic_dim_mean=("intrinsic_dim", "mean"),
        intrinsic_dim_std=("intrinsic_dim", "std"),
        intrinsic_dim_n=("intrinsic_dim", "count"),
    )
    dpi = 40
    figures = render({"intrinsic_dim": lambda p: lenses.plot_intrinsic_dim(summary, p, dpi)},
                     tmp_path)  # fmt: skip
    check_figures(figures, dpi)
    panels = drawn_panels(figures["intrinsic_dim"][0])
    assert len(panels) == 2 * 3 + 2  # enc-d1-pos has no value at all: no panel
    titles = [ax.get_title().replace("\n", " ") for ax in panels]
    assert sum("n=3 runs per line" in t for t in titles) == 6
    text = [t for t in titles if "enc-d1-nopos" in t]
    assert len(text) == 2 and all("n=1 run" in t and "undefined at pool" in t for t in text)
    note = _all_text(figures["intrinsic_dim"][0])
    assert "textorder-small / enc-d1-pos, epoch 1, 3: not drawn" in note


@pytest.mark.parametrize("n_checkpoints", [1, 5, 20])
def test_figure_size_stays_under_the_maximum(tmp_path, n_checkpoints):
    """With 1, 5 and 20 checkpoints per MNIST-1D run the per-layer figures stay within
    MAX_FIG_WIDTH_IN x MAX_FIG_HEIGHT_IN and keep one panel per drawn cell."""
    dpi = 30
    tables = default_like_tables(tuple(range(1, n_checkpoints + 1)))
    for plot in (plots.plot_alpha_layers, plots.plot_collapse_layers):
        path = tmp_path / f"{plot.__name__}.png"
        fig = plot(tables["layers"], path, dpi)
        check_figure(fig, path, dpi)
        assert len([ax for ax in fig.axes if ax.has_data()]) <= grid.MAX_PANELS


@pytest.mark.slow
def test_every_figure_of_the_tiny_run(tmp_path_factory, tmp_path):
    tiny = completed_tiny_run(tmp_path_factory.getbasetemp())
    tables = {
        name: pd.read_csv(tiny / "results" / "tables" / f"{name}.csv")
        for name in ("layers", "epochs", "confusion", "correlation_points", "correlation",
                     "noise_alpha")
    }  # fmt: skip
    dpi = 40
    # correlation: 3 runs are too few variants for any statistic (a placeholder)
    check_figures(render_all(tables, tmp_path, dpi), dpi, placeholders={"correlation"})
    for name in ("alpha_layers", "ncc_layers", "collapse_layers"):
        page = tiny / "results" / "figures" / f"{name}.png"
        assert page.is_file()
    html = (tiny / "results" / "tables" / "html" / "correlation.html").read_text()
    assert "<table>" in html and "</tr>" in html


def test_table_page_is_an_html_table(tmp_path):
    from mfoml.plots.html import table_html, write_table_html

    frame = pd.DataFrame({"experiment": ["a", "b"], "rho": [0.123456, np.nan], "n": [3, 4]})
    csv = tmp_path / "t.csv"
    frame.to_csv(csv, index=False)
    write_table_html(csv, tmp_path / "t.html")
    page = (tmp_path / "t.html").read_text()
    assert page.count("<tr>") == 3 and '<th class="num">rho</th>' in page
    assert ">0.1235<" in page and "2 rows x 3 columns" in page
    assert "<script" not in table_html(pd.DataFrame({"x": ["<script>"]}), "t")
