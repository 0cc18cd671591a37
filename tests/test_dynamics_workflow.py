"""The dynamics track in the workflow: configuration checks of the ``dynamics`` section (fast),
and the tiny configuration ``config/tests/dynamics_tiny.yaml`` end to end with every optional
dynamics rule on (full-batch gradient descent with the sharpness, per-checkpoint sharpness and
sensitivity, trajectory, interpolation within a run and between checkpoints), plus a
random-labels data-set variant built by the data rule."""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from figure_checks import check_figures, drawn_panels, render
from mfoml import config as C
from mfoml.config.dynamics import dynamics_params
from workflow_utils import REPO, copy_workflow, run_snakemake

TINY = REPO / "config" / "tests" / "dynamics_tiny.yaml"
RUN = "mnist1d/mlp-d1-w8/relu/ce/noise0/fold0"


def _cfg() -> dict:
    return yaml.safe_load(TINY.read_text())


def _error(cfg: dict) -> str:
    with pytest.raises(C.ConfigError) as info:
        C.validate_config(cfg)
    return str(info.value)


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


def test_tiny_config_validates_with_dynamics_defaults():
    cfg = C.validate_config(_cfg())
    assert cfg["dynamics"]["sharpness"]["method"] == "lanczos"
    assert cfg["tracking"] == {
        "enabled": False,
        "project": "mfoml",
        "entity": None,
        "mode": "offline",
        "dir": None,
        "tags": [],
    }
    assert cfg["ncc"]["geometry"] is True
    assert C.dataset_options(cfg, "mnist1d-randlabels")["corrupt"] == "random_labels"
    assert "corrupt" not in C.dataset_options(cfg, "mnist1d")  # plain sets: params unchanged


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (
            lambda c: c["dynamics"]["interpolation"]["pairs"][0].update(
                a="mnist1d/x/relu/ce/noise0/fold0"
            ),
            "config key 'dynamics.interpolation.pairs[0].a': 'mnist1d/x/relu/ce/noise0/fold0' is "
            "not a run of this configuration",
        ),
        (
            lambda c: c["dynamics"]["interpolation"]["pairs"][0].update(epoch_a=3),
            "config key 'dynamics.interpolation.pairs[0]': a and b are the same model",
        ),
        (
            lambda c: c["dynamics"]["interpolation"]["pairs"][0].update(epoch_b=7),
            "config key 'dynamics.interpolation.pairs[0].epoch_b': 7 is not a checkpoint",
        ),
        (
            lambda c: c["train"].update(checkpoints=[3]),
            "config key 'dynamics.trajectory.enabled': the weight trajectory needs at least 3",
        ),
        (
            lambda c: c["dynamics"].update(checkpoints=[2, 5]),
            "config key 'dynamics.checkpoints': epochs [5] are not checkpoints",
        ),
        (
            lambda c: c["dynamics"]["interpolation"].update(t_min=2.0, t_max=1.0),
            "config key 'dynamics.interpolation.t_max': must exceed t_min",
        ),
        (
            lambda c: c["data"]["variants"]["mnist1d-randlabels"].update(corrupt="noise"),
            "config key 'data.variants.mnist1d-randlabels.corrupt': 'noise' is not one of",
        ),
        (
            lambda c: c["dynamics"]["sharpness"].update(method="arnoldi"),
            "config key 'dynamics.sharpness.method': 'arnoldi' is not one of",
        ),
    ],
)
def test_bad_dynamics_settings_are_named(patch, expected):
    cfg = _cfg()
    patch(cfg)
    assert expected in _error(cfg)


def test_pairs_need_the_same_architecture_and_data_set():
    cfg = _cfg()
    cfg["models"]["mlp-d1-w9"] = {"arch": "mlp", "depth": 1, "width": 9}
    cfg["sweeps"].append(
        {"name": "wide", "datasets": ["mnist1d"], "models": ["mlp-d1-w9"], "folds": [0]}
    )
    cfg["dynamics"]["interpolation"]["pairs"][0]["b"] = "mnist1d/mlp-d1-w9/relu/ce/noise0/fold0"
    assert "the runs have different architectures" in _error(cfg)


def test_parameter_slices_rerun_only_what_changes():
    a = C.validate_config(_cfg())
    run = C.run_table(a)[0]
    b = copy.deepcopy(a)
    b["tracking"]["enabled"] = True  # read by the jobs directly: never a rerun
    b["dynamics"]["trajectory"]["grid"] = 7
    assert C.rule_params(a, "train", run) == C.rule_params(b, "train", run)
    assert C.rule_params(a, "ncc") == C.rule_params(b, "ncc")
    assert dynamics_params(a, "checkpoint", run) == dynamics_params(b, "checkpoint", run)
    assert dynamics_params(a, "trajectory", run) != dynamics_params(b, "trajectory", run)


