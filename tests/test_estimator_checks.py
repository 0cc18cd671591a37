"""The wavelet estimators keep scikit-learn's estimator contract (``parametrize_with_checks``),
and their parameter constraints (one table per family, :mod:`mfoml.wavelets.params`) hold for
the estimators, the sparsity probe and its fast builder alike.

The checks run on small forests and boosted models (a few trees of depth 4) to stay fast.
"""

from __future__ import annotations

import numpy as np
import pytest
from mfoml.wavelets import WaveletForestClassifier, WaveletForestRegressor, sparsity_probe
from mfoml.wavelets.boosting import WaveletBoostingClassifier, WaveletBoostingRegressor
from mfoml.wavelets.params import (
    BOOSTING_PARAMS,
    FOREST_PARAMS,
    PROBE_PARAMS,
    check_params,
    sklearn_constraints,
)
from mfoml.wavelets.params import InvalidParameterError as LocalInvalidParameterError
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints
from sklearn.utils.estimator_checks import parametrize_with_checks

ESTIMATORS = [
    WaveletForestRegressor(3, max_depth=4, random_state=0),
    WaveletForestClassifier(3, max_depth=4, random_state=0),
    WaveletBoostingRegressor(10, max_depth=2, learning_rate=0.5, random_state=0),
    WaveletBoostingClassifier(10, max_depth=2, learning_rate=0.5, random_state=0),
]


def _expected_failed_checks(estimator: object) -> dict[str, str]:
    """Checks that cannot hold for a wavelet estimator, with the reason: none at present (every
    check of scikit-learn 1.9 passes for all four)."""
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_predict_before_fit_raises_not_fitted(estimator):
    X = np.zeros((4, 2))
    with pytest.raises(NotFittedError):
        estimator.predict(X)


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (WaveletForestClassifier, {"n_estimators": 0}, r"'n_estimators' parameter .* range \[1"),
        (WaveletForestClassifier, {"max_depth": -1}, r"'max_depth' parameter .* or None"),
        (WaveletForestRegressor, {"importance_tau": 0.0}, r"'importance_tau' parameter"),
        (WaveletForestClassifier, {"backend": "gpu"}, r"'backend' parameter .*'fast'"),
        (WaveletBoostingClassifier, {"n_estimators": 0}, r"'n_estimators' parameter"),
        (WaveletBoostingRegressor, {"max_depth": -1}, r"'max_depth' parameter"),
        (WaveletBoostingRegressor, {"loss": "l1"}, r"'loss' parameter"),
    ],
)
def test_estimator_parameter_errors(cls, kwargs, message):
    X = np.arange(24.0).reshape(12, 2)
    y = np.arange(12) % 2
    with pytest.raises(InvalidParameterError, match=message):
        cls(**kwargs).fit(X, y)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_trees": 0}, r"The 'n_trees' parameter of sparsity_probe must be an int in the range"),
        ({"max_depth": -1}, r"The 'max_depth' parameter of sparsity_probe .* or None\. Got -1"),
        ({"max_depth": -1, "backend": "sklearn"}, r"'max_depth' parameter of sparsity_probe"),
        ({"n_trees": 0, "task": "regression"}, r"'n_trees' parameter of sparsity_probe"),
        ({"max_features": 1.5}, r"'max_features' parameter of sparsity_probe"),
    ],
)
def test_probe_parameter_errors(kwargs, message):
    """Both builders (the fast one for classification, scikit-learn's) refuse bad settings
    before fitting, with scikit-learn's message, not an IndexError."""
    X = np.random.default_rng(0).normal(size=(30, 3))
    y = np.arange(30) % 3 if kwargs.get("task") != "regression" else X[:, 0]
    with pytest.raises(LocalInvalidParameterError, match=message) as info:
        sparsity_probe(X, y, **kwargs)
    assert isinstance(info.value, ValueError)


# Values probing every kind of constraint: ints, floats on both sides of bounds, strings,
# None, booleans, numpy scalars, a RandomState and wrong types.
_VALUES = [0, 1, 2, -1, 3, np.int64(2), 0.0, 0.5, 1.0, 1.5, -0.5, True, np.True_, None, "sqrt",
           "log2", "num_samples", "volume", "fast", "auto", "sklearn", "nope", [1], 2**32,
           np.random.RandomState(0), float("inf"), float("nan"), -float("inf")]  # fmt: skip


@pytest.mark.parametrize(
    "table", [FOREST_PARAMS, BOOSTING_PARAMS, PROBE_PARAMS], ids=["forest", "boosting", "probe"]
)
def test_local_check_agrees_with_sklearn(table):
    """The scikit-learn-free check (the probe's) accepts exactly what scikit-learn's validator
    accepts under the converted constraints."""
    converted = sklearn_constraints(table)
    for name in table:
        for value in _VALUES:
            try:
                validate_parameter_constraints(converted, {name: value}, "probe")
                sk_ok = True
            except InvalidParameterError:
                sk_ok = False
            try:
                check_params({name: value}, table, "probe")
                ok = True
            except LocalInvalidParameterError:
                ok = False
            assert ok == sk_ok, (name, value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_estimators": 0}, r"The 'n_estimators' parameter of FastForestRegressor must be"),
        ({"max_depth": -1}, r"The 'max_depth' parameter of FastForestRegressor must be"),
    ],
)
def test_fast_builder_settings_checked_before_fitting(kwargs, message):
    """The fast builder does not check its settings itself; the decomposition that fits it
    does, with the same table."""
    from mfoml.wavelets.decompose import fit_decompose
    from mfoml.wavelets.fasttree import FastForestRegressor

    X = np.arange(20.0).reshape(10, 2)
    with pytest.raises(LocalInvalidParameterError, match=message):
        fit_decompose(X, np.eye(2)[np.arange(10) % 2], FastForestRegressor(**kwargs), "volume")
