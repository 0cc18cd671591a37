"""The tabular track end to end through Snakemake on config/tests/tabular_tiny.yaml (iris and
diabetes, 3 folds, tiny forests), then what a config change reruns."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml
from figure_checks import check_figures
from mfoml.data.folds import load_folds
from mfoml.plots.tabular import plot_all
from workflow_utils import copy_workflow, dry_run_jobs, run_snakemake

CONFIG = Path("config") / "tests" / "tabular_tiny.yaml"
TABLES = [
    "baselines", "per_class", "confusion", "rf_search", "rf_search_folds", "hparams", "wavelet",
    "compression", "trees", "importance", "rank_agreement", "synthetic", "synthetic_importance",
    "noise", "datasets", "xgb_search", "xgb_search_folds", "xgb_hparams", "boosting",
    "boosting_compression", "boosting_stages", "boosting_importance", "boosting_rank_agreement",
]  # fmt: skip
FIGURES = [
    "baselines", "confusion", "hparams", "compression", "trees", "importance", "synthetic", "noise",
    "xgb_hparams", "boosting_compression", "boosting_stages", "boosting_importance",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = copy_workflow(tmp_path_factory.mktemp("tabular") / "wf")
    run_snakemake(wd, "--cores", "2", configfile=wd / CONFIG, check=True)
    return wd


def _t(wd: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(wd / "results" / "tables" / f"tabular_{name}.csv")


@pytest.mark.slow
def test_tables_figures_logs(run: Path) -> None:
    for name in TABLES:
        assert (run / "results" / "tables" / f"tabular_{name}.csv").is_file(), name
    for name in FIGURES:
        png = (run / "results" / "figures" / f"tabular_{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000, name
    b = _t(run, "baselines")
    assert set(zip(b["dataset"], b["model"], strict=True)) == {
        (d, m) for d in ("iris", "diabetes")
        for m in ("decision_tree", "random_forest", "hist_gradient_boosting", "linear", "xgboost")
    }  # fmt: skip
    assert (b["n_folds"] == 3).all()
    iris = b[b["dataset"] == "iris"]
    assert (iris["accuracy_mean"] > 0.8).all() and (iris["accuracy_mean"] <= 1).all()
    # the per-fold JSON agrees with the table (mean and sample std over folds)
    res = json.loads((run / "results/tabular/iris/baselines.json").read_text())
    lin = [r["score"] for r in res["rows"] if r["model"] == "linear"]
    row = iris[iris["model"] == "linear"].iloc[0]
    assert row["score_mean"] == pytest.approx(np.mean(lin))
    assert row["score_std"] == pytest.approx(np.std(lin, ddof=1))
    # the folds used are the stored ones (stratified, 3 splits)
    folds = load_folds(run / "results/folds/iris.json")
    assert folds["n_splits"] == 3
    for r in res["details"]:
        assert r["metrics"]["n_samples"] == int(np.sum(folds["fold"] == r["fold"]))
    # confusion counts cover each sample once per model
    conf = _t(run, "confusion")
    assert conf[conf["model"] == "random_forest"]["count"].sum() == 150
    # search, wavelet, importance, noise, synthetic: the configured subsets
    assert set(_t(run, "rf_search")["dataset"]) == {"iris"}
    assert set(_t(run, "wavelet")["dataset"]) == {"iris"}
    assert set(_t(run, "noise")["dataset"]) == {"iris", "diabetes"}
    noise = _t(run, "noise")
    assert sorted(noise[noise["dataset"] == "iris"]["level"]) == [0.0, 0.3]
    assert sorted(noise[noise["dataset"] == "diabetes"]["level"]) == [0.0, 1.0]
    syn = _t(run, "synthetic")
    assert set(syn["method"]) == {"wavelet", "impurity", "permutation"}
    assert (syn["recovered_mean"] <= syn["k"]).all()
    ds = _t(run, "datasets")
    assert {"small"} == set(ds["size"]) and set(ds["condition"]) >= {"clean", "noise 0.3"}
    for part in ("baselines", "rf_search", "wavelet", "importance", "noise"):
        assert (run / "logs" / "tabular" / "iris" / f"{part}.log").is_file()
        assert (run / "results" / "benchmarks" / "tabular" / "iris" / f"{part}.tsv").is_file()


@pytest.mark.slow
def test_xgboost_and_boosted_wavelet_tables(run: Path) -> None:
    """XGBoost baseline and search, and the boosted-wavelet tables beside the forest's."""
    b = _t(run, "baselines")
    xgb_rows = b[b["model"] == "xgboost"].set_index("dataset")
    assert xgb_rows.loc["iris", "accuracy_mean"] > 0.85
    assert 0 < xgb_rows.loc["diabetes", "r2_mean"] < 1
    s = _t(run, "xgb_search")
    assert list(s["dataset"]) == ["diabetes"] and (s["n_folds"] == 3).all()
    assert 0 < s["score_mean"].iloc[0] < 1
    folds = _t(run, "xgb_search_folds")
    assert set(folds["best_n_estimators"].astype(int)) <= {5, 10} and len(folds) == 3
    assert set(_t(run, "xgb_hparams")["param"]) >= {"n_estimators"}
    bo = _t(run, "boosting")
    models = {"wavelet_forest", "gradient_boosting", "xgboost"}
    assert {(d, m) for d, m in zip(bo["dataset"], bo["model"], strict=True)} == {
        (d, m) for d in ("iris", "diabetes") for m in models
    }
    assert (bo["n_terms_mean"] <= bo["n_wavelets_mean"]).all() and (bo["n_folds"] == 3).all()
    assert ((bo["kept_fraction_mean"] >= 0) & (bo["kept_fraction_mean"] <= 1)).all()
    iris = bo[bo["dataset"] == "iris"].set_index("model")
    assert (iris["full_accuracy_mean"] > 0.85).all() and (iris["accuracy_mean"] > 0.8).all()
    # the forest here is the wavelet part's forest (same seed, same fit/validation split)
    w = _t(run, "wavelet").iloc[0]
    assert iris.loc["wavelet_forest", "full_accuracy_mean"] == pytest.approx(
        w["full_accuracy_mean"]
    )
    assert iris.loc["wavelet_forest", "n_terms_mean"] == pytest.approx(w["n_terms_mean"])
    comp = _t(run, "boosting_compression")
    for (_ds, _model), g in comp.groupby(["dataset", "model"]):
        assert g["n_terms"].iloc[0] == 0 and g["n_terms"].is_monotonic_increasing
        assert (g["test_error_mean"] >= 0).all()
    # with all wavelets the curve is the full model's error (iris: misclassification rate)
    for model in models:
        last = comp[(comp["dataset"] == "iris") & (comp["model"] == model)].iloc[-1]
        assert last["test_error_mean"] == pytest.approx(1 - iris.loc[model, "full_accuracy_mean"])
    st = _t(run, "boosting_stages")
    assert set(st["model"]) == {"gradient_boosting", "xgboost"}
    assert sorted(set(st["n_stages"])) == list(range(6))  # 5 stages, plus f0 alone
    imp = _t(run, "boosting_importance")
    sums = imp.groupby(["dataset", "model"])["importance_mean"].sum()
    assert np.allclose(sums, 1.0)
    agree = _t(run, "boosting_rank_agreement")
    assert len(agree) == 6 and agree["spearman_mean"].between(-1, 1).all()
    ds = _t(run, "datasets").set_index("dataset")
    assert {"nested_xgb_score", "gradient_boosting_wavelet_score"} <= set(ds.columns)


