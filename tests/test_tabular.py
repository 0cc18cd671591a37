"""The tabular drivers (mfoml.tabular): nested CV without leakage, baselines against independent
fits, wavelet-forest curves, importances, noise study, aggregation and plots."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mfoml.config import ConfigError, validate_config
from mfoml.data.catalog import prepare_dataset
from mfoml.data.folds import make_folds, save_folds
from mfoml.plots.tabular import FIGURES, plot_all
from mfoml.tabular.baselines import run_baselines
from mfoml.tabular.data import TabularData, forest_params
from mfoml.tabular.importance import importance_cv, rank_agreement, synthetic_importance
from mfoml.tabular.job import run_dataset_job
from mfoml.tabular.models import BASELINES
from mfoml.tabular.noise import noise_study
from mfoml.tabular.search import hparam_effects, nested_rf_search
from mfoml.tabular.tables import aggregate, mean_std
from mfoml.tabular.wavelet import n_terms_grid, wavelet_cv
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, r2_score
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

# ------------------------------------------------------------------------------------------
# nested CV: the outer test fold never reaches the inner search


class _Recorder:
    """Factory of real random forests that log the sample ids (column 0) they see."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, frozenset[int]]] = []

    def __call__(self, task: str, params: dict, seed: int) -> RandomForestClassifier:
        log = self.calls

        class Recording(RandomForestClassifier):
            def fit(self, X, y, sample_weight=None):
                log.append(("fit", frozenset(int(v) for v in X[:, 0])))
                return super().fit(X, y, sample_weight)

            def predict(self, X):
                log.append(("predict", frozenset(int(v) for v in X[:, 0])))
                return super().predict(X)

        return Recording(random_state=seed, **params)


def test_nested_search_never_sees_the_outer_test_fold() -> None:
    rng = np.random.default_rng(0)
    n = 90
    X = np.column_stack([np.arange(n), rng.normal(size=(n, 3))])  # column 0: the sample id
    y = (X[:, 1] + 0.3 * rng.normal(size=n) > 0).astype(int)
    data = TabularData(X, y, "classification", 2, name="ids")
    folds = make_folds(y, n_splits=3, seed=1, stratified=True)
    grid = {"n_estimators": [3, 5], "max_depth": [None, 2]}
    rec = _Recorder()
    res = nested_rf_search(data, folds, grid, inner_splits=2, estimator_factory=rec)
    n_cands, inner = 4, 2
    per_outer = n_cands * inner * 2 + 2  # (fit, predict) per inner split and candidate, + final
    assert len(rec.calls) == 3 * per_outer
    for k in range(3):
        test_ids = set(np.flatnonzero(folds == k).tolist())
        train_ids = set(range(n)) - test_ids
        calls = rec.calls[k * per_outer : (k + 1) * per_outer]
        inner_calls, final = calls[:-2], calls[-2:]
        for kind, ids in inner_calls:
            assert ids <= train_ids, f"outer fold {k}: inner {kind} touched test samples"
            assert not ids & test_ids
        # every inner (fit, predict) pair partitions the outer training fold
        for (_, fit_ids), (_, val_ids) in zip(inner_calls[::2], inner_calls[1::2], strict=True):
            assert not fit_ids & val_ids and fit_ids | val_ids == train_ids
        assert final[0] == ("fit", frozenset(train_ids))
        assert final[1] == ("predict", frozenset(test_ids))
    assert [r["fold"] for r in res["outer"]] == [0, 1, 2]
    assert len(res["inner"]) == 3 * n_cands


def test_nested_search_best_is_argmax_of_inner_and_effects(iris) -> None:
    data, folds = iris
    grid = {
        "n_estimators": [5, 10],
        "max_depth": [1, None],
        "max_features": ["sqrt"],
        "min_samples_leaf": [1],
    }
    res = nested_rf_search(data, folds, grid, inner_splits=2, seed=3)
    inner = pd.DataFrame(res["inner"])
    for row in res["outer"]:
        sub = inner[inner["fold"] == row["fold"]]
        assert row["inner_best"] == pytest.approx(sub["inner_mean"].max())
        assert row["best_candidate"] == int(sub["inner_mean"].to_numpy().argmax())
    # marginal effects, recomputed by hand
    eff = hparam_effects(inner)
    for p in ("n_estimators", "max_depth"):
        for v in inner[p].unique():
            per_fold = [
                np.mean([r["inner_mean"] for r in res["inner"] if r["fold"] == k and r[p] == v])
                for k in range(3)
            ]
            got = eff[(eff["param"] == p) & (eff["value"] == v)].iloc[0]
            assert got["score_mean"] == pytest.approx(np.mean(per_fold))
            assert got["score_std"] == pytest.approx(np.std(per_fold, ddof=1))
    # a depth-1 stump cannot separate three classes: depth None must score higher
    d = eff[eff["param"] == "max_depth"].set_index("value")["score_mean"]
    assert d["None"] > d["1"]


