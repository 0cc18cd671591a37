"""mfoml.analysis.runstats (run-level inference) and mfoml.analysis.studies (study tables).

The permutation test is checked against scipy.stats.permutation_test and a brute-force loop,
its false-positive rate on simulated null studies against the binomial bounds of the nominal
level (and the pooled-checkpoint test it replaces is shown to fail that check), its power on a
simulated real effect, and the bootstrap interval's coverage of a known population rho.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from mfoml.analysis import runstats as rs
from mfoml.analysis import studies
from scipy import stats

ALPHA = 0.05
N_STUDIES = 400
EPOCHS = np.array([1, 4, 8, 12])


def _ranks(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Ranks of tie-free data by double argsort (independent of scipy's rankdata)."""
    return np.argsort(np.argsort(a, axis=axis), axis=axis).astype(float)


def _pearson_rows(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    return (a * b).sum(axis=axis) / np.sqrt((a * a).sum(axis=axis) * (b * b).sum(axis=axis))


def _binomial_bounds(n: int, p: float = ALPHA, level: float = 0.999) -> tuple[float, float]:
    lo, hi = stats.binom.interval(level, n, p)
    return lo / n, hi / n


def _null_studies(rng: np.random.Generator, n_studies: int, n_runs: int, effect: float = 0.0):
    """Simulated studies: per run and checkpoint a feature x and an accuracy y.

    Both rise with training (a common trend over ``EPOCHS``) and carry a persistent per-run
    level (so a run's checkpoints are dependent); x and y are independent at every fixed
    checkpoint unless ``effect`` > 0, which adds ``effect`` times the run's feature level to its
    accuracy level. Returns x, y of shape (studies, runs, checkpoints).
    """
    shape = (n_studies, n_runs, 1)
    u = rng.normal(0, 0.05, shape)  # run level of the feature
    v = rng.normal(0, 0.02, shape)  # run level of the accuracy
    x = np.array([0.1, 0.3, 0.45, 0.5]) + u + rng.normal(0, 0.03, (n_studies, n_runs, 4))
    y = (
        np.array([0.4, 0.7, 0.8, 0.85])
        + v
        + effect * u
        + rng.normal(0, 0.01, (n_studies, n_runs, 4))
    )
    return x, y


def test_spearman_matches_scipy_with_ties(rng):
    x = rng.integers(0, 4, 25).astype(float)
    y = rng.normal(size=25)
    assert rs.spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert math.isnan(rs.spearman_rho(np.ones(5), np.arange(5.0)))


def test_exact_permutation_p_matches_scipy(rng):
    x, y = rng.normal(size=7), rng.normal(size=7)
    y = y + x
    ours = rs.permutation_test(x, y, n_permutations=10_000)
    ref = stats.permutation_test(
        (x,),
        lambda a, axis: _pearson_rows(_ranks(a, axis), _ranks(y), axis),
        permutation_type="pairings",
        n_resamples=np.inf,
        vectorized=True,
    )
    assert ours.exact and ours.n_permutations == math.factorial(7)
    assert ours.rho == pytest.approx(ref.statistic)
    assert ours.p_value == pytest.approx(ref.pvalue)


def _within_by_hand(x, y, groups):
    """Stratum-size-weighted mean of scipy's per-stratum Spearman rho."""
    rhos = [stats.spearmanr(x[g], y[g]).statistic for g in groups]
    return sum(len(g) * r for g, r in zip(groups, rhos, strict=True)) / sum(map(len, groups))


def test_stratified_exact_p_matches_brute_force(rng):
    """Under strata the statistic is the within-stratum rho_w, and the p-value is of rho_w."""
    x, y = rng.normal(size=6), rng.normal(size=6)
    strata = ["a", "b", "a", "b", "a", "b"]
    groups = [[0, 2, 4], [1, 3, 5]]
    rho = _within_by_hand(x, y, groups)
    hits = total = 0
    for pa in itertools.permutations(groups[0]):
        for pb in itertools.permutations(groups[1]):
            perm = np.arange(6)
            perm[groups[0]] = pa
            perm[groups[1]] = pb
            total += 1
            hits += abs(_within_by_hand(x, y[perm], groups)) >= abs(rho) - 1e-12
    ours = rs.permutation_test(x, y, strata=strata)
    assert ours.exact and ours.n_permutations == total == 36
    assert ours.rho == pytest.approx(rho)
    assert ours.p_value == pytest.approx(hits / total)
    assert ours.p_min == pytest.approx(2 / 36)


def test_random_permutations_stay_within_strata_and_approach_exact_p(rng):
    codes = np.array([0, 1, 0, 2, 1, 0, 2, 2])
    perms = rs._random_permutations(codes, 500, rng)
    assert (np.sort(perms, axis=1) == np.arange(8)).all()  # every row is a permutation
    assert (codes[perms] == codes).all()  # each index goes to one of its own stratum
    x, y = rng.normal(size=8), rng.normal(size=8)
    exact = rs.permutation_test(x, y, n_permutations=50_000)
    mc = rs.permutation_test(x, y, n_permutations=20_000, seed=3)
    assert exact.exact and not mc.exact and mc.n_permutations == 20_000
    assert mc.p_value == pytest.approx(exact.p_value, abs=0.015)


def test_null_studies_false_positive_rate_is_nominal_and_pooled_test_is_not():
    """Feature and accuracy both trend with training but are independent at every checkpoint:
    the run-level permutation test rejects at about 5 %, the pooled-checkpoint Spearman test
    (the method it replaces) nearly always."""
    rng = np.random.default_rng(20240610)
    x, y = _null_studies(rng, N_STUDIES, n_runs=16)
    headline = np.array(
        [
            rs.permutation_test(x[s, :, -1], y[s, :, -1], n_permutations=499, seed=s).p_value
            for s in range(N_STUDIES)
        ]
    )
    change = np.array(
        [
            rs.permutation_test(
                x[s, :, -1] - x[s, :, 0], y[s, :, -1], n_permutations=499, seed=s
            ).p_value
            for s in range(N_STUDIES)
        ]
    )
    pooled = np.array(
        [stats.spearmanr(x[s].ravel(), y[s].ravel()).pvalue for s in range(N_STUDIES)]
    )
    lo, hi = _binomial_bounds(N_STUDIES)
    fpr_headline, fpr_change = (headline <= ALPHA).mean(), (change <= ALPHA).mean()
    fpr_pooled = (pooled <= ALPHA).mean()
    print(f"FPR run-level {fpr_headline:.3f}, dynamics {fpr_change:.3f}, pooled {fpr_pooled:.3f}")
    assert lo <= fpr_headline <= hi
    assert lo <= fpr_change <= hi
    assert fpr_pooled > 0.5


def test_strata_protect_against_a_confounding_model():
    """Two models differ in both the feature and accuracy, with no relation within a model:
    permuting within the model keeps the nominal rate; ignoring the strata does not."""
    rng = np.random.default_rng(7)
    n, n_runs = 300, 16
    model = np.repeat([0, 1], n_runs // 2)
    x = rng.normal(size=(n, n_runs)) + 3.0 * model
    y = rng.normal(size=(n, n_runs)) + 3.0 * model
    within = np.array(
        [
            rs.permutation_test(x[s], y[s], strata=model, n_permutations=199, seed=s).p_value
            for s in range(n)
        ]
    )
    plain = np.array(
        [rs.permutation_test(x[s], y[s], n_permutations=199, seed=s).p_value for s in range(n)]
    )
    lo, hi = _binomial_bounds(n)
    assert lo <= (within <= ALPHA).mean() <= hi
    assert (plain <= ALPHA).mean() > 0.8


def test_real_effect_is_found():
    """Final accuracy carries the run's feature level: Pearson r about 0.78 between the final
    feature and the final accuracy across runs (16 runs per study)."""
    rng = np.random.default_rng(11)
    n = 100
    x, y = _null_studies(rng, n, n_runs=16, effect=1.0)
    p = np.array(
        [
            rs.permutation_test(x[s, :, -1], y[s, :, -1], n_permutations=499, seed=s).p_value
            for s in range(n)
        ]
    )
    assert (p <= ALPHA).mean() >= 0.85


def test_bootstrap_interval_covers_the_population_rho():
    """Bivariate normal with Pearson r = 0.5: population Spearman rho = (6/pi) asin(r/2)."""
    rng = np.random.default_rng(5)
    r, n, studies_n = 0.5, 40, 200
    true = 6 / math.pi * math.asin(r / 2)
    cov = [[1, r], [r, 1]]
    covered = 0
    for s in range(studies_n):
        xy = rng.multivariate_normal([0, 0], cov, size=n)
        ci = rs.bootstrap_interval(xy[:, 0], xy[:, 1], n_boot=400, seed=s)
        assert ci.low <= ci.high and ci.n_valid == 400
        covered += ci.low <= true <= ci.high
    assert 0.85 <= covered / studies_n <= 0.99


def test_bootstrap_resamples_stay_within_strata(rng):
    codes = np.array([0, 0, 1, 1, 1, 2])
    idx = rs._resample_indices(codes, 300, rng)
    assert (codes[idx] == codes).all()
    ci = rs.bootstrap_interval(np.arange(6.0), np.arange(6.0), strata=codes, n_boot=50)
    assert ci.low == ci.high == 1.0


def test_holm_by_hand():
    adj = rs.holm([0.01, 0.04, 0.03, np.nan])
    np.testing.assert_allclose(adj[:3], [0.03, 0.06, 0.06])
    assert np.isnan(adj[3])


def _points(rng, experiments=("e1",), n_runs=6, epochs=(1, 5)):
    rows = []
    for e in experiments:
        for r in range(n_runs):
            for ep in epochs:
                rows.append(
                    {
                        "experiment": e,
                        "model": f"m{r % 2}",
                        "activation": f"a{r}",  # one run per variant
                        "run": f"{e}/run{r}",
                        "epoch": ep,
                        "alpha_last_inner": rng.normal(),
                        "alpha_depth_slope": rng.normal(),
                        "ncc_mismatch_penultimate": rng.random(),
                        "accuracy": rng.random(),
                    }
                )
    return pd.DataFrame(rows)


def test_checkpoint_correlations_table(rng):
    pts = _points(rng, experiments=("e1", "e2"))
    finals = pts.loc[pts.groupby("run")["epoch"].idxmax(), ["run", "accuracy"]]
    pts = pts.merge(finals.rename(columns={"accuracy": "final_accuracy"}), on="run")
    pts.loc[pts["experiment"] == "e2", "alpha_depth_slope"] = 0.3  # constant
    pts.loc[(pts["experiment"] == "e2"), "ncc_mismatch_penultimate"] = np.nan  # no data
    table = rs.checkpoint_correlations(pts, min_runs=3, n_permutations=999, n_boot=200)
    assert list(table.columns) == rs.CORRELATION_COLUMNS
    within = table[table["scope"] == "within experiment"]
    assert len(within) == 2 * 2 * 3 * 2  # experiments x epochs x features x outcomes
    assert set(within.loc[within["headline"], "epoch"]) == {5}
    row = within[
        (within["experiment"] == "e1")
        & (within["epoch"] == 1)
        & (within["feature"] == "alpha_last_inner")
        & (within["outcome"] == "final_accuracy")
    ].iloc[0]
    part = pts[(pts["experiment"] == "e1") & (pts["epoch"] == 1)]
    assert row["rho"] == pytest.approx(
        stats.spearmanr(part["alpha_last_inner"], part["final_accuracy"]).statistic
    )
    assert row["status"] == "ok" and row["n_runs"] == 6 and row["n_variants"] == 6
    assert row["exact"] and row["p_min"] == pytest.approx(2 / math.factorial(6))
    assert row["n_permutations"] == math.factorial(6)
    assert row["ci_low"] <= row["rho"] <= row["ci_high"]
    e2 = within[within["experiment"] == "e2"]
    assert (e2.loc[e2["feature"] == "alpha_depth_slope", "status"] == "constant").all()
    assert (e2.loc[e2["feature"] == "ncc_mismatch_penultimate", "status"] == "no_data").all()
    across = table[table["scope"] == "across experiments"]
    assert (across["experiment"] == "all").all() and (across["n_runs"] <= 12).all()
    for _, fam in within.groupby("experiment"):
        np.testing.assert_allclose(fam["p_holm"], rs.holm(fam["p_value"]), equal_nan=True)
    few = rs.checkpoint_correlations(pts, min_runs=7, n_boot=10)
    assert set(few.loc[few["scope"] == "within experiment", "status"]) <= {
        "too_few_variants",
        "no_data",
    }
    with pytest.raises(ValueError, match="more than one row"):
        rs.checkpoint_correlations(pd.concat([pts, pts.iloc[:1]]), n_boot=10)


def test_dynamics_features_by_hand():
    pts = pd.DataFrame(
        {
            "experiment": "e",
            "run": ["a", "a", "a", "b", "b", "b", "c"],
            "activation": ["a", "a", "a", "b", "b", "b", "c"],  # one run per variant
            "epoch": [1, 4, 12, 1, 4, 12, 12],
            "alpha_last_inner": [0.2, 0.3, 0.5, 0.1, 0.1, 0.15, 0.4],
            "alpha_depth_slope": [0.0, 0.01, 0.03, 0.0, 0.0, -0.02, 0.1],
            "ncc_mismatch_penultimate": [0.5, 0.08, 0.01, 0.6, 0.4, 0.2, np.nan],
            "final_accuracy": [0.9, 0.9, 0.9, 0.7, 0.7, 0.7, 0.8],
        }
    )
    dyn = rs.dynamics_features(pts, ncc_threshold=0.1).set_index("run")
    assert dyn.loc["a", "alpha_last_inner_change"] == pytest.approx(0.3)
    assert dyn.loc["b", "alpha_last_inner_change"] == pytest.approx(0.05)
    assert math.isnan(dyn.loc["c", "alpha_last_inner_change"])  # one checkpoint
    assert dyn.loc["a", "alpha_depth_slope_final"] == pytest.approx(0.03)
    assert dyn.loc["a", "ncc_epoch_below"] == 4 and not dyn.loc["a", "ncc_never_below"]
    assert math.isnan(dyn.loc["b", "ncc_epoch_below"]) and dyn.loc["b", "ncc_never_below"]
    assert math.isnan(dyn.loc["c", "ncc_never_below"])  # no NCC values at all
    assert dyn.loc["b", "final_accuracy"] == 0.7 and dyn.loc["a", "n_checkpoints"] == 3
    # a run that never gets below the threshold ranks after every run that does
    many = pd.concat([dyn.reset_index()] * 1, ignore_index=True)
    table = rs.dynamics_correlations(many, features=["ncc_epoch_below"], min_runs=2, n_boot=20)
    row = table.iloc[0]
    assert row["n_runs"] == 2 and row["n_variants"] == 2 and row["rho"] == pytest.approx(-1.0)
    assert row["status"] == "underpowered" and row["p_min"] == 1.0  # 2 units: p >= 1


def _epochs():
    rows = []
    # run a: IT at epoch 3, best test at epoch 5 (in the terminal phase)
    a_train = [0.6, 0.9, 1.0, 1.0, 1.0, 1.0]
    a_test = [0.5, 0.7, 0.75, 0.76, 0.8, 0.78]
    # run b: IT at epoch 2, best test at epoch 2 (at IT, not after it)
    b_train = [0.8, 1.0, 1.0, 1.0, 1.0, 1.0]
    b_test = [0.6, 0.85, 0.8, 0.8, 0.8, 0.8]
    # run c: never interpolates
    c_train = [0.5, 0.6, 0.7, 0.8, 0.9, 0.99]
    c_test = [0.4, 0.5, 0.6, 0.65, 0.7, 0.72]
    for name, loss, fold, tr, te in [
        ("a", "ce", 0, a_train, a_test),
        ("b", "ce", 1, b_train, b_test),
        ("c", "svsl", 0, c_train, c_test),
    ]:
        for ep, (p, q) in enumerate(zip(tr, te, strict=True), start=1):
            rows.append(
                {
                    "experiment": "x",
                    "dataset": "d",
                    "model": "m",
                    "activation": "relu",
                    "loss": loss,
                    "noise": 0.0,
                    "seed": 0,
                    "fold": fold,
                    "run": name,
                    "epoch": ep,
                    "train_eval_acc": p,
                    "train_acc": 1.0,  # the running mini-batch accuracy: never the threshold
                    "target_acc": q,
                }
            )
    return pd.DataFrame(rows)


def test_training_phases_by_hand():
    ph = studies.training_phases(_epochs()).set_index("run")
    assert ph.loc["a", "it_epoch"] == 3 and ph.loc["b", "it_epoch"] == 2
    assert math.isnan(ph.loc["c", "it_epoch"]) and math.isnan(ph.loc["c", "acc_at_it"])
    assert (ph["eot_epoch"] == 6).all()
    assert ph.loc["a", "best_epoch"] == 5 and ph.loc["a", "best_acc"] == 0.8
    assert ph.loc["a", "acc_at_it"] == 0.75 and ph.loc["a", "acc_at_eot"] == 0.78
    assert ph.loc["a", "best_in_tpt"] == 1.0 and ph.loc["b", "best_in_tpt"] == 0.0
    assert math.isnan(ph.loc["c", "best_in_tpt"]) and ph.loc["a", "tpt_epochs"] == 3
    assert ph.loc["c", "status"] == "tpt_not_reached" and ph.loc["a", "status"] == "ok"
    with pytest.raises(KeyError, match="train_eval_acc"):
        studies.training_phases(_epochs().drop(columns="train_eval_acc"))
    assert studies.training_phases(_epochs(), tol=0.02).set_index("run").loc["c", "it_epoch"] == 6

    pivot = studies.phases_pivot(ph.reset_index())
    assert len(pivot) == 1
    other = ph.reset_index().assign(dataset="d2", noise=0.2, run=lambda f: f["run"] + "2")
    two = studies.phases_pivot(pd.concat([ph.reset_index(), other[other["loss"] == "ce"]]))
    assert two[["dataset", "noise"]].values.tolist() == [["d", 0.0], ["d2", 0.2]]  # no product
    row = pivot.iloc[0]
    assert row["ce:best_acc_mean"] == pytest.approx(0.825)
    assert row["ce:best_acc_std"] == pytest.approx(np.std([0.8, 0.85], ddof=1))
    assert row["ce:best_acc_n"] == 2 and row["svsl:best_acc_n"] == 1
    assert math.isnan(row["svsl:best_acc_std"])  # one fold: undefined, not 0
    assert row["svsl:it_epoch_n"] == 0
    assert row["svsl:n_tpt_not_reached"] == 1 and row["svsl:n_runs"] == 1
    assert row["ce:n_tpt_not_reached"] == 0 and row["ce:n_runs"] == 2
    assert row["svsl:best_in_tpt_n"] == 0  # NaN, not "0.0 +- 0.0"
    assert studies.format_mean_std(0.825, 0.0354) == "0.825 +- 0.035"
    assert studies.format_mean_std(0.5, np.nan) == "0.500"


def test_noise_table_uses_the_last_inner_layer_at_the_last_checkpoint():
    rows = []
    for noise, base in [(0.0, 0.3), (0.2, 0.1)]:
        for fold in range(3):
            for epoch in (1, 10):
                for layer, pen in [("block1", False), ("block2", True)]:
                    rows.append(
                        {
                            "experiment": "noise",
                            "dataset": "d",
                            "model": "m",
                            "activation": "relu",
                            "loss": "ce",
                            "noise": noise,
                            "seed": 0,
                            "fold": fold,
                            "run": f"n{noise}/f{fold}",
                            "epoch": epoch,
                            "layer": layer,
                            "is_penultimate": pen,
                            "alpha": base + 0.01 * fold + (epoch == 1) + (not pen),
                            "n_wavelets": 100.0 + fold,
                        }
                    )
    frame = pd.DataFrame(rows)
    t = studies.noise_table(frame)
    by_name = studies.noise_table(frame, {r: "block2" for r in frame["run"]})
    pd.testing.assert_frame_equal(t, by_name)
    assert studies.noise_table(frame.drop(columns="alpha")).empty  # layer not probed
    assert list(t["noise"]) == [0.0, 0.2]
    assert t["alpha_mean"].tolist() == pytest.approx([0.31, 0.11])
    assert t["alpha_std"].tolist() == pytest.approx([0.01, 0.01])
    assert t["alpha_n"].tolist() == [3, 3] and t["n_wavelets_mean"].tolist() == [101.0, 101.0]


def test_confused_pairs_by_hand():
    def matrix(run, fold, m):
        return [
            {
                "experiment": "e",
                "dataset": "d",
                "run": run,
                "fold": fold,
                "true": t,
                "predicted": p,
                "count": m[t][p],
            }
            for t in range(3)
            for p in range(3)
        ]

    conf = pd.DataFrame(
        matrix("r0", 0, [[8, 2, 0], [0, 10, 0], [1, 3, 6]])
        + matrix("r1", 1, [[10, 0, 0], [0, 9, 1], [0, 5, 5]])
    )
    top = studies.confused_pairs(conf, top=2)
    assert top[["true", "predicted"]].values.tolist() == [[2, 1], [0, 1]]
    first = top.iloc[0]
    assert first["count"] == 8 and first["rank"] == 1 and first["n_runs"] == 2
    assert first["rate"] == pytest.approx(8 / 20)
    assert first["share_of_errors"] == pytest.approx(8 / 12)
    assert first["rate_mean"] == pytest.approx(0.4)
    assert first["rate_std"] == pytest.approx(np.std([0.3, 0.5], ddof=1))
