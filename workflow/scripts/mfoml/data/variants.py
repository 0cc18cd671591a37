"""Data-set variants of Zhang et al. (2017), "Understanding deep learning requires rethinking
generalization": random labels and random pixels.

- :func:`random_labels`: *every* label replaced by a class drawn uniformly from all
  ``n_classes`` classes (so about ``1/C`` of them keep their class by chance). This differs
  from label noise (``mfoml`` ``noise.flip_labels``), which changes a chosen fraction of
  labels to a *different* class.
- :func:`random_pixels`: each sample's pixels shuffled by its own fixed random permutation
  (Zhang et al.'s "random pixels"; ``per_sample=False`` gives their "shuffled pixels", one
  permutation for all samples). For images ``(N, C, H, W)`` and signals ``(N, C, L)`` the
  positions are permuted and the channel values of a position move together; for ``(N, D)``
  the features are permuted.
- :func:`gaussian_pixels`: every value replaced by Gaussian noise with a given mean and
  standard deviation (by default the data set's overall mean and standard deviation), Zhang et
  al.'s "Gaussian".

All are seeded with ``numpy.random.default_rng(seed)`` and return new arrays.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gaussian_pixels", "random_labels", "random_pixels"]


def random_labels(n: int | np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """``n`` labels drawn i.i.d. uniformly from ``[0, n_classes)``.

    Parameters
    ----------
    n : the number of labels, or the label array to replace (its length is used).
    n_classes : number of classes, >= 2.
    seed : seed of ``numpy.random.default_rng``.

    Returns
    -------
    int64 ``(n,)``.
    """
    if n_classes < 2:
        raise ValueError(f"random_labels: n_classes must be >= 2, got {n_classes}")
    size = len(n) if hasattr(n, "__len__") else int(n)
    return np.random.default_rng(seed).integers(0, n_classes, size=size).astype(np.int64)


def _positions_view(x: np.ndarray) -> tuple[np.ndarray, int]:
    """``x`` as ``(N, C, P)`` (channels, positions) and the number of positions ``P``."""
    if x.ndim < 2:
        raise ValueError(f"random_pixels: x must have shape (N, ...), got {x.shape}")
    if x.ndim == 2:  # (N, D): each feature is a position of one channel
        return x[:, None, :], x.shape[1]
    v = x.reshape(x.shape[0], x.shape[1], -1)
    return v, v.shape[2]


def random_pixels(x: np.ndarray, seed: int, *, per_sample: bool = True) -> np.ndarray:
    """Shuffle the positions of every sample with a fixed random permutation.

    Parameters
    ----------
    x : ``(N, C, H, W)``, ``(N, C, L)`` or ``(N, D)`` array.
    seed : seed of ``numpy.random.default_rng``; sample ``i`` gets the ``i``-th permutation.
    per_sample : one permutation per sample (random pixels); ``False``: one for all (shuffled
        pixels).

    Returns
    -------
    Array of ``x``'s shape and dtype; each sample's multiset of per-position channel vectors is
    unchanged.
    """
    x = np.asarray(x)
    v, p = _positions_view(x)
    rng = np.random.default_rng(seed)
    if per_sample:
        perm = np.argsort(rng.random((len(x), p)), axis=1)  # (N, P), a permutation per row
        out = np.take_along_axis(v, perm[:, None, :], axis=2)
    else:
        out = v[:, :, rng.permutation(p)]
    return np.ascontiguousarray(out).reshape(x.shape)


def gaussian_pixels(
    x: np.ndarray, seed: int, *, mean: float | None = None, std: float | None = None
) -> np.ndarray:
    """Gaussian noise of ``x``'s shape with the given (default: ``x``'s own) mean and std.

    Parameters
    ----------
    x : ``(N, ...)`` array (float).
    seed : seed of ``numpy.random.default_rng``.
    mean, std : of the noise (default: the mean and standard deviation of all values of ``x``;
        pass the training set's values when transforming a test split).

    Returns
    -------
    Array of ``x``'s shape, ``x``'s float dtype.
    """
    x = np.asarray(x)
    mu = float(x.mean(dtype=np.float64)) if mean is None else float(mean)
    sd = float(x.std(dtype=np.float64)) if std is None else float(std)
    if not (np.isfinite(mu) and np.isfinite(sd) and sd >= 0):
        raise ValueError(f"gaussian_pixels: need finite mean and std >= 0, got {mu}, {sd}")
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
    return (mu + sd * np.random.default_rng(seed).standard_normal(x.shape)).astype(dtype)
