"""Label noise (classification) and target noise (regression), seeded.

``flip_labels`` relabels exactly ``round(fraction * N)`` samples (Python's ``round``: halves go to
the even integer), chosen uniformly without replacement; each chosen label is replaced by one of
the other ``n_classes - 1`` classes, uniformly. ``gaussian_target_noise`` adds i.i.d.
``N(0, sigma^2)`` noise to regression targets. Both use ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["flip_labels", "gaussian_target_noise"]


def flip_labels(
    y: np.ndarray, fraction: float, n_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Relabel a fraction of labels uniformly to another class.

    Parameters
    ----------
    y : int ``(N,)`` labels in ``[0, n_classes)``.
    fraction : fraction of labels to change, in [0, 1].
    n_classes : number of classes, >= 2.
    seed : seed of ``numpy.random.default_rng``.

    Returns
    -------
    ``(y_noisy, changed_mask)``: int64 ``(N,)`` labels and bool ``(N,)``, ``True`` exactly where
    the label was changed (``round(fraction * N)`` entries; ``y_noisy != y`` there).
    """
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"flip_labels: y must be integer labels (N,), got {y.dtype} {y.shape}")
    if not (isinstance(fraction, int | float | np.floating | np.integer) and 0 <= fraction <= 1):
        raise ValueError(f"flip_labels: fraction must lie in [0, 1], got {fraction!r}")
    if n_classes < 2:
        raise ValueError(f"flip_labels: n_classes must be >= 2, got {n_classes}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"flip_labels: labels must lie in [0, {n_classes}), found [{y.min()}, {y.max()}]"
        )
    n = y.shape[0]
    m = round(float(fraction) * n)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(n, size=m, replace=False)
    # A shift in 1..n_classes-1 modulo n_classes hits every other class with equal probability.
    shift = rng.integers(1, n_classes, size=m)
    y_noisy = y.astype(np.int64, copy=True)
    y_noisy[chosen] = (y_noisy[chosen] + shift) % n_classes
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return y_noisy, mask


def gaussian_target_noise(y: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Add i.i.d. Gaussian noise to regression targets.

    Parameters
    ----------
    y : float ``(N,)`` or ``(N, T)`` targets.
    sigma : standard deviation of the noise, in the units of ``y``, >= 0.
    seed : seed of ``numpy.random.default_rng``.

    Returns
    -------
    float64 array of ``y``'s shape: ``y + sigma * z`` with ``z ~ N(0, 1)``.
    """
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"gaussian_target_noise: sigma must be finite and >= 0, got {sigma!r}")
    y = np.asarray(y, dtype=np.float64)
    rng = np.random.default_rng(seed)
    return y + sigma * rng.standard_normal(y.shape)
