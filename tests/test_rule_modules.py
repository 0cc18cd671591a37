"""The logic behind the thin rule scripts (issue 24): the aggregate rule's checkpoint tables and
summaries (mfoml.analysis.aggregate_tables), the stacked per-run tables of dynamics_tables, the
probe settings shared by probe and ssl_eval (mfoml.nets.layer_probe, mfoml.nets.ssl_eval), the
split plan of the activations rule (mfoml.nets.dump_splits) and the CKA tables of
similarity_tables (mfoml.similarity.cka_summary). The whole rules run in tests/test_workflow.py."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from mfoml.analysis.aggregate import RUN_COLUMNS, stack_run_tables
from mfoml.analysis.aggregate_tables import checkpoint_tables, epoch_summary_columns
from mfoml.config import validate_config
from mfoml.nets.dump_splits import plan_splits, subsample_splits
from mfoml.nets.layer_probe import GRID_KEYS, forest_settings, probe_dump, probe_settings
from mfoml.nets.ssl_eval import ALPHA_COLUMNS, add_alpha
from mfoml.similarity.cka_summary import PAIR_OWN, cross_run_tables, run_cka_tables
from mfoml.similarity.tables import CKA_COLUMNS
from workflow_utils import REPO, TINY_CONFIG


def _meta(run: str, fold: int = 0) -> dict:
    return {
        "experiment": "e",
        "dataset": "d",
        "model": run,
        "activation": "relu",
        "loss": "ce",
        "noise": 0.0,
        "seed": 0,
        "fold": fold,
        "run": f"{run}/fold{fold}",
    }


@pytest.fixture(scope="module")
def probe_cfg() -> dict:
    return validate_config(yaml.safe_load((REPO / TINY_CONFIG).read_text()))["probe"]


# --------------------------------------------------------------------------------------------
# aggregate
# --------------------------------------------------------------------------------------------


def test_checkpoint_tables_read_every_dump_and_the_last_test_confusion(tmp_path):
    act = tmp_path / "activations"
    for epoch in (1, 2):
        for split in ("train", "test"):
            (act / str(epoch) / split).mkdir(parents=True)
    y = np.array([0, 1, 2, 2, 1, 0])

    def open_dump(path: Path) -> SimpleNamespace:
        wrong = 1 if path.name == "train" else 2  # train: 1 error, test: 2 errors
        pred = y.copy()
        pred[:wrong] = (pred[:wrong] + 1) % 3
        return SimpleNamespace(labels=y, predictions=pred, manifest={"cross_entropy": 0.5})

    meta = _meta("m")
    rows, conf = checkpoint_tables([meta], [act], {meta["run"]: 3}, open_dump)
    assert list(zip(rows["epoch"], rows["split"], strict=True)) == [
        (1, "test"),
        (1, "train"),
        (2, "test"),
        (2, "train"),
    ]
    assert list(rows["accuracy"]) == pytest.approx([4 / 6, 5 / 6, 4 / 6, 5 / 6])
    assert (rows["cross_entropy"] == 0.5).all() and list(rows.columns[:9]) == RUN_COLUMNS
    assert list(conf.columns) == [*RUN_COLUMNS, "epoch", "split", "true", "predicted", "count"]
    assert len(conf) == 9 and set(conf["epoch"]) == {2} and set(conf["split"]) == {"test"}
    assert (
        conf["count"].sum() == 6 and conf.loc[conf["true"] != conf["predicted"], "count"].sum() == 2
    )


def test_epoch_summary_columns():
    cols = [
        "name",
        "epoch",
        "train_loss",
        "test_acc",
        "lr",
        "grad_norm_max",
        "sharpness",
        "seconds",
    ]
    assert epoch_summary_columns(cols) == ["train_loss", "test_acc", "grad_norm_max", "sharpness"]


def test_stack_run_tables_put_the_run_columns_first_and_name_a_bad_file(tmp_path):
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    pd.DataFrame({"epoch": [1, 2], "sharpness": [3.0, 4.0]}).to_csv(paths[0], index=False)
    pd.DataFrame({"epoch": [1], "sharpness": [5.0]}).to_csv(paths[1], index=False)
    metas = [_meta("a"), _meta("b")]
    out = stack_run_tables(paths, metas, ["checkpoints", "runs"])
    assert list(out.columns) == [*RUN_COLUMNS, "kind", "epoch", "sharpness"]
    assert list(out["model"]) == ["a", "a", "b"] and list(out["kind"]) == ["checkpoints"] * 2 + [
        "runs"
    ]
    assert list(out["sharpness"]) == [3.0, 4.0, 5.0]
    assert "kind" not in stack_run_tables(paths, metas).columns
    paths[1].write_text("epoch,sharpness\n1\n")  # a row cut short
    with pytest.raises(ValueError, match="b.csv"):
        stack_run_tables(paths, metas)


# --------------------------------------------------------------------------------------------
# probe and ssl_eval
# --------------------------------------------------------------------------------------------


def test_probe_settings_map_the_probe_section(probe_cfg):
    forest = forest_settings(probe_cfg, 3)
    assert forest["random_state"] == probe_cfg["seed"] and forest["n_jobs"] == 3
    assert forest["task"] == "classification" and forest["max_depth"] == 6  # the tiny config's
    assert "backend" not in forest and not set(GRID_KEYS) & set(forest)
    full = probe_settings(probe_cfg, 3)
    assert full["backend"] == probe_cfg["backend"]
    assert {k: full[k] for k in GRID_KEYS} == {k: probe_cfg[k] for k in GRID_KEYS}
    assert not set(GRID_KEYS) & set(probe_settings({**probe_cfg, "method": "loglog"}, 3))


def _dump(rng: np.random.Generator, n: int = 80) -> SimpleNamespace:
    y = rng.integers(0, 3, size=n)
    layers = {
        "input": (rng.normal(size=(n, 5))).astype(np.float16),
        "hidden": ((np.eye(3)[y] * 4) + rng.normal(size=(n, 3))).astype(np.float16),
    }
    entries = {"input": {"index": 0, "dim": 5}, "hidden": {"index": 1, "dim": 3}}
    return SimpleNamespace(
        labels=y, layers=list(layers), layer=layers.__getitem__, entry=entries.__getitem__
    )


def test_probe_dump_rows_and_the_random_label_baseline(rng, probe_cfg):
    dump = _dump(rng)
    settings = probe_settings(probe_cfg, 1)
    where = {"max_samples": 60, "seed": 0, "epoch": 2, "split": "train", "split_no": 0}
    rows, curves = probe_dump(
        dump, ["input", "hidden"], settings, random_label_baseline=True, **where
    )
    assert [r["layer"] for r in rows] == ["input", "hidden"] == [c["layer"] for c in curves]
    assert all(r["n_samples"] == 60 and r["epoch"] == 2 for r in rows)
    assert [r["layer_index"] for r in rows] == [0, 1] and rows[1]["reduction"] == "null"
    assert {"alpha_random", "alpha_random_status", "n_wavelets_random"} <= set(rows[0])
    plain, _ = probe_dump(dump, ["hidden"], settings, random_label_baseline=False, **where)
    assert "alpha_random" not in plain[0]
    # the same probe, samples and seed
    same = ("alpha", "status", "n_wavelets")
    assert [plain[0][k] for k in same] == pytest.approx([rows[1][k] for k in same], nan_ok=True)


def test_add_alpha_fills_every_layer_and_label_set(rng, probe_cfg):
    dump = _dump(rng)
    y = np.asarray(dump.labels)
    sets = {"class": (y, y), "coarse": (y % 2, y % 2)}
    table = pd.DataFrame(
        {"layer": ["input", "hidden"] * 2, "label_set": ["class"] * 2 + ["coarse"] * 2}
    )
    off = table.copy()
    add_alpha(off, dump, sets, ["input", "hidden"], None, 1, 1)
    assert off[ALPHA_COLUMNS[:3]].isna().all().all()
    assert (off["alpha_status"] == "not_computed (ssl.eval.alpha false)").all()
    add_alpha(table, dump, sets, ["input", "hidden"], probe_cfg, 1, 1)
    assert not table["alpha_status"].str.startswith("not_computed").any()
    assert (table["alpha"].notna() == (table["alpha_status"] == "ok")).all()


def test_ssl_eval_probes_with_every_setting_of_the_probe_section(rng, probe_cfg):
    """ssl_eval's alpha is the probe rule's alpha under the same probe section, also with a
    non-default tau grid and the scikit-learn builder (before, ssl_eval dropped both)."""
    dump = _dump(rng)
    y = np.asarray(dump.labels)
    cfg = {**probe_cfg, "max_samples": 80, "backend": "sklearn", "tau_min": 0.4, "tau_step": 0.1}
    rows, _ = probe_dump(
        dump, ["input", "hidden"], probe_settings(cfg, 1), max_samples=80, seed=int(cfg["seed"]),
        epoch=1, split="train", split_no=0, random_label_baseline=False,
    )  # fmt: skip
    table = pd.DataFrame({"layer": ["input", "hidden"], "label_set": ["class"] * 2})
    add_alpha(table, dump, {"class": (y, y)}, ["input", "hidden"], cfg, 1, 1)
    assert list(table["alpha"]) == pytest.approx([r["alpha"] for r in rows], nan_ok=True)
    default = pd.DataFrame({"layer": ["input", "hidden"], "label_set": ["class"] * 2})
    add_alpha(default, dump, {"class": (y, y)}, ["input", "hidden"], probe_cfg, 1, 1)
    assert list(default["alpha"]) != pytest.approx(list(table["alpha"]), nan_ok=True)


# --------------------------------------------------------------------------------------------
# activations: the split plan
# --------------------------------------------------------------------------------------------


def _data(n_train: int, n_test: int | None) -> SimpleNamespace:
    y = np.arange(n_train) % 2
    yt = None if n_test is None else np.arange(n_test) % 2
    x_test = None if n_test is None else np.zeros((n_test, 2), np.float32)
    return SimpleNamespace(x_train=np.zeros((n_train, 2)), y_train=y, x_test=x_test, y_test=yt)


def _split(heldout: int) -> dict:
    train_idx, heldout_idx = np.arange(10), np.arange(10, 10 + heldout)
    y = np.arange(10) % 2
    return {
        "train_idx": train_idx,
        "heldout_idx": heldout_idx,
        "y_train": 1 - y,
        "y_train_clean": y,
    }


def test_plan_splits_names_what_each_split_is():
    ds = _data(20, None)
    kw = {"dataset": "d", "analysis_dataset": "d", "run": "r"}
    splits, sources = plan_splits(["train", "heldout", "test"], ds, ds, _split(10), **kw)
    assert list(splits) == ["train", "heldout", "test"]
    assert list(splits["train"].labels) == list(_split(10)["y_train"])  # as trained
    assert splits["train"].true_labels is not None and splits["heldout"].true_labels is None
    # no test split: the held-out fold
    assert list(splits["test"].indices) == list(range(10, 20)) and splits["test"].which == "x_train"
    assert sources["test"]["indices"] == "held-out fold"
    # a run on the whole training split has no held-out fold: skipped, and said so
    splits, sources = plan_splits(["train", "heldout"], ds, ds, _split(0), **kw)
    assert list(splits) == ["train"] and "skipped" in sources["heldout"]
    # an analysis data set: its test split, and its training split as `analysis`
    ana = _data(30, 8)
    other = {**kw, "analysis_dataset": "a"}
    splits, sources = plan_splits(["train", "test"], ds, ana, _split(10), **other)
    assert list(splits) == ["train", "test", "analysis"]
    assert splits["test"].which == "x_test" and len(splits["test"].indices) == 8
    assert len(splits["analysis"].indices) == 30 and sources["analysis"]["dataset"] == "a"
    with pytest.raises(ValueError, match="has no test split"):
        plan_splits(["test"], ds, _data(30, None), _split(10), **other)


def test_subsample_splits_keeps_labels_aligned_and_records_the_size():
    ds = _data(20, None)
    kw = {"dataset": "d", "analysis_dataset": "d", "run": "r"}
    splits, sources = plan_splits(["train", "heldout"], ds, ds, _split(10), **kw)
    small = subsample_splits(splits, sources, 6)
    assert [sources[s]["n_samples"] for s in small] == [6, 6]
    tr = small["train"]
    assert list(tr.labels) == list(1 - tr.true_labels)  # the pairs stay aligned
    assert list(tr.true_labels) == list(np.asarray(tr.indices) % 2)
    assert len(splits["train"].indices) == 10  # the plan itself is unchanged


# --------------------------------------------------------------------------------------------
# similarity_tables
# --------------------------------------------------------------------------------------------


def test_cka_tables_split_by_kind_and_summarize_over_folds(tmp_path):
    paths, runs = [], []
    for fold, value in ((0, 0.4), (1, 0.8)):
        rows = [
            ["layers", 1, "h", 1, 1, "o", 2, 50, value],
            ["checkpoints", 1, "h", 1, 2, "h", 1, 50, value / 2],
        ]
        paths.append(tmp_path / f"cka{fold}.csv")
        pd.DataFrame(rows, columns=CKA_COLUMNS).to_csv(paths[-1], index=False)
        runs.append(_meta("m", fold))
    out = run_cka_tables(runs, paths, "tiny")
    layers = out["cka_layers"]
    assert list(layers.columns[:10]) == ["name", *RUN_COLUMNS] and "epoch_b" not in layers
    assert list(out["cka_checkpoints"].columns[10:13]) == ["epoch_a", "layer", "layer_index"]
    summary = out["cka_layers_summary"]
    assert summary["cka_mean"].tolist() == pytest.approx([0.6])
    assert summary["cka_n"].tolist() == [2]
    assert out["cka_checkpoints_summary"]["cka_mean"].tolist() == pytest.approx([0.3])
    pairs = pd.DataFrame(
        {"run_a": [runs[0]["run"]], "run_b": [runs[1]["run"]], "epoch": [1], "layer": ["h"]}
        | {"layer_index_a": [1], "layer_index_b": [1], "cka": [0.9]}
    )
    cross = cross_run_tables(pairs, runs, "tiny")
    cols = list(cross["cka_runs"].columns)
    assert cols[:5] == ["name", "experiment", "dataset", "seed", "fold"]
    assert cols[5:13] == [f"{c}_a" for c in PAIR_OWN] + [f"{c}_b" for c in PAIR_OWN]
    assert math.isclose(cross["cka_runs_summary"]["cka_mean"].iloc[0], 0.9)