@pytest.mark.slow
def test_figures_are_readable(run: Path, tmp_path: Path) -> None:
    """Every figure of rule tabular_figures, re-rendered from the run's tables through
    mfoml.plots.tabular, passes the reader's checks (tests/figure_checks.py): no empty panel,
    no legend over data (bars included), within the maximum size, not a placeholder."""
    tables = {name: _t(run, name) for name in TABLES}
    paths = {name: tmp_path / f"tabular_{name}.png" for name in FIGURES}
    dpi = 40
    with matplotlib.rc_context():  # plot_all sets seaborn's theme: not for the other tests
        drawn = plot_all(tables, {name: str(path) for name, path in paths.items()}, dpi)
    assert set(drawn) == set(FIGURES)
    check_figures({name: (drawn[name], paths[name]) for name in FIGURES}, dpi)
    # the number of folds in the panels' titles
    noise = drawn["noise"]
    assert all("n=3 folds" in ax.get_title() for ax in noise.axes if ax.has_data())


@pytest.mark.slow
def test_config_change_reruns_only_its_part(run: Path, tmp_path: Path) -> None:
    assert dry_run_jobs(run, configfile=run / CONFIG) == []
    cfg = yaml.safe_load((run / CONFIG).read_text())
    cfg["tabular"]["noise"]["levels"] = [0.0, 0.2]
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    planned = dry_run_jobs(run, configfile=changed)
    jobs = {rule for rule, _ in planned}
    assert jobs == {"tabular_noise", "tabular_tables", "tabular_figures", "all"}, jobs
    wc = [w["dataset"] for rule, w in planned if rule == "tabular_noise"]
    assert sorted(wc) == ["diabetes", "iris"]  # the rule's params are the noise slice
    # a comment in the wavelet code reruns nothing; a change of the code reruns the jobs
    # executing it, never baselines or the search
    module = run / "workflow" / "scripts" / "mfoml" / "wavelets" / "forest.py"
    boosted = run / "workflow" / "scripts" / "mfoml" / "wavelets" / "boosted_trees.py"
    original, original_boosted = module.read_text(), boosted.read_text()
    try:
        module.write_text(original + "\n# edited by the tabular rerun test\n")
        boosted.write_text(original_boosted + "\n# edited by the tabular rerun test\n")
        assert dry_run_jobs(run, configfile=run / CONFIG) == []  # comments change nothing
        boosted.write_text(original_boosted)
        module.write_text(original + "\n_CHANGED_BY_THE_TABULAR_RERUN_TEST = 1\n")
        jobs = {rule for rule, _ in dry_run_jobs(run, configfile=run / CONFIG)}
    finally:
        module.write_text(original)
        boosted.write_text(original_boosted)
    assert jobs == {
        "tabular_wavelet", "tabular_boosting", "tabular_importance", "tabular_noise",
        "tabular_synthetic", "tabular_tables", "tabular_figures", "all",
    }, jobs  # fmt: skip
    # editing the boosted-tree wavelets reruns only the boosting part
    try:
        boosted.write_text(original_boosted + "\n_CHANGED_BY_THE_TABULAR_RERUN_TEST = 1\n")
        jobs = {rule for rule, _ in dry_run_jobs(run, configfile=run / CONFIG)}
    finally:
        boosted.write_text(original_boosted)
    assert jobs == {"tabular_boosting", "tabular_tables", "tabular_figures", "all"}, jobs
