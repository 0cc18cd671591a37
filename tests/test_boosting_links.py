"""Boosted-tree wavelets on the response scale (issue 22): XGBoost's log-link objectives
(``count:poisson``, ``reg:gamma``, ``reg:tweedie``) and scikit-learn's histogram gradient
boosting (its ``_predictors``), checked against the models' own ``predict()``."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb
from mfoml.wavelets.boosting import from_sklearn
from mfoml.wavelets.xgboost_trees import from_xgboost
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(3)
    X = rng.random((400, 5))
    rate = np.exp(0.5 + 2.0 * X[:, 0] - X[:, 1])
    y_count = rng.poisson(rate).astype(np.float64)
    y_pos = rng.gamma(2.0, rate / 2.0)  # strictly positive, for the gamma objective
    return X, y_count, y_pos


@pytest.mark.parametrize(
    "objective", ["count:poisson", "reg:gamma", "reg:tweedie", "reg:squarederror"]
)
def test_xgboost_log_link_curves_match_predict(counts, objective):
    X, y_count, y_pos = counts
    y = y_pos if objective == "reg:gamma" else y_count
    model = xgb.XGBRegressor(
        n_estimators=15, max_depth=3, learning_rate=0.3, objective=objective, n_jobs=1
    ).fit(X, y)
    wav = from_xgboost(model, X)
    assert wav.link == ("identity" if objective == "reg:squarederror" else "log")
    np.testing.assert_allclose(
        wav.raw_predict(X)[:, 0], model.predict(X, output_margin=True), rtol=1e-5, atol=1e-5
    )
    response = model.predict(X).astype(np.float64)
    np.testing.assert_allclose(wav.predict(X)[:, 0], response, rtol=1e-5)
    expected_mse = float(np.mean((y - response) ** 2))  # what predict() scores
    curve = wav.mterm_curve(X, y, np.array([0, wav.n_wavelets_ // 2, wav.n_wavelets_]))
    np.testing.assert_allclose(curve["mse"][-1], expected_mse, rtol=1e-5)
    staged = wav.staged_curve(X, y)
    np.testing.assert_allclose(staged["mse"][-1], expected_mse, rtol=1e-5)
    # the curve at M terms scores the response of the M-term model, never its margin
    half = wav.predict(X, int(curve["n_terms"][1]))[:, 0]
    np.testing.assert_allclose(curve["mse"][1], np.mean((y - half) ** 2), rtol=1e-9)
    if objective == "count:poisson":
        margin_mse = np.mean((y - model.predict(X, output_margin=True)) ** 2)
        assert margin_mse > 3 * expected_mse  # the old, meaningless score is far off


@pytest.mark.parametrize(
    ("cls", "kw", "target"),
    [
        (HistGradientBoostingRegressor, {"loss": "squared_error"}, "count"),
        (HistGradientBoostingRegressor, {"loss": "poisson"}, "count"),
        (HistGradientBoostingRegressor, {"loss": "gamma"}, "pos"),
        (HistGradientBoostingClassifier, {}, "binary"),
        (HistGradientBoostingClassifier, {}, "multi"),
    ],
)
def test_hist_gradient_boosting_supported(counts, cls, kw, target):
    X, y_count, y_pos = counts
    X = X.copy()
    X[np.random.default_rng(0).random(X.shape) < 0.05] = np.nan  # missing-value directions
    y = {"count": y_count, "pos": y_pos, "binary": y_count > 3, "multi": np.minimum(y_count, 2)}[
        target
    ]
    model = cls(max_iter=12, max_depth=3, random_state=0, **kw).fit(X, y)
    wav = from_sklearn(model, X)
    np.testing.assert_allclose(wav.raw_predict(X), model._raw_predict(X), atol=1e-10)
    if cls is HistGradientBoostingRegressor:
        response = model.predict(X)
        np.testing.assert_allclose(wav.predict(X)[:, 0], response, rtol=1e-10)
        curve = wav.mterm_curve(X, y, np.array([wav.n_wavelets_]))
        np.testing.assert_allclose(curve["mse"][0], np.mean((y - response) ** 2), rtol=1e-10)
    else:
        codes = np.unique(y, return_inverse=True)[1]
        curve = wav.mterm_curve(X, codes, np.array([wav.n_wavelets_]))
        np.testing.assert_allclose(curve["error"][0], np.mean(model.predict(X) != y))


def test_hist_gradient_boosting_refusals(counts):
    X, y_count, _ = counts
    Xc = X.copy()
    Xc[:, 2] = np.floor(Xc[:, 2] * 4)
    model = HistGradientBoostingRegressor(max_iter=5, categorical_features=[2], random_state=0)
    model.fit(Xc, y_count)
    with pytest.raises(NotImplementedError, match="HistGradientBoosting.*categorical"):
        from_sklearn(model, Xc)
    with pytest.raises(TypeError, match="HistGradientBoostingRegressor is not a fitted"):
        from_sklearn(HistGradientBoostingRegressor(), X)
