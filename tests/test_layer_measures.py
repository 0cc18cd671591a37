"""The registry of per-layer measures (mfoml.layer_measures, issue 24): a registered measure
reaches layers_summary.csv, every column the jobs write is declared (so that none is left out of
the fold summaries), the measure modules take their columns from it, and the summarized columns
keep the order of layers.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mfoml.analysis import aggregate as agg
from mfoml.collapse.geometry import GEOMETRY_COLUMNS
from mfoml.collapse.geometry_table import geometry_table
from mfoml.collapse.table import layer_table
from mfoml.config import validate_config
from mfoml.layer_measures import (
    GEOMETRY,
    INTRINSIC_DIM,
    LAYER_DESCRIPTORS,
    LAYER_MEASURES,
    PROBE,
    LayerMeasure,
)
from mfoml.nets.activations import dump_activations
from mfoml.nets.dumps import open_activations
from mfoml.nets.layer_probe import probe_table
from mfoml.nets.models import build_model
from mfoml.similarity.merge import INTRINSIC_DIM_COLUMNS
from workflow_utils import REPO, TINY_CONFIG, completed_tiny_run

RUN = dict(zip(agg.VARIANT_COLUMNS, ["e", "d", "m", "relu", "ce", 0.0], strict=True))
KEYS = ["epoch", "layer", "layer_index"]


def _meta(fold: int) -> dict:
    return {**RUN, "seed": 0, "fold": fold, "run": f"d/m/relu/ce/noise0/fold{fold}"}


def _declared(table: str) -> tuple[set[str], set[str]]:
    """(every declared column, the summarized ones) of the measures kept in ``table``."""
    measures = [m for m in LAYER_MEASURES if m.table == table]
    return (
        {c for m in measures for c in m.columns},
        {c for m in measures for c in m.summary},
    )


def _check_declared(frame: pd.DataFrame, table: str) -> None:
    """Every column of ``frame`` (a per-run ``table``) is a descriptor or a declared measure
    column (summarized, or declared not to be), every summarized one holds numbers, and every
    declared column is there."""
    declared, summary = _declared(table)
    unknown = [c for c in frame.columns if c not in declared | LAYER_DESCRIPTORS]
    assert not unknown, f"{table}: columns no LayerMeasure declares: {unknown}"
    assert declared <= set(frame.columns), (
        f"{table}: declared, not written: {declared - set(frame.columns)}"
    )
    not_numbers = [
        c
        for c in summary
        if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
    ]
    assert not not_numbers, f"{table}: summarized columns that are not numbers: {not_numbers}"


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> Path:
    """An activations directory of one checkpoint (epoch 1) with train and test dumps of a
    small untrained MLP."""
    rng = np.random.default_rng(0)
    act = tmp_path_factory.mktemp("measures") / "activations"
    torch.manual_seed(0)
    model = build_model("mlp", (12,), 3, depth=2, width=8)
    for split, n in (("train", 90), ("test", 60)):
        y = rng.integers(0, 3, size=n)
        x = (rng.normal(size=(3, 12)) * 2)[y] + rng.normal(size=(n, 12))
        dump_activations(
            model, x.astype(np.float32), y, act / "1" / split, device="cpu", split=split, epoch=1
        )
    return act


def test_the_job_tables_declare_every_column(dumps):
    # ncc.csv as the ncc job writes it (workflow/scripts/ncc.py)
    train, test = open_activations(dumps / "1" / "train"), open_activations(dumps / "1" / "test")
    weight = train.classifier_weight()
    ncc = layer_table(
        train, test, classifier_weight=weight, penultimate_layer=train.penultimate_layer
    )
    geo = geometry_table(train, layers=list(ncc["layer"]), classifier_weight=weight, max_dim=64)
    ncc = ncc.merge(geo, on="layer", how="left", validate="one_to_one")
    ncc.insert(0, "epoch", 1)
    ncc["test_split"] = "test"
    _check_declared(ncc, "ncc.csv")
    # probe.csv as the probe job writes it, with the random-label baseline
    cfg = validate_config(yaml.safe_load((REPO / TINY_CONFIG).read_text()))["probe"]
    cfg = {**cfg, "splits": ["train", "test"], "max_samples": 60, "random_label_baseline": True}
    probe, _ = probe_table(dumps, cfg, n_jobs=1)
    assert len(probe) == 2 * len(train.layers)
    _check_declared(probe, "probe.csv")


@pytest.mark.slow
def test_the_tiny_run_tables_declare_every_column(tmp_path_factory):
    tiny = completed_tiny_run(tmp_path_factory.getbasetemp())
    runs = sorted(p.parent for p in (tiny / "results" / "runs").rglob("ncc.csv"))
    assert len(runs) == 3
    for run in runs:
        for table in ("ncc.csv", "probe.csv", "intrinsic_dim.csv"):
            _check_declared(pd.read_csv(run / table), table)


def _layers(measure: list[float]) -> pd.DataFrame:
    """The layers table of two folds whose NCC tables have an undeclared measure ``my_score``
    (values ``measure`` and 3 times them) with its status, and a probe of the ``test`` split."""
    runs, probe, ncc = [], {}, {}
    for fold, scale in ((0, 1.0), (1, 3.0)):
        meta = _meta(fold)
        runs.append(meta)
        base = {"epoch": 1, "layer": ["input", "hidden"], "layer_index": [0, 1]}
        probe[meta["run"]] = pd.concat(
            [
                pd.DataFrame({**base, "split": s, "alpha": [0.5 * scale, 1.0], "status": "ok"})
                for s in ("train", "test")
            ]
        )
        ncc[meta["run"]] = pd.DataFrame(
            {
                **base,
                "nc1": [2.0, 1.0],
                "my_score": [scale * v for v in measure],
                "my_status": "ok",
            }
        )
    return agg.layers_table(runs, probe, ncc)


def test_a_registered_measure_reaches_the_layers_summary():
    layers = _layers([1.0, 2.0])
    assert {"my_score", "my_status", "alpha_test", "alpha_status_test"} <= set(layers.columns)
    before = agg.summarize(layers, KEYS, agg.layer_summary_columns(layers.columns, ["test"]))
    assert "my_score_mean" not in before.columns
    # the probe's columns of another split are summarized too, its status never
    assert {"nc1_mean", "alpha_mean", "alpha_test_mean"} <= set(before.columns)
    assert not [c for c in before.columns if "status" in c]
    mine = LayerMeasure("mine", "ncc.csv", ("my_score", "my_status"), not_summarized=("my_status",))
    assert mine.summary == ("my_score",)
    cols = agg.layer_summary_columns(layers.columns, ["test"], [*LAYER_MEASURES, mine])
    after = agg.summarize(layers, KEYS, cols).set_index("layer")
    assert after.loc["input", "my_score_mean"] == pytest.approx(2.0)  # (1 + 3) / 2
    assert after.loc["hidden", "my_score_std"] == pytest.approx(np.sqrt(8.0))  # of 2 and 6
    assert after.loc["hidden", "my_score_n"] == 2
    assert "my_status_mean" not in after.columns
    # without the split, the probe's test columns are not summarized
    assert "alpha_test" not in agg.layer_summary_columns(layers.columns)


# The header of the tiny run's layers.csv and the columns its layers_summary.csv summarizes,
# written by the hand-kept lists that the registry replaced (the order must not change).
TINY_LAYERS = (
    "name,experiment,dataset,model,activation,loss,noise,seed,fold,run,epoch,layer,layer_index,"
    "dim,n_train,n_test,n_classes,n_classes_present,ncc_mismatch_train,ncc_mismatch_test,"
    "ncc_accuracy_train,ncc_accuracy_test,nc1,nc2_equinorm,nc2_equiangularity,"
    "nc2_mean_angle_dev,nc2_max_angle_dev,nc3,nc4,is_penultimate,collapse_status,cdnv,"
    "trace_within,trace_between,trace_ratio,etf_error_means,etf_error_classifier,"
    "self_duality_error,effective_rank,effective_rank_method,test_split,alpha,alpha_min,"
    "alpha_max,alpha_status,n_tau,n_wavelets,alpha_random,alpha_random_status,"
    "n_wavelets_random,alpha_analysis,alpha_min_analysis,alpha_max_analysis,"
    "alpha_status_analysis,n_tau_analysis,n_wavelets_analysis,alpha_random_analysis,"
    "alpha_random_status_analysis,n_wavelets_random_analysis,intrinsic_dim,"
    "intrinsic_dim_n_used,intrinsic_dim_duplicates,intrinsic_dim_status"
).split(",")
TINY_SUMMARIZED = (
    "ncc_mismatch_train,ncc_mismatch_test,ncc_accuracy_train,ncc_accuracy_test,nc1,"
    "nc2_equinorm,nc2_equiangularity,nc2_mean_angle_dev,nc2_max_angle_dev,nc3,nc4,cdnv,"
    "trace_within,trace_between,trace_ratio,etf_error_means,etf_error_classifier,"
    "self_duality_error,effective_rank,alpha,alpha_min,alpha_max,n_tau,n_wavelets,alpha_random,"
    "n_wavelets_random,alpha_analysis,alpha_min_analysis,alpha_max_analysis,n_tau_analysis,"
    "n_wavelets_analysis,alpha_random_analysis,n_wavelets_random_analysis,intrinsic_dim"
).split(",")


def test_the_summarized_columns_keep_their_order():
    got = agg.layer_summary_columns(TINY_LAYERS, ["analysis", "train"])
    assert got == TINY_SUMMARIZED
    # the order is that of layers.csv, whatever the order of the registry
    shuffled = agg.layer_summary_columns(TINY_LAYERS, ["analysis"], LAYER_MEASURES[::-1])
    assert shuffled == TINY_SUMMARIZED


def test_measure_modules_take_their_columns_from_the_registry():
    assert GEOMETRY_COLUMNS == list(GEOMETRY.columns)
    assert INTRINSIC_DIM_COLUMNS == list(INTRINSIC_DIM.columns)
    assert PROBE.per_split and "status" not in PROBE.summary
    names = [c for m in LAYER_MEASURES for c in m.columns if m.table != "probe.csv"]
    assert len(names) == len(set(names))  # no column declared by two measures of a table
    with pytest.raises(ValueError, match="not among its columns"):
        LayerMeasure("bad", "ncc.csv", ("a",), not_summarized=("b",))
