"""The tabular track's XGBoost baseline and search and its boosted-wavelet part
(mfoml.tabular.models.XGBoostModel, nested_xgb_search, boosting_cv), their tables and figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from mfoml.data.folds import split_indices
from mfoml.plots.tabular import plot_all
from mfoml.tabular.boosting import boosting_cv
from mfoml.tabular.models import XGBoostModel, make_baseline
from mfoml.tabular.search import XGB_SEARCH_PARAMS, nested_xgb_search
from mfoml.tabular.tables import aggregate
from mfoml.tabular.wavelet import wavelet_cv

BOOSTED = {"n_estimators": 4, "learning_rate": 0.5, "max_depth": 2}
FOREST = {"n_estimators": 3, "max_depth": 4}
DIABETES_ROWS = 150  # rows of the diabetes fixture (conftest.py)


@pytest.fixture(scope="module")
def boosted(iris, diabetes) -> dict[str, dict]:
    return {
        d.name: boosting_cv(d, f, BOOSTED, FOREST, curve_points=8, seed=1)
        for d, f in (iris, diabetes)
    }


def test_xgboost_baseline_matches_a_direct_fit_and_maps_labels(iris) -> None:
    data, folds = iris
    tr, te = split_indices(folds, 0)
    est = make_baseline("xgboost", data.task, seed=3, n_estimators=5, max_depth=2)
    assert isinstance(est, XGBoostModel)
    pred = est.fit(data.X[tr], data.y[tr]).predict(data.X[te])
    ref = xgb.XGBClassifier(n_estimators=5, max_depth=2, random_state=3, n_jobs=1)
    np.testing.assert_array_equal(pred, ref.fit(data.X[tr], data.y[tr]).predict(data.X[te]))
    # a training part without class 1: labels 0 and 2 are fitted and predicted as themselves
    keep = tr[data.y[tr] != 1]
    pred = XGBoostModel("classification", n_estimators=3).fit(data.X[keep], data.y[keep])
    assert set(pred.predict(data.X[te])) <= {0, 2}
    assert pred.predict(data.X[keep]).tolist() == data.y[keep].tolist()


def test_nested_xgb_search(diabetes) -> None:
    data, folds = diabetes
    grid = {"n_estimators": [3, 6], "max_depth": [2]}
    res = nested_xgb_search(data, folds, grid, inner_splits=2)
    assert len(res["outer"]) == 3 and len(res["inner"]) == 3 * 2
    for row in res["outer"]:
        assert row["best_n_estimators"] in ("3", "6")
        best = {k for k in row if k.startswith("best_")}
        assert best == {"best_candidate", "best_params", *(f"best_{p}" for p in XGB_SEARCH_PARAMS)}
    with pytest.raises(ValueError, match="xgb_search grid"):
        nested_xgb_search(data, folds, {"max_features": [1]})


def test_boosting_cv_rows_curves_and_the_forest_of_the_wavelet_part(iris, boosted) -> None:
    res = boosted["iris"]
    rows = pd.DataFrame(res["rows"])
    assert sorted(set(rows["model"])) == ["gradient_boosting", "wavelet_forest", "xgboost"]
    assert len(rows) == 9 and (rows["n_terms"] <= rows["n_wavelets"]).all()
    # the forest is the wavelet part's forest: same split, same seed
    w = wavelet_cv(iris[0], iris[1], FOREST, curve_points=8, trees_grid=(), seed=1)["rows"]
    forest = rows[rows["model"] == "wavelet_forest"].sort_values("fold")
    assert forest["n_terms"].tolist() == [r["n_terms"] for r in w]
    assert forest["full_score"].tolist() == pytest.approx([r["full_score"] for r in w])
    curve = pd.DataFrame(res["curve"])
    stages = pd.DataFrame(res["stages"])
    for (model, fold), g in curve.groupby(["model", "fold"]):
        row = rows[(rows["model"] == model) & (rows["fold"] == fold)].iloc[0]
        full = g[g["n_terms"] >= row["n_wavelets"]]["test_error"]
        assert full.to_numpy() == pytest.approx(1 - row["full_score"])  # all wavelets: the model
        if model != "wavelet_forest":
            st = stages[(stages["model"] == model) & (stages["fold"] == fold)]
            assert st["n_stages"].tolist() == list(range(5))
            assert st["n_wavelets"].iloc[-1] == row["n_wavelets"]
            assert st["test_error"].iloc[-1] == pytest.approx(1 - row["full_score"])
    imp = pd.DataFrame(res["importance"])
    assert np.allclose(imp.groupby(["model", "fold"])["importance"].sum(), 1.0)
    assert len(res["agreement"]) == 3 * 3
    assert rows["alpha"].notna().any()


def test_boosting_tables_and_figures(iris, diabetes, boosted, tmp_path: Path) -> None:
    search = nested_xgb_search(diabetes[0], diabetes[1], {"n_estimators": [3, 6]}, inner_splits=2)
    meta = [
        {"dataset": d.name, "task": d.task, "n_samples": len(d.y), "n_features": d.X.shape[1],
         "n_classes": d.n_classes, "size": "small"}
        for d, _ in (iris, diabetes)
    ]  # fmt: skip
    t = aggregate({"boosting": list(boosted.values()), "xgb_search": [search], "meta": meta})
    b = t["boosting"].set_index(["dataset", "model"])
    per_fold = [r["score"] for r in boosted["diabetes"]["rows"] if r["model"] == "xgboost"]
    assert b.loc[("diabetes", "xgboost"), "score_mean"] == pytest.approx(np.mean(per_fold))
    assert set(t["boosting_compression"]["error_kind"]) == {
        "misclassification rate",
        "mean squared error",
    }
    assert list(t["xgb_search"]["dataset"]) == ["diabetes"]
    assert set(t["xgb_hparams"]["param"]) == {"n_estimators"}
    ds = t["datasets"].set_index("dataset")
    assert ds.loc["diabetes", "nested_xgb_score"] == pytest.approx(t["xgb_search"]["score_mean"][0])
    names = ["boosting_compression", "boosting_stages", "boosting_importance", "xgb_hparams"]
    outs = {n: str(tmp_path / f"{n}.png") for n in names}
    for name in names:  # read back from CSV, as the figures rule does
        if name in t:
            t[name].to_csv(tmp_path / f"{name}.csv", index=False)
    tables = {n: pd.read_csv(tmp_path / f"{n}.csv") for n in t if (tmp_path / f"{n}.csv").exists()}
    tables["boosting_rank_agreement"] = t["boosting_rank_agreement"]
    tables["boosting"] = t["boosting"]
    plot_all(tables, outs, dpi=40)
    for path in outs.values():
        data = Path(path).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


@pytest.mark.parametrize("kind", ["gradient_boosting", "xgboost", "wavelet_forest"])
def test_curve_is_aligned_with_the_grid_beyond_the_number_of_wavelets(iris, kind) -> None:
    from mfoml.tabular.boosting import WaveletModel

    data, _ = iris
    params = FOREST if kind == "wavelet_forest" else BOOSTED
    wm = WaveletModel(kind, data.task, params, 0, 1).fit(data.X[::2], data.y[::2])
    W = wm.n_wavelets
    err = wm.curve(data.X[1::2], data.y[1::2], np.array([0, 2, W, W + 10, 10 * W]))
    assert err.shape == (5,) and err[2] == err[3] == err[4]
    full = 1 - np.mean(wm.predict(data.X[1::2], "all") == data.y[1::2])
    assert err[4] == pytest.approx(full)
