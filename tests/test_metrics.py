"""mfoml.analysis.metrics agrees with scikit-learn's own metric functions."""

from __future__ import annotations

import numpy as np
import pytest
from mfoml.analysis.metrics import classification_metrics, confusion_matrix, regression_metrics
from sklearn import metrics as skm


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = 5
    y = rng.integers(0, c, size=200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, c, size=200))
    m = classification_metrics(y, p, c)
    labels = list(range(c))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p), abs=1e-12)
    assert m["precision_macro"] == pytest.approx(
        skm.precision_score(y, p, labels=labels, average="macro", zero_division=0), abs=1e-12
    )
    assert m["recall_macro"] == pytest.approx(
        skm.recall_score(y, p, labels=labels, average="macro", zero_division=0), abs=1e-12
    )
    assert m["f1_macro"] == pytest.approx(
        skm.f1_score(y, p, labels=labels, average="macro", zero_division=0), abs=1e-12
    )
    np.testing.assert_allclose(
        m["precision_per_class"],
        skm.precision_score(y, p, labels=labels, average=None, zero_division=0),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        m["recall_per_class"],
        skm.recall_score(y, p, labels=labels, average=None, zero_division=0),
        atol=1e-12,
    )
    assert m["confusion_matrix"] == skm.confusion_matrix(y, p, labels=labels).tolist()
    assert m["support"] == np.bincount(y, minlength=c).tolist()
    assert [r["support"] for r in m["per_class"]] == m["support"]


def test_zero_division_is_explicit() -> None:
    # class 2 never predicted (precision 0/0), class 3 absent from y_true (recall 0/0),
    # class 4 absent from both.
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 3, 0, 1])
    m = classification_metrics(y, p, 5)
    labels = list(range(5))
    for zd in (0,):
        assert m["precision_macro"] == pytest.approx(
            skm.precision_score(y, p, labels=labels, average="macro", zero_division=zd)
        )
        assert m["recall_macro"] == pytest.approx(
            skm.recall_score(y, p, labels=labels, average="macro", zero_division=zd)
        )
    assert m["precision_undefined"] == [2, 4]
    assert m["recall_undefined"] == [3, 4]
    # by hand: precision = [1/2, 1/3, 0, 0, 0], recall = [1/2, 1/2, 0, 0, 0]
    np.testing.assert_allclose(m["precision_per_class"], [0.5, 1 / 3, 0, 0, 0])
    np.testing.assert_allclose(m["recall_per_class"], [0.5, 0.5, 0, 0, 0])
    assert m["accuracy"] == pytest.approx(2 / 6)


def test_confusion_matrix_by_hand_and_errors() -> None:
    cm = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 2, 1, 2]), 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="outside"):
        classification_metrics(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(np.array([0, 1]), np.array([0]), 3)


@pytest.mark.parametrize("multi", [False, True])
def test_regression_matches_sklearn(multi: bool) -> None:
    rng = np.random.default_rng(7)
    shape = (100, 3) if multi else (100,)
    y = rng.normal(size=shape) * 3 + 1
    p = y + rng.normal(size=shape)
    m = regression_metrics(y, p)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, p), abs=1e-12)
    assert m["mse"] == pytest.approx(skm.mean_squared_error(y, p), abs=1e-12)
    assert m["rmse"] == pytest.approx(skm.root_mean_squared_error(y, p), abs=1e-12)
    assert m["r2"] == pytest.approx(skm.r2_score(y, p), abs=1e-12)
    # std of the absolute error, written independently per sample
    per_sample = [float(np.mean(np.abs(np.atleast_1d(a - b)))) for a, b in zip(p, y, strict=True)]
    assert m["mae_std"] == pytest.approx(float(np.std(per_sample)), abs=1e-12)


def test_regression_constant_target_and_nan() -> None:
    y = np.full(5, 2.0)
    assert regression_metrics(y, y)["r2"] == pytest.approx(skm.r2_score(y, y))
    p = y + 1
    assert regression_metrics(y, p)["r2"] == pytest.approx(skm.r2_score(y, p))
    with pytest.raises(ValueError, match="NaN"):
        regression_metrics(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
