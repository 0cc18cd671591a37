"""Label noise and regression target noise."""

from __future__ import annotations

import numpy as np
import pytest
from mfoml.data.noise import flip_labels, gaussian_target_noise
from scipy import stats


@pytest.mark.parametrize(
    ("n", "fraction"), [(1000, 0.2), (999, 0.1), (37, 0.5), (10, 0.25), (50, 0.0), (50, 1.0)]
)
def test_exact_count_and_mask(rng, n, fraction):
    y = rng.integers(0, 7, size=n)
    y_noisy, changed = flip_labels(y, fraction, n_classes=7, seed=1)
    assert changed.dtype == bool and changed.shape == (n,)
    assert changed.sum() == round(fraction * n)
    np.testing.assert_array_equal(changed, y_noisy != y)  # every marked label differs, others kept
    assert y_noisy.dtype == np.int64 and y_noisy.min() >= 0 and y_noisy.max() < 7


def test_seeded(rng):
    y = rng.integers(0, 5, size=300)
    a = flip_labels(y, 0.3, 5, seed=4)
    b = flip_labels(y, 0.3, 5, seed=4)
    c = flip_labels(y, 0.3, 5, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_input_not_modified(rng):
    y = rng.integers(0, 3, size=100)
    keep = y.copy()
    flip_labels(y, 0.5, 3, seed=0)
    np.testing.assert_array_equal(y, keep)


def test_new_labels_uniform_over_other_classes():
    """Chi-square: for each original class, the new labels are uniform over the 4 others."""
    n_classes, n = 5, 50_000
    y = np.arange(n) % n_classes
    y_noisy, changed = flip_labels(y, 0.6, n_classes, seed=123)
    for c in range(n_classes):
        sel = changed & (y == c)
        counts = np.bincount(y_noisy[sel], minlength=n_classes)
        assert counts[c] == 0
        others = np.delete(counts, c)
        p = stats.chisquare(others).pvalue
        assert p > 1e-3, (c, others, p)
    # which samples are changed is uniform too: no class is favoured
    per_class = np.bincount(y[changed], minlength=n_classes)
    assert stats.chisquare(per_class).pvalue > 1e-3


def test_invalid_arguments():
    y = np.array([0, 1, 2, 1])
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"fraction must lie in \[0, 1\]"):
            flip_labels(y, bad, 3, seed=0)
    with pytest.raises(ValueError, match="labels must lie in"):
        flip_labels(y, 0.5, 2, seed=0)
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        flip_labels(np.zeros(4, dtype=int), 0.5, 1, seed=0)
    with pytest.raises(ValueError, match="integer labels"):
        flip_labels(np.array([0.0, 1.0]), 0.5, 2, seed=0)


def test_gaussian_target_noise():
    y = np.linspace(-3, 3, 20_000)
    noisy = gaussian_target_noise(y, 0.5, seed=2)
    resid = noisy - y
    assert noisy.dtype == np.float64 and noisy.shape == y.shape
    assert abs(resid.mean()) < 4 * 0.5 / np.sqrt(y.size)
    assert abs(resid.std() - 0.5) < 0.02
    assert stats.kstest(resid / 0.5, "norm").pvalue > 1e-3
    np.testing.assert_array_equal(noisy, gaussian_target_noise(y, 0.5, seed=2))
    assert not np.array_equal(noisy, gaussian_target_noise(y, 0.5, seed=3))
    np.testing.assert_array_equal(gaussian_target_noise(y, 0.0, seed=2), y)
    with pytest.raises(ValueError, match="sigma must be finite and >= 0"):
        gaussian_target_noise(y, -1.0, seed=0)
