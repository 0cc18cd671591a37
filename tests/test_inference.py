"""Variant-level inference (issue 21; METHODS section 11), simulated with the project's own
functions: a clustered null (the variant, not the run, is the unit), a within-stratum effect
opposite to the between-strata contrast (one quantity per row under strata), the interval's
coverage of the within-stratum statistic, and guards for two injected faults (the sampled
permutation p without its +1, a bootstrap that ignores strata).

The simulations are small and seeded (under 30 s together on the shared 2-core machine).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from mfoml.analysis import runstats as rs
from mfoml.analysis.permutation import bootstrap_interval, permutation_test, smallest_p
from scipy import stats

ALPHA = 0.05


def _upper_bound(n_studies: int, p: float = ALPHA, level: float = 0.95) -> float:
    """Upper end of the central binomial interval of the rejection rate of a level-p test."""
    return stats.binom.interval(level, n_studies, p)[1] / n_studies


def _clustered_points(rng: np.random.Generator, n_var: int = 6, n_folds: int = 3) -> pd.DataFrame:
    """One checkpoint of ``n_var`` variants x ``n_folds`` folds: each variant has its own level
    of the feature and of the accuracy, drawn independently (no association), plus fold noise
    smaller than the variant effects (so the folds of a variant are alike)."""
    u, v = rng.normal(0, 1.0, n_var), rng.normal(0, 1.0, n_var)
    rows = []
    for i in range(n_var):
        for k in range(n_folds):
            rows.append(
                {
                    "experiment": "e",
                    "model": ["mlp", "conv"][i % 2],
                    "activation": f"act{i}",
                    "fold": k,
                    "run": f"act{i}/fold{k}",
                    "epoch": 12,
                    "alpha_last_inner": u[i] + rng.normal(0, 0.3),
                    "final_accuracy": v[i] + rng.normal(0, 0.3),
                }
            )
    return pd.DataFrame(rows)


def test_clustered_null_keeps_the_level_and_the_run_level_test_does_not():
    """6 variants x 3 folds with independent variant effects: the variant-level test rejects at
    most at the nominal rate; counting the 18 runs as exchangeable does not."""
    rng = np.random.default_rng(2121)
    n_studies = 200
    variant_p, run_p = [], []
    for s in range(n_studies):
        pts = _clustered_points(rng)
        row = rs.checkpoint_correlations(
            pts,
            features=["alpha_last_inner"],
            outcomes=["final_accuracy"],
            n_boot=100,
            seed=s,
        ).iloc[0]
        assert row["n_variants"] == 6 and row["n_runs"] == 18 and row["exact"]
        variant_p.append(row["p_value"])
        run_p.append(
            permutation_test(
                pts["alpha_last_inner"], pts["final_accuracy"], n_permutations=199, seed=s
            ).p_value
        )
    bound = _upper_bound(n_studies)
    fpr_variant = float(np.mean(np.array(variant_p) <= ALPHA))
    fpr_runs = float(np.mean(np.array(run_p) <= ALPHA))
    print(f"clustered null: variant-level {fpr_variant:.3f}, runs as units {fpr_runs:.3f}")
    assert fpr_variant <= bound
    assert fpr_runs > bound  # the defect the variant level removes


def _opposite_strata(rng: np.random.Generator, r: float = 0.7, per: int = 9):
    """Two models of ``per`` variants each: within a model, feature and accuracy are bivariate
    normal with correlation ``r``; between models the feature rises and the accuracy falls."""
    cov = [[1.0, r], [r, 1.0]]
    a = rng.multivariate_normal([0.0, 0.0], cov, size=per)
    b = rng.multivariate_normal([3.0, -3.0], cov, size=per)
    xy = np.vstack([a, b])
    return xy[:, 0], xy[:, 1], np.repeat(["mlp", "conv"], per)


def test_within_stratum_effect_opposite_to_the_between_strata_contrast_is_found_and_covered():
    """r = 0.7 within each of 2 models (18 variants), the models' contrast of opposite sign:
    the row's statistic is the within-stratum rho_w, found with power >= 0.5, its interval
    covers the true within-stratum Spearman rho in >= 90 % of studies, and the pooled rho
    (shown beside it) has the opposite sign."""
    rng = np.random.default_rng(77)
    r, n_studies = 0.7, 120
    true = 6 / math.pi * math.asin(r / 2)  # population Spearman rho of a bivariate normal
    found = covered = 0
    pooled, within = [], []
    for s in range(n_studies):
        x, y, model = _opposite_strata(rng, r)
        res = rs.correlate(x, y, strata=model, n_permutations=199, n_boot=400, seed=s)
        assert res["status"] == "ok" and res["n_variants"] == 18
        found += res["p_value"] <= ALPHA
        covered += res["ci_low"] <= true <= res["ci_high"]
        pooled.append(res["rho_pooled"])
        within.append(res["rho"])
    print(f"power {found / n_studies:.3f}, coverage {covered / n_studies:.3f}")
    assert found / n_studies >= 0.5
    assert covered / n_studies >= 0.90
    assert np.median(within) > 0.4 and np.median(pooled) < -0.4


def test_within_rho_is_the_size_weighted_mean_of_per_stratum_spearman(rng):
    x, y = rng.normal(size=11), rng.normal(size=11)
    strata = np.array(list("aaaabbbbbbc"))  # c: one unit, no within-stratum association
    rho_a = stats.spearmanr(x[:4], y[:4]).statistic
    rho_b = stats.spearmanr(x[4:10], y[4:10]).statistic
    res = permutation_test(x, y, strata=strata, n_permutations=50_000)
    assert res.rho == pytest.approx((4 * rho_a + 6 * rho_b) / 10)
    assert res.exact and res.n_permutations == math.factorial(4) * math.factorial(6)
    assert res.p_min == pytest.approx(2 / (math.factorial(4) * math.factorial(6)))


def test_smallest_attainable_p_and_underpowered_rows():
    assert smallest_p([3], 9999) == pytest.approx(1 / 3)  # 2 / 3!
    assert smallest_p([4], 9999) == pytest.approx(1 / 12)  # 2 / 4! = 0.083
    assert smallest_p([10], 999) == pytest.approx(1 / 1000)  # sampled: 1 / (1 + B)
    x = np.array([0.1, 0.2, 0.3, 0.4])
    res = rs.correlate(x, x, n_permutations=9999, n_boot=100)
    assert res["status"] == "underpowered" and res["rho"] == pytest.approx(1.0)
    assert res["p_min"] == pytest.approx(2 / 24) and res["p_value"] == pytest.approx(2 / 24)
    five = np.arange(5.0)
    assert rs.correlate(five, five, n_boot=100)["status"] == "ok"  # 2 / 5! = 0.017


def test_sampled_permutation_p_carries_its_plus_one():
    """Phipson & Smyth: with B random permutations p = (1 + hits) / (1 + B), never 0. A perfect
    monotone association of 12 units (12! permutations, 99 sampled) has no sampled permutation
    as extreme, so p is exactly 1 / 100."""
    x = np.arange(12.0)
    res = permutation_test(x, x**3, n_permutations=99, seed=0)
    assert not res.exact and res.n_permutations == 99
    assert res.p_value == pytest.approx(1 / 100)
    strat = permutation_test(x, x**3, strata=[0] * 6 + [1] * 6, n_permutations=99, seed=0)
    assert not strat.exact and strat.p_value == pytest.approx(1 / 100)


def test_bootstrap_resamples_within_strata_around_the_within_statistic():
    """Within each stratum the association is perfectly increasing; between the strata the
    feature rises while the outcome falls (pooled rho negative). Resampling within strata
    keeps rho_w = 1 in every resample; a bootstrap that mixed strata, or resampled the pooled
    rho, would not."""
    x = np.array([0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15], float)
    y = np.array([0, 1, 2, 3, 4, 5, -10, -9, -8, -7, -6, -5], float)
    strata = ["mlp"] * 6 + ["conv"] * 6
    ci = bootstrap_interval(x, y, strata=strata, n_boot=500, seed=1)
    assert ci.low == pytest.approx(1.0) and ci.high == pytest.approx(1.0)
    assert ci.n_valid == 500
    res = rs.correlate(x, y, strata=strata, n_boot=500)
    assert res["rho"] == pytest.approx(1.0) and res["rho_pooled"] < -0.3
    assert res["ci_low"] == pytest.approx(1.0)