# --------------------------------------------------------------------------------------------
# the workflow
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    wd = copy_workflow(tmp_path_factory.mktemp("dynamics") / "wd")
    wandb_home = wd.parent / "wandb-home"  # W&B's own settings and cache: never the user's
    configfile = wd / "config" / "tests" / "dynamics_tiny.yaml"
    cfg = yaml.safe_load(configfile.read_text())
    cfg["tracking"] = {"enabled": True}  # the real wandb package, offline (the default mode)
    configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_snakemake(
        wd,
        "--cores",  # an option first: the targets must not follow --configfile directly
        "2",
        "all",
        "resources/data/mnist1d-randlabels",
        configfile=configfile,
        env={
            "WANDB_SILENT": "true",
            "WANDB_CONFIG_DIR": str(wandb_home / "config"),
            "WANDB_CACHE_DIR": str(wandb_home / "cache"),
            "WANDB_DATA_DIR": str(wandb_home / "data"),
        },
        check=True,
    )
    return wd


@pytest.mark.slow
def test_training_records_grad_norms_sharpness_and_parameter_count(tiny):
    ckpt = tiny / "results" / "runs" / RUN / "checkpoints"
    m = pd.read_csv(ckpt / "metrics.csv")
    assert list(m["epoch"]) == [1, 2, 3]
    assert (m["grad_norm_max"] >= m["grad_norm_mean"] - 1e-12).all()
    assert (m["grad_norm_mean"] > 0).all()
    # full batch: one step per epoch, so mean = max
    np.testing.assert_allclose(m["grad_norm_mean"], m["grad_norm_max"], rtol=1e-12)
    assert (m["n_parameters"] == 40 * 8 + 8 + 2 * 8 + 8 * 10 + 10).all()
    assert m["sharpness"].notna().all() and (m["sharpness"] > 0).all()
    np.testing.assert_allclose(m["stability_threshold"], 2 / 0.05)
    assert len(np.load(ckpt / "split.npz")["train_idx"]) == 300  # train.subset


@pytest.mark.slow
def test_geometry_columns_in_the_layers_table(tiny):
    layers = pd.read_csv(tiny / "results" / "tables" / "layers.csv")
    block = layers[layers["layer"] == "block1"]
    for col in ("cdnv", "trace_ratio", "etf_error_means", "effective_rank", "self_duality_error"):
        assert np.isfinite(block[col]).all(), col
    assert layers.loc[layers["layer"] != "block1", "self_duality_error"].isna().all()
    assert (layers["effective_rank"] >= 1).all()
    assert (block["effective_rank"] <= 8 + 1e-9).all()  # at most the layer's width
    summary = pd.read_csv(tiny / "results" / "tables" / "layers_summary.csv")
    assert "cdnv_mean" in summary


@pytest.mark.slow
def test_optional_tables_and_figures(tiny):
    tables = tiny / "results" / "tables"
    ck = pd.read_csv(tables / "dynamics_checkpoints.csv")
    assert list(ck["epoch"]) == [1, 3] and (ck["run"] == RUN).all()
    assert np.isfinite(ck[["top_eigenvalue", "sensitivity_train", "sensitivity_test"]]).all().all()
    interp = pd.read_csv(tables / "dynamics_interpolation.csv")
    within = interp[interp["kind"] == "checkpoints"]
    assert sorted(set(zip(within["epoch_a"], within["epoch_b"], strict=True))) == [
        (0, 1),
        (1, 2),
        (2, 3),
    ]
    pair = interp[interp["kind"] == "runs"]
    assert len(pair) == 5 and set(pair["epoch_a"]) == {1} and set(pair["epoch_b"]) == {3}
    # checkpoint 1 appears as t = 1 of (0 -> 1), t = 0 of (1 -> 2) and t = 0 of the pair (1 -> 3):
    # the same weights with the same recomputed BatchNorm statistics give the same losses
    at1 = [
        within[(within["epoch_b"] == 1) & (within["t"] == 1.0)],
        within[(within["epoch_a"] == 1) & (within["t"] == 0.0)],
        pair[pair["t"] == 0.0],
    ]
    for frame in at1[1:]:
        np.testing.assert_allclose(frame["train_loss"].to_numpy(), at1[0]["train_loss"].to_numpy())
        np.testing.assert_allclose(frame["test_acc"].to_numpy(), at1[0]["test_acc"].to_numpy())
    path = pd.read_csv(tables / "dynamics_trajectory_path.csv")
    assert list(path["epoch"]) == [0, 1, 2, 3]
    ratio = path[["explained_variance_ratio_1", "explained_variance_ratio_2"]].iloc[0]
    assert 0 < ratio.sum() <= 1 + 1e-9
    np.testing.assert_allclose(path[["a", "b"]].iloc[-1], 0.0, atol=1e-9)  # origin: the last
    surface = pd.read_csv(tables / "dynamics_trajectory_surface.csv")
    assert len(surface) == 16 and np.isfinite(surface["train_loss"]).all()
    for name in (
        "gradnorm_epochs",
        "error_params",
        "geometry_layers",
        "sharpness_epochs",
        "dynamics_checkpoints",
        "interpolation",
        "trajectory",
    ):
        png = tiny / "results" / "figures" / f"{name}.png"
        assert png.stat().st_size > 2000, name


