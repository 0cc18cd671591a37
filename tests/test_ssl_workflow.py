"""Whole-workflow test of the self-supervised track: config/tests/ssl_tiny.yaml end to end
(data, folds, train_ssl, activations, ssl_eval, ssl_aggregate, ssl_figures) with real training:
one VICReg run and one DINO run (multi-crop on the 8x8 digit images).
"""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from figure_checks import check_figures, drawn_panels, render
from workflow_utils import copy_run, copy_workflow, run_snakemake

CONFIG = "config/tests/ssl_tiny.yaml"
RUN = "digits/mlp-d2-w16/relu/vicreg/noise0/fold0"
DINO_RUN = "digits/mlp-d2-w16/relu/dino/noise0/fold0"
LAYERS = ["input", "block1", "block2", "proj1", "projector"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ssl_run(tmp_path_factory: pytest.TempPathFactory):
    wd = copy_workflow(tmp_path_factory.mktemp("ssl") / "wf")
    run_snakemake(wd, "--cores", "2", configfile=wd / CONFIG, check=True)
    return wd


def test_ssl_workflow_end_to_end(ssl_run):
    tables = ssl_run / "results" / "tables"
    layers = pd.read_csv(tables / "ssl_layers.csv")
    assert sorted(layers["epoch"].unique()) == [0, 2]
    assert set(layers["run"]) == {RUN, DINO_RUN} and set(layers["label_set"]) == {"class"}
    for run in (RUN, DINO_RUN):
        for epoch in (0, 2):
            part = layers[(layers["epoch"] == epoch) & (layers["run"] == run)]
            assert part.sort_values("layer_index")["layer"].tolist() == LAYERS
    for col in ("ncc_accuracy_train", "ncc_accuracy_test", "linear_probe_test", "knn_test"):
        assert layers[col].between(0, 1).all(), col
    assert (layers["nc1"] > 0).all() and layers["alpha"].notna().all()
    # no classifier: the NCC mismatch is not reported as a number, and the table says why
    assert layers["ncc_mismatch"].isna().all()
    assert layers["ncc_mismatch_status"].str.startswith("not_applicable").all()
    summary = pd.read_csv(tables / "ssl_layers_summary.csv")
    assert len(summary) == len(layers) and (summary["linear_probe_test_n"] == 1).all()
    assert summary["ncc_mismatch_status"].str.startswith("not_applicable").all()
    epochs = pd.read_csv(tables / "ssl_epochs.csv")
    vic, dino = (epochs[epochs["run"] == run] for run in (RUN, DINO_RUN))
    for part in (vic, dino):
        assert part["epoch"].tolist() == [1, 2] and np.isfinite(part["train_loss"]).all()
        assert np.isfinite(part["embedding_std"]).all()
    assert np.isfinite(vic[["invariance", "variance", "covariance"]].to_numpy()).all()
    # DINO: the teacher temperature warms up from 0.02 to 0.04 over the 2 epochs (linspace),
    # the EMA rate rises on the cosine from 0.99 towards 1, the teacher's entropy is logged
    assert dino["teacher_temp"].tolist() == pytest.approx([0.02, 0.04])
    assert ((dino["tau"] > 0.99) & (dino["tau"] <= 1)).all()
    assert dino["teacher_entropy"].between(0, np.log(64) + 1e-6).all()
    dino_log = (ssl_run / "logs" / "runs" / DINO_RUN / "train.log").read_text()
    assert "two global views + 2 local crops" in dino_log
    # the supervised track has no run here: none of its tables
    assert not (tables / "layers.csv").exists()
    img = mpimg.imread(ssl_run / "results" / "figures" / "ssl_ssl-tiny.png")
    assert img.ndim == 3 and img.shape[0] > 200
    run_dir = ssl_run / "results" / "runs" / RUN
    info = json.loads((run_dir / "checkpoints" / "run.json").read_text())
    assert info["self_supervised"] and info["representation_layer"] == "block2"
    assert info["probe_layers"] == LAYERS
    assert "train_ssl" in (ssl_run / "logs" / "runs" / RUN / "train.log").read_text()
    manifest = json.loads((run_dir / "activations" / "2" / "train" / "manifest.json").read_text())
    assert manifest["predictions"] is False
    # everything is up to date afterwards
    proc = run_snakemake(ssl_run, "-n", "--cores", "1", configfile=ssl_run / CONFIG, check=True)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_ssl_figure_is_readable(ssl_run, tmp_path):
    """The figure of rule ssl_figures, re-rendered from the run's fold summary through
    mfoml.plots.ssl, passes the reader's checks (tests/figure_checks.py): no empty panel, no
    legend over data, within the maximum size, not a placeholder; one panel per measure, both
    algorithms (and the initialisation) in the legend."""
    from mfoml.plots.ssl import SSL_PANEL_MEASURES, plot_ssl_layers

    summary = pd.read_csv(ssl_run / "results" / "tables" / "ssl_layers_summary.csv")
    (experiment,) = summary["experiment"].unique()
    dpi = 40
    figures = render({"ssl": lambda p: plot_ssl_layers(summary, experiment, p, dpi)}, tmp_path)
    check_figures(figures, dpi)
    assert (ssl_run / "results" / "figures" / f"ssl_{experiment}.png").is_file()
    fig = figures["ssl"][0]
    assert len(drawn_panels(fig)) == len(SSL_PANEL_MEASURES)
    assert all("n=1 run" in ax.get_title() for ax in fig.axes)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"dino", "vicreg", "initialisation"} <= set(legend)


def test_rerun_discards_what_a_killed_training_left(ssl_run, tmp_path):
    """train_ssl builds its checkpoints in ``.checkpoints.partial`` and renames them into place
    when complete; self-supervised training does not resume, so a rerun throws away a partial
    directory that a killed job left (here: a half-written checkpoint) and starts afresh."""
    wd = copy_run(ssl_run, tmp_path / "wd")
    run_dir = wd / "results" / "runs" / RUN
    stale = run_dir / ".checkpoints.partial"
    stale.mkdir()
    (stale / "epoch_0002.pt").write_bytes(b"half-written by a killed job")
    (stale / "left-over.txt").write_text("not a file of a complete run")
    target = f"results/runs/{RUN}/checkpoints"
    run_snakemake(
        wd, "--cores", "1", target, "--forcerun", "train_ssl", configfile=wd / CONFIG, check=True
    )
    assert not stale.exists()
    out = run_dir / "checkpoints"
    assert not (out / "left-over.txt").exists()
    before = ssl_run / "results" / "runs" / RUN / "checkpoints"
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in before.iterdir())
    # a real checkpoint, and the same metrics as the first run (same seed, CPU)
    assert (out / "epoch_0002.pt").read_bytes()[:2] == b"PK"  # torch's zip format
    first = pd.read_csv(before / "metrics.csv").drop(columns="seconds", errors="ignore")
    again = pd.read_csv(out / "metrics.csv").drop(columns="seconds", errors="ignore")
    pd.testing.assert_frame_equal(first, again)
    assert "discarding" in (wd / "logs" / "runs" / RUN / "train.log").read_text()