def test_search_stds_use_ddof_1_and_nan_below_two_values() -> None:
    """One standard-deviation convention everywhere: sample std (ddof = 1), NaN below two."""
    rng = np.random.default_rng(2)
    n = 90
    X = np.column_stack([np.arange(n), rng.normal(size=(n, 3))])  # column 0: the sample id
    y = (X[:, 1] + 0.5 * rng.normal(size=n) > 0).astype(int)
    data = TabularData(X, y, "classification", 2, name="ids")
    folds = make_folds(y, n_splits=3, seed=1, stratified=True)
    scored: list[tuple[int, float]] = []  # (candidate's n_estimators, inner accuracy)

    def factory(task: str, params: dict, seed: int) -> RandomForestClassifier:
        class Scoring(RandomForestClassifier):
            def predict(self, X):
                pred = super().predict(X)
                ids = X[:, 0].astype(int)
                scored.append((self.n_estimators, float(np.mean(pred == y[ids]))))
                return pred

        return Scoring(random_state=seed, **params)

    grid = {"n_estimators": [2, 3]}
    res = nested_rf_search(data, folds, grid, inner_splits=3, estimator_factory=factory)
    per_outer = 2 * 3 + 1  # 2 candidates x 3 inner splits, then the refit's predict
    for k, row in enumerate(res["inner"]):
        calls = scored[(k // 2) * per_outer : (k // 2 + 1) * per_outer][:-1]
        scores = [a for m, a in calls if str(m) == str(row["n_estimators"])]
        assert len(scores) == 3
        assert row["inner_mean"] == pytest.approx(np.mean(scores))
        assert row["inner_std"] == pytest.approx(np.std(scores, ddof=1))
    # one outer fold: the std over folds is undefined (NaN), not 0
    one = pd.DataFrame(res["inner"]).query("fold == 0")
    eff = hparam_effects(one)
    assert (eff["n_folds"] == 1).all() and eff["score_std"].isna().all()


def test_n_iter_subsamples_the_grid(iris) -> None:
    data, folds = iris
    grid = {"n_estimators": [3, 4, 5], "min_samples_leaf": [1, 2, 3]}
    res = nested_rf_search(data, folds, grid, inner_splits=2, n_iter=4, seed=0)
    assert len(res["candidates"]) == 4 and len(res["inner"]) == 3 * 4
    with pytest.raises(ValueError, match="unknown hyper-parameters"):
        nested_rf_search(data, folds, {"criterion": ["gini"]})


# ------------------------------------------------------------------------------------------
# baselines


def test_baselines_match_independent_fits(iris, diabetes) -> None:
    for (data, folds), cls, score in (
        (iris, DecisionTreeClassifier, accuracy_score),
        (diabetes, DecisionTreeRegressor, r2_score),
    ):
        res = run_baselines(data, folds, ["decision_tree", "linear"], seed=5)
        rows = [r for r in res["rows"] if r["model"] == "decision_tree"]
        for r in rows:
            te = folds == r["fold"]
            ref = cls(random_state=5).fit(data.X[~te], data.y[~te]).predict(data.X[te])
            assert r["score"] == pytest.approx(score(data.y[te], ref), abs=1e-12)
        assert {r["model"] for r in res["rows"]} == {"decision_tree", "linear"}
    cm = np.array(res_cm(iris))
    assert cm.sum() == len(iris[0].y)  # confusion matrices of all folds cover every sample


def res_cm(iris) -> list:
    data, folds = iris
    res = run_baselines(data, folds, ["linear"])
    return np.sum([np.array(d["metrics"]["confusion_matrix"]) for d in res["details"]], axis=0)


def test_fold_mismatch_and_nan_are_errors(iris) -> None:
    data, folds = iris
    with pytest.raises(ValueError, match="fold assignment has 10 entries"):
        run_baselines(data, folds[:10], ["linear"])
    with pytest.raises(ValueError, match="inf"):
        TabularData(np.array([[np.inf]]), np.array([0]), "classification", 1)
    with pytest.raises(ValueError, match="nominal feature indices"):
        TabularData(np.zeros((2, 2)), np.array([0, 1]), "classification", 2, nominal=[2])


# ------------------------------------------------------------------------------------------
# missing values: imputed inside each training fold


def _with_missing(rng: np.random.Generator, n: int = 120) -> TabularData:
    """Two numeric features and one nominal (codes 0..3), 15 % of each column missing."""
    num = rng.normal(size=(n, 2))
    nom = rng.integers(0, 4, size=n).astype(float)
    y = ((num[:, 0] + (nom == 2)) > 0.3).astype(np.int64)
    X = np.column_stack([num, nom])
    X[rng.random(X.shape) < 0.15] = np.nan
    return TabularData(X, y, "classification", 2, name="missing", nominal=[2])


def test_imputation_statistics_come_from_the_training_fold_only() -> None:
    from mfoml.tabular.models import FoldImputer, impute_in_fold, make_baseline

    rng = np.random.default_rng(4)
    data = _with_missing(rng)
    assert data.has_missing
    tr, te = np.arange(80), np.arange(80, 120)
    filled = impute_in_fold(data, tr)
    for c in (0, 1):  # numeric: the median of the observed training values
        expected = np.median(data.X[tr, c][~np.isnan(data.X[tr, c])])
        np.testing.assert_array_equal(filled[np.isnan(data.X[:, c]), c], expected)
    codes = data.X[tr, 2][~np.isnan(data.X[tr, 2])].astype(int)
    assert (filled[np.isnan(data.X[:, 2]), 2] == np.bincount(codes).argmax()).all()
    np.testing.assert_array_equal(filled[~np.isnan(data.X)], data.X[~np.isnan(data.X)])
    # extreme held-out values (and their own missing values) do not move the fill values
    X2 = data.X.copy()
    X2[te] = np.where(np.isnan(X2[te]), np.nan, 1e9)
    moved = TabularData(X2, data.y, "classification", 2, nominal=[2])
    a = FoldImputer([2]).fit(data.X[tr]).statistics_
    np.testing.assert_array_equal(FoldImputer([2]).fit(moved.X[tr]).statistics_, a)
    np.testing.assert_array_equal(impute_in_fold(moved, tr)[tr], filled[tr])
    # the baselines carry the imputer in their pipeline: fitted on the training rows it sees
    rf = make_baseline("random_forest", "classification", missing=True, nominal=[2])
    rf.set_params(randomforestclassifier__n_estimators=5).fit(moved.X[tr], moved.y[tr])
    np.testing.assert_array_equal(rf[0].statistics_, a)


def test_baselines_run_on_missing_values_and_one_hot_nominal_features() -> None:
    from mfoml.tabular.models import make_baseline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(5)
    data = _with_missing(rng)
    folds = make_folds(data.y, n_splits=3, seed=0, stratified=True)
    res = run_baselines(
        data, folds, list(BASELINES), model_params={"random_forest": {"n_estimators": 5}}
    )
    scores = pd.DataFrame(res["rows"])
    assert len(scores) == 3 * len(BASELINES) and scores["score"].between(0, 1).all()
    lin = make_baseline("linear", "classification", nominal=[2], missing=True, n_features=3)
    lin.fit(data.X[:80], data.y[:80])
    enc = [m for m in lin[0].named_transformers_["nominal"] if isinstance(m, OneHotEncoder)][0]
    assert [list(c) for c in enc.categories_] == [[0.0, 1.0, 2.0, 3.0]]
    assert lin[0].transform(data.X[:5]).shape == (5, 2 + 4)  # 2 numeric + 4 one-hot columns
    # the wavelet forest needs numeric input: imputed in the fold, it runs
    wav = wavelet_cv(
        data, folds, {"n_estimators": 2, "max_depth": 3}, curve_points=4, trees_grid=(1,)
    )
    assert pd.DataFrame(wav["rows"])["accuracy"].between(0, 1).all()
    with pytest.raises(ValueError, match="unknown baseline"):
        run_baselines(data, folds, ["svm"])


# ------------------------------------------------------------------------------------------
# wavelet forest


@pytest.mark.parametrize("which", ["iris", "diabetes"])
def test_wavelet_cv_curves_are_consistent(which, iris, diabetes) -> None:
    data, folds = iris if which == "iris" else diabetes
    res = wavelet_cv(
        data, folds, {"n_estimators": 4, "max_depth": 5}, curve_points=8, trees_grid=(1, 3), seed=0
    )
    rows, curve = pd.DataFrame(res["rows"]), pd.DataFrame(res["curve"])
    assert (rows["n_terms"] <= rows["n_wavelets"]).all() and (rows["n_terms"] >= 0).all()
    np.testing.assert_allclose(rows["kept_fraction"], rows["n_terms"] / rows["n_wavelets"])
    for _, r in rows.iterrows():
        c = curve[curve["fold"] == r["fold"]].sort_values("n_terms")
        last = c.iloc[-1]  # M >= K: the whole forest
        if data.is_classification:
            assert last["test_error"] == pytest.approx(1 - r["full_accuracy"])
        else:
            assert last["test_error"] == pytest.approx(r["full_mse"])
        assert c["n_terms"].iloc[0] == 0
    trees = pd.DataFrame(res["trees"])
    assert sorted(trees["n_trees"].unique()) == [1, 3]
    # one tree: wavelets = nodes - 1 <= 2^(depth+1) - 2
    assert (trees[trees["n_trees"] == 1]["n_wavelets"] <= 2**6 - 2).all()


def test_n_terms_grid() -> None:
    g = n_terms_grid(1000, 20)
    assert g[0] == 0 and g[1] == 1 and g[-1] == 1000 and np.all(np.diff(g) > 0)
    assert n_terms_grid(0).tolist() == [0]


# ------------------------------------------------------------------------------------------
# importances


def _kendall_slow(a: np.ndarray, b: np.ndarray) -> float:
    s = sum(
        np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
        for i, j in itertools.combinations(range(len(a)), 2)
    )
    return s / math.comb(len(a), 2)


def test_rank_agreement_against_slow_formulas() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=12), rng.normal(size=12)
    got = rank_agreement(a, b)
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    n = len(a)
    spearman = 1 - 6 * np.sum((ra - rb) ** 2) / (n * (n * n - 1))
    assert got["spearman"] == pytest.approx(spearman)
    assert got["kendall"] == pytest.approx(_kendall_slow(a, b))
    assert math.isnan(rank_agreement(np.ones(3), a[:3])["spearman"])


@pytest.mark.parametrize(
    ("kind", "n_features", "n_informative", "min_recovered"),
    [("classification", 8, 3, 3.0), ("friedman1", 10, 5, 4.0)],
)
def test_synthetic_importance_finds_the_true_features(
    kind, n_features, n_informative, min_recovered
) -> None:
    res = synthetic_importance(
        kind,
        n_samples=300,
        n_features=n_features,
        n_informative=n_informative,
        params={"n_estimators": 15},
        n_splits=3,
        n_repeats=3,
        seed=0,
    )
    rows = pd.DataFrame(res["rows"])
    k = len(res["true_features"])
    assert (rows["k"] == k).all()
    for method in ("wavelet", "impurity", "permutation"):
        rec = rows[rows["method"] == method]["recovered"].mean()
        assert rec >= min_recovered, f"{method} recovered {rec}/{k}"
    # the wavelet ranking is recomputed from the stored top-k lists
    for _, r in rows.iterrows():
        assert r["recovered"] == len(set(r["top"]) & set(res["true_features"]))


def test_importance_cv_rows_and_agreement(iris) -> None:
    data, folds = iris
    res = importance_cv(data, folds, {"n_estimators": 5}, n_repeats=2, tau=1.0)
    rows = pd.DataFrame(res["rows"])
    for (_, method), g in rows.groupby(["fold", "method"]):
        assert len(g) == 4
        if method != "permutation":
            assert g["importance"].sum() == pytest.approx(1.0)
        assert sorted(g["rank"]) == pytest.approx(sorted(g["rank"].rank(method="average")))
    assert {a["pair"] for a in res["agreement"]} == {
        "wavelet~impurity",
        "wavelet~permutation",
        "impurity~permutation",
    }
    # petal features (2, 3) dominate iris for every method
    top = rows[rows["rank"] <= 2].groupby("method")["feature_index"].apply(set)
    assert top["wavelet"] == {2, 3} and top["impurity"] == {2, 3}


# ------------------------------------------------------------------------------------------
# noise


def test_noise_study_flips_training_labels_and_alpha_falls() -> None:
    b = load_wine()
    data = TabularData(b.data, b.target, "classification", 3, name="wine")
    folds = make_folds(data.y, n_splits=3, seed=0, stratified=True)
    res = noise_study(
        data, folds, [0.0, 0.4], {"n_estimators": 5}, seed=0, alpha_params={"max_depth": 8}
    )
    rows = pd.DataFrame(res["rows"])
    n_train = np.array([np.sum(folds != k) for k in range(3)])
    np.testing.assert_array_equal(rows[rows["level"] == 0.4]["n_changed"], np.round(0.4 * n_train))
    assert (rows[rows["level"] == 0.0]["n_changed"] == 0).all()
    clean, noisy = (rows[rows["level"] == lv] for lv in (0.0, 0.4))
    assert clean["score"].mean() > noisy["score"].mean()
    assert clean["alpha"].mean() > noisy["alpha"].mean()
    assert clean["forest_alpha"].mean() > noisy["forest_alpha"].mean()


def test_noise_study_regression_sigma(diabetes) -> None:
    data, folds = diabetes
    res = noise_study(data, folds, [0.0, 0.5], {"n_estimators": 3}, alpha_params={"max_depth": 4})
    for r in res["rows"]:
        tr = folds != r["fold"]
        assert r["noise_sigma"] == pytest.approx(r["level"] * np.std(data.y[tr]))


# ------------------------------------------------------------------------------------------
# aggregation, plots, config


def test_top_k_breaks_ties_against_the_true_features() -> None:
    from mfoml.tabular.importance import top_k_pessimistic

    true = [0, 1, 2]
    # all tied: nothing is recovered (a stable sort would have put 0, 1, 2 on top)
    top = top_k_pessimistic(np.zeros(6), true, 3)
    assert not np.isin(top, true).any()
    # strictly larger values win; a tie at the boundary goes to the irrelevant feature
    vals = np.array([0.9, 0.5, 0.1, 0.5, 0.0, 0.2])
    top = top_k_pessimistic(vals, true, 3)
    assert top.tolist() == [0, 3, 1]
    assert int(np.isin(top, true).sum()) == 2


def test_mean_std_against_numpy() -> None:
    frame = pd.DataFrame(
        {
            "g": ["a"] * 3 + ["b"] + ["c"] * 3,
            "fold": [0, 1, 2, 0, 0, 1, 2],
            "v": [1.0, 2.0, 4.0, 3.0, 5.0, np.nan, 7.0],
        }
    )
    out = mean_std(frame, ["g"]).set_index("g")
    assert out.loc["a", "v_mean"] == pytest.approx(7 / 3)
    assert out.loc["a", "v_std"] == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert out.loc["a", "v_n"] == 3 and out.loc["a", "n_folds"] == 3
    # one fold: the standard deviation is undefined, not zero
    assert np.isnan(out.loc["b", "v_std"]) and out.loc["b", "v_n"] == 1
    assert out.loc["b", "n_folds"] == 1
    # a fold without a finite value is counted in n_folds but not in v_n
    assert out.loc["c", "v_mean"] == pytest.approx(6.0)
    assert out.loc["c", "v_std"] == pytest.approx(np.std([5, 7], ddof=1))
    assert out.loc["c", "v_n"] == 2 and out.loc["c", "n_folds"] == 3


def test_aggregate_and_plots(iris, diabetes, tmp_path: Path) -> None:
    results: dict[str, list] = {"meta": []}
    for data, folds in (iris, diabetes):
        results.setdefault("baselines", []).append(run_baselines(data, folds, ["decision_tree"]))
        results["meta"].append(
            {
                "dataset": data.name,
                "task": data.task,
                "n_samples": len(data.y),
                "n_features": data.X.shape[1],
                "n_classes": data.n_classes,
                "size": "small",
            }
        )
    t = aggregate(results)
    b = t["baselines"].set_index("dataset")
    for data, _folds in (iris, diabetes):
        per_fold = [
            r["score"]
            for res in results["baselines"]
            for r in res["rows"]
            if r["dataset"] == data.name
        ]
        assert b.loc[data.name, "score_mean"] == pytest.approx(np.mean(per_fold))
        assert b.loc[data.name, "score_std"] == pytest.approx(np.std(per_fold, ddof=1))
        assert b.loc[data.name, "n_folds"] == 3
    conf = t["confusion"]
    assert conf["count"].sum() == len(iris[0].y)
    assert set(t["datasets"]["dataset"]) == {"iris", "diabetes"}
    outs = {name: str(tmp_path / f"{name}.png") for name in FIGURES}
    plot_all(t, outs, dpi=40)  # figures without data are drawn with a note
    # the figures rule reads the tables back from CSV ("None" values become NaN there)
    search = nested_rf_search(iris[0], iris[1], {"max_depth": [None, 2]}, inner_splits=2)
    h = hparam_effects(pd.DataFrame(search["inner"]))
    h.to_csv(tmp_path / "h.csv", index=False)
    plot_all({"hparams": pd.read_csv(tmp_path / "h.csv")}, {"hparams": outs["hparams"]}, dpi=40)
    for path in outs.values():
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_forest_params_and_schema() -> None:
    assert forest_params({"n_estimators": 3, "max_features": "all"}) == {
        "n_estimators": 3,
        "max_features": None,
    }
    with pytest.raises(ValueError, match="tabular.forest"):
        forest_params({"trees": 3})
    cfg = {"tabular": {"enabled": True}}
    validate_config(cfg)
    assert cfg["tabular"]["rf_search"]["grid"]["max_depth"] == [None, 8]
    assert cfg["tabular"]["noise"]["levels"] == [0.0, 0.1, 0.2, 0.3, 0.4]
    with pytest.raises(ConfigError, match="tabular.wavelet.val_fraction"):
        validate_config({"tabular": {"wavelet": {"val_fraction": 1.5}}})
    with pytest.raises(ConfigError, match="tabular.baselines"):
        validate_config({"tabular": {"baselines": {"modles": []}}})


def test_plan_targets_and_subset_errors() -> None:
    from tabular_plan import TabularPlan  # workflow/rules (on sys.path via conftest)

    cfg = {"tabular": {"enabled": True, "datasets": ["iris", "diabetes"],
                       "rf_search": {"datasets": ["iris"]}, "noise": {"enabled": False},
                       "wavelet": {"trees_grid": []}}}  # fmt: skip
    validate_config(cfg)
    plan = TabularPlan(cfg["tabular"], "svg")
    assert plan.datasets("rf_search") == ["iris"] and plan.datasets("noise") == []
    assert "noise" not in plan.table_names() and "trees" not in plan.table_names()
    assert plan.results("rf_search") == ["results/tabular/iris/rf_search.json"]
    assert "results/figures/tabular_hparams.svg" in plan.targets()
    assert "results/figures/tabular_noise.svg" not in plan.targets()
    cfg["tabular"]["enabled"] = False
    assert TabularPlan(cfg["tabular"]).targets() == []
    cfg["tabular"]["wavelet"]["datasets"] = ["wine"]
    with pytest.raises(ValueError, match="tabular.wavelet.datasets"):
        TabularPlan(cfg["tabular"])


# ------------------------------------------------------------------------------------------
# a rule's job (mfoml.tabular.job)
# ------------------------------------------------------------------------------------------


def test_run_dataset_job_reads_the_job_and_writes_the_record(iris, tmp_path: Path) -> None:
    prepare_dataset("iris", tmp_path / "iris")
    save_folds(tmp_path / "folds.json", iris[1], n_splits=3, seed=0, stratified=True)
    seen = {}

    def compute(job):
        seen.update(name=job.data.name, shape=job.data.X.shape, cfg=job.cfg, n_jobs=job.n_jobs)
        return {"n_splits": job.folds["n_splits"]}

    job = SimpleNamespace(
        input=SimpleNamespace(data=str(tmp_path / "iris"), folds=str(tmp_path / "folds.json")),
        wildcards=SimpleNamespace(dataset="iris-copy"),
        params=SimpleNamespace(cfg='{"seed": 3}'),
        threads=2,
        output=[str(tmp_path / "out" / "record.json")],
    )
    record = run_dataset_job(job, compute)
    assert seen == {"name": "iris-copy", "shape": (150, 4), "cfg": {"seed": 3}, "n_jobs": 2}
    assert record["n_splits"] == 3
    assert record["meta"] == {
        "dataset": "iris-copy",
        "task": "classification",
        "n_samples": 150,
        "n_features": 4,
        "n_classes": 3,
    }
    assert json.loads((tmp_path / "out" / "record.json").read_text()) == record