@pytest.mark.slow
def test_dynamics_figures_are_readable(tiny, tmp_path):
    """The optional figures of rule dynamics_figures (sharpness, per-checkpoint measures,
    interpolation, trajectory), re-rendered from the run's tables through mfoml.plots.dynamics,
    pass the reader's checks (tests/figure_checks.py): no empty panel, no legend over data,
    within the maximum size, not a placeholder. (The always-on ones: tests/test_figures.py.)"""
    from mfoml.plots import dynamics as plots

    tables = tiny / "results" / "tables"

    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(tables / f"{name}.csv")

    epochs, interp, dpi = read("epochs"), read("dynamics_interpolation"), 40
    surface, path = read("dynamics_trajectory_surface"), read("dynamics_trajectory_path")
    jobs = {
        "sharpness_epochs": lambda p: plots.plot_sharpness_epochs(epochs, p, dpi),
        "dynamics_checkpoints": lambda p: plots.plot_checkpoint_measures(
            read("dynamics_checkpoints"), p, dpi
        ),
        "interpolation": lambda p: plots.plot_interpolation(interp, p, dpi),
        "trajectory": lambda p: plots.plot_trajectory(surface, path, p, dpi),
    }
    figures = render(jobs, tmp_path)
    check_figures(figures, dpi)
    for name in jobs:  # and the rule drew each one
        assert (tiny / "results" / "figures" / f"{name}.png").is_file(), name
    # one interpolation panel per (kind, data set); the trajectory's path is the checkpoints
    groups = interp.drop_duplicates(["kind", "dataset"])
    assert len(drawn_panels(figures["interpolation"][0])) == len(groups)
    (ax,) = [a for a in figures["trajectory"][0].axes if a.get_lines()]
    assert len(ax.get_lines()[0].get_xdata()) == len(path)


@pytest.mark.slow
def test_random_labels_variant_keeps_inputs_and_draws_labels(tiny):
    from mfoml.data.store import load_dataset

    plain = load_dataset(tiny / "resources" / "data" / "mnist1d")
    corrupt = load_dataset(tiny / "resources" / "data" / "mnist1d-randlabels")
    src = np.load(tiny / "resources" / "data" / "mnist1d-randlabels" / "train_source_index.npy")
    np.testing.assert_array_equal(corrupt.x_train, plain.x_train[src])
    np.testing.assert_array_equal(corrupt.y_test, plain.y_test)
    agree = float(np.mean(corrupt.y_train == plain.y_train[src]))
    assert agree < 0.3  # ~1/10 by chance; per_class_cap 20 kept every label of its class
    assert corrupt.meta["corruption"]["kind"] == "random_labels"


def _wandb_records(run_dir: Path) -> list:
    """The protobuf records of an offline W&B run (``run-<id>.wandb``).

    The file is a LevelDB-style log (W&B's ``datastore`` format): a 7-byte file header, then
    32 KiB blocks of chunks, each with a 7-byte header (CRC32 ``<I``, length ``<H``, type ``B``:
    1 full, 2 first, 3 middle, 4 last). wandb 0.31 no longer ships a reader, hence these lines.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    block, pos, chunks, pending = 32768, 7, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left - 7
            continue
        chunk, pos = data[pos : pos + length], pos + length
        if kind in (1, 2):
            pending = chunk
        else:
            pending += chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            chunks.append(record)
    return chunks


def _history(records: list) -> list[dict]:
    rows = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            rows.append(
                {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
            )
    return rows


@pytest.mark.slow
def test_wandb_offline_runs_hold_the_epoch_metrics_and_layer_tables(tiny):
    """tracking.enabled with the real wandb package: offline runs under logs/wandb, no network,
    one per training job (every metrics.csv row, same values) and one per NCC job (its table)."""
    runs = {}
    for run_dir in sorted((tiny / "logs" / "wandb" / "wandb").glob("offline-run-*")):
        records = _wandb_records(run_dir)
        (info,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        runs[(info.job_type, info.display_name)] = (run_dir, records)
        assert info.project == "mfoml" and info.run_group == "dynamics-tiny"
    assert set(runs) == {("train", RUN), ("ncc", RUN)}

    metrics = pd.read_csv(tiny / "results" / "runs" / RUN / "checkpoints" / "metrics.csv")
    history = _history(runs[("train", RUN)][1])
    assert [h["_step"] for h in history] == list(metrics["epoch"])
    for h, (_, row) in zip(history, metrics.iterrows(), strict=True):
        for col in ("train_loss", "test_acc", "grad_norm_mean", "sharpness"):
            assert h[col] == pytest.approx(row[col], rel=1e-6), col

    ncc_dir, ncc_records = runs[("ncc", RUN)]
    (ref,) = [h for h in _history(ncc_records) if "ncc_layers/path" in h]
    logged = json.loads((ncc_dir / "files" / ref["ncc_layers/path"]).read_text())
    table = pd.read_csv(tiny / "results" / "runs" / RUN / "ncc.csv")
    assert ref["ncc_layers/nrows"] == len(table) == len(logged["data"])
    assert logged["columns"] == list(table.columns)
