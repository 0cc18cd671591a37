"""The layer lenses in the workflow (workflow/rules/similarity.smk): their configuration keys
and documentation, the experiment file, a clear error before any job, the tables and columns
of the tiny run (on by default), and a real UMAP picture (umap-learn, the `lenses` extra)."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import yaml
from figure_checks import check_figures, drawn_panels, render
from mfoml.config import ConfigError, run_table, validate_config
from workflow_utils import REPO, TINY_CONFIG, completed_tiny_run, run_snakemake

SCHEMAS = ("similarity", "intrinsic_dim", "embedding")
RUNS = [
    "mnist1d/mlp-d2-w16/relu/ce/noise0/fold0",
    "mnist1d/mlp-d2-w16/tanh/ce/noise0/fold0",
    "mnist1d-small/mlp-d2-w16-tl/relu/svsl-l1e-3/noise20/fold0",
]
LAYERS = ["input", "block1", "block2", "logits"]


def test_every_lens_key_is_in_the_schema_and_documented():
    readme = (REPO / "config" / "README.md").read_text()
    main = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
    for name in SCHEMAS:
        assert main["properties"][name]["$ref"] == f"schema/{name}.schema.yaml"
        schema = yaml.safe_load((REPO / "config" / "schema" / f"{name}.schema.yaml").read_text())
        keys = [f"{name}.{k}" for k in schema["properties"]]
        assert len(keys) >= 5
        missing = [k for k in [name, *keys] if f"`{k}`" not in readme]
        assert not missing, f"not documented in config/README.md: {missing}"


def test_defaults_and_the_experiment_file():
    cfg = yaml.safe_load((REPO / TINY_CONFIG).read_text())
    validate_config(cfg)
    assert cfg["similarity"]["enabled"] and cfg["intrinsic_dim"]["enabled"]
    assert not cfg["embedding"]["enabled"]  # umap-learn's cost keeps it out of the default run
    assert cfg["embedding"]["max_samples"] == 2000
    exp = yaml.safe_load((REPO / "config" / "experiments" / "layer-similarity.yaml").read_text())
    validate_config(exp)
    assert exp["embedding"]["enabled"] and exp["similarity"]["across_runs"]
    models = {run.model for run in run_table(exp)}
    assert models == {"resnet18", "resnet18-nores"}
    bad = yaml.safe_load((REPO / TINY_CONFIG).read_text())
    bad["intrinsic_dim"] = {"discard": 1.0}
    with pytest.raises(ConfigError, match="config key 'intrinsic_dim.discard'"):
        validate_config(bad)
    header = (REPO / "config" / "experiments" / "layer-similarity.yaml").read_text()
    assert "Measured" in header.split("\nname:")[0]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"similarity": {"split": "heldout"}},
            "config key 'similarity.split': 'heldout' is not dumped",
        ),
        (
            {"embedding": {"enabled": True, "epochs": [7]}},
            "config key 'embedding.epochs': [7] are not checkpoints of run",
        ),
    ],
)
def test_bad_lens_config_stops_before_any_job(tmp_path, patch, message):
    cfg = yaml.safe_load((REPO / TINY_CONFIG).read_text())
    cfg.update(patch)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, "-n", configfile=path, snakefile=REPO / "Snakefile")
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_tiny_run_has_the_lens_tables_columns_and_figures(tmp_path_factory):
    tiny = completed_tiny_run(tmp_path_factory.getbasetemp())
    tables = tiny / "results" / "tables"
    layers = pd.read_csv(tables / "layers.csv")
    assert layers["intrinsic_dim"].notna().all() and (layers["intrinsic_dim_status"] == "ok").all()
    assert (layers["intrinsic_dim"] > 0).all()
    # the input layer is the same at every checkpoint: the same dimension
    inputs = layers[layers["layer"] == "input"].groupby("run")["intrinsic_dim"].nunique()
    assert (inputs == 1).all()
    # a layer's dimension cannot exceed its width by much (finite-sample noise aside)
    assert (layers["intrinsic_dim"] <= 1.5 * layers["dim"]).all()
    summary = pd.read_csv(tables / "layers_summary.csv")
    assert {"intrinsic_dim_mean", "intrinsic_dim_std", "intrinsic_dim_n"} <= set(summary.columns)
    for run in RUNS:
        cka = pd.read_csv(tiny / "results" / "runs" / run / "cka.csv")
        lay = cka[cka["kind"] == "layers"]
        assert len(lay) == 2 * len(LAYERS) ** 2  # 2 checkpoints, every pair of layers
        assert np.allclose(lay.loc[lay["layer_a"] == lay["layer_b"], "cka"], 1.0)
        assert lay["cka"].between(-0.1, 1.0 + 1e-9).all()
        ck = cka[(cka["kind"] == "checkpoints") & (cka["layer_a"] == "input")]
        assert np.allclose(ck["cka"], 1.0)  # the input does not train
        dumped = json.loads(
            (
                tiny / "results" / "runs" / run / "activations" / "1" / "train" / "manifest.json"
            ).read_text()
        )["n_samples"]
        assert (cka["n_samples"] == min(500, dumped)).all()  # similarity.max_samples
    by_layers = pd.read_csv(tables / "cka_layers_summary.csv")
    assert {"cka_mean", "cka_std", "cka_n"} <= set(by_layers.columns)
    assert (by_layers["cka_n"] == 1).all()  # one fold per variant in the tiny run
    assert len(pd.read_csv(tables / "cka_checkpoints_summary.csv")) == 3 * len(LAYERS) * 4
    # relu and tanh are separate sweeps: no pair of runs shares a sweep
    assert pd.read_csv(tables / "cka_runs.csv").empty
    for name in ("cka_layers", "cka_checkpoints", "cka_runs", "intrinsic_dim"):
        img = mpimg.imread(tiny / "results" / "figures" / f"{name}.png")
        assert img.ndim == 3 and float(np.std(img)) > 0, name


def _pairs_summary() -> pd.DataFrame:
    """A ``cka_runs_summary`` table (the tiny run has no two runs in one sweep): three
    activations of one model compared pairwise, CKA undefined at the logits of relu vs gelu."""
    rng = np.random.default_rng(0)
    rows = []
    for a, b in (("relu", "tanh"), ("relu", "gelu"), ("tanh", "gelu")):
        for i, layer in enumerate(LAYERS):
            rows.append(
                {
                    "experiment": "acts", "dataset": "mnist1d", "seed": 0,
                    "model_a": "mlp-d2-w16", "activation_a": a, "loss_a": "ce", "noise_a": 0.0,
                    "model_b": "mlp-d2-w16", "activation_b": b, "loss_b": "ce", "noise_b": 0.0,
                    "epoch": 2, "layer": layer, "layer_index_a": i, "layer_index_b": i,
                    "cka_mean": np.nan if (a, b, layer) == ("relu", "gelu", "logits")
                    else rng.random(),
                    "cka_std": 0.01, "cka_n": 3,
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_lens_figures_of_the_tiny_run_are_readable(tmp_path_factory, tmp_path):
    """Every figure of rule lenses_figures, re-rendered from the tiny run's tables through
    mfoml.plots.lenses, passes the reader's checks (tests/figure_checks.py): no empty panel,
    no legend over data, within the maximum size, not a placeholder (cka_runs is one in the
    tiny run, which has no two runs in one sweep; it is drawn from a small table as well)."""
    from mfoml.plots import lenses

    tiny = completed_tiny_run(tmp_path_factory.getbasetemp())
    tables = tiny / "results" / "tables"

    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(tables / f"{name}.csv")

    dpi = 40
    jobs = {
        "cka_layers": lambda p: lenses.plot_cka_layers(read("cka_layers_summary"), p, dpi),
        "cka_checkpoints": lambda p: lenses.plot_cka_checkpoints(
            read("cka_checkpoints_summary"), p, dpi
        ),
        "cka_runs": lambda p: lenses.plot_cka_runs(read("cka_runs_summary"), p, dpi),
        "intrinsic_dim": lambda p: lenses.plot_intrinsic_dim(read("layers_summary"), p, dpi),
        "cka_runs_of_pairs": lambda p: lenses.plot_cka_runs(_pairs_summary(), p, dpi),
    }
    figures = render(jobs, tmp_path)
    check_figures(figures, dpi, placeholders={"cka_runs"})
    for name in ("cka_layers", "cka_checkpoints", "cka_runs", "intrinsic_dim"):
        assert (tiny / "results" / "figures" / f"{name}.png").is_file(), name
    why = " ".join(t.get_text() for t in figures["cka_runs"][0].texts)
    assert "no two runs of one sweep" in why
    # one panel per (data set / model, checkpoint) with a value; every variant in the legend
    summary = read("layers_summary").dropna(subset=["intrinsic_dim_mean"])
    dim = figures["intrinsic_dim"][0]
    assert len(drawn_panels(dim)) == len(summary.groupby(["dataset", "model", "epoch"]))
    legend = {t.get_text() for t in dim.legends[0].get_texts()}
    assert len(legend) == len(summary.groupby(["activation", "loss", "noise"]))
    assert all("n=1 run" in ax.get_title() for ax in drawn_panels(dim))
    pairs = figures["cka_runs_of_pairs"][0].axes[0]
    assert [t.get_text() for t in pairs.texts].count("undefined") == 1


@pytest.mark.slow
def test_umap_embedding_is_seeded_and_drawn(tmp_path):
    from mfoml.plots.lenses import plot_embedding
    from mfoml.similarity.embedding import umap_embedding

    rng = np.random.default_rng(0)
    centers = np.zeros((3, 20))
    centers[np.arange(3), np.arange(3)] = 12.0
    labels = np.repeat(np.arange(3), 50)
    x = (centers[labels] + rng.standard_normal((150, 20))).astype(np.float16)
    a = umap_embedding(x, n_neighbors=10, seed=3)
    b = umap_embedding(x, n_neighbors=10, seed=3)
    assert a.shape == (150, 2) and np.array_equal(a, b)  # reproducible on a CPU
    # three well separated clusters stay separated: each point's nearest class centroid is its own
    means = np.stack([a[labels == c].mean(axis=0) for c in range(3)])
    nearest = np.argmin(((a[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == labels).mean() > 0.95
    path = tmp_path / "embedding.png"
    fig = plot_embedding({(1, "h"): a, (2, "h"): b}, labels, path, 60, title="t")
    img = mpimg.imread(path)
    assert img.ndim == 3 and float(np.std(img)) > 0
    check_figures({"embedding": (fig, path)}, 60)
    assert len(drawn_panels(fig)) == 2
