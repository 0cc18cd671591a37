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
:func:`corrupt_dataset` applies one of them to a data set in the normalized format (the data
rule's ``corrupt`` option of a data-set variant).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mfoml.data.store import load_dataset, write_normalized

__all__ = ["CORRUPTIONS", "corrupt_dataset", "gaussian_pixels", "random_labels", "random_pixels"]

#: The corruptions of :func:`corrupt_dataset`.
CORRUPTIONS = ("random_labels", "random_pixels", "shuffled_pixels", "gaussian_pixels")


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


def corrupt_dataset(path: str | os.PathLike[str], kind: str, seed: int) -> dict[str, Any]:
    """Corrupt a normalized data set in place and rewrite it (``meta.json`` last).

    Parameters
    ----------
    path : the normalized data-set directory (``mfoml.data.store``).
    kind : one of :data:`CORRUPTIONS`. ``random_labels`` replaces every *training* label
        (classification only; the test labels are kept, so test accuracy measures
        generalisation from random labels: chance level); the pixel corruptions replace the
        inputs of the training and the test split (``gaussian_pixels`` with the training
        set's mean and standard deviation for both; test images get their own permutations,
        seeded with ``seed + 1``).
    seed : seed of the corruption.

    Returns
    -------
    The new metadata: ``options.corrupt = kind`` and ``corruption = {kind, seed}`` added.
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"corrupt: unknown corruption {kind!r}; known: {', '.join(CORRUPTIONS)}")
    ds = load_dataset(path)
    x_train, y_train, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if kind == "random_labels":
        if ds.meta.get("task") != "classification":
            raise ValueError(f"{path}: random_labels needs a classification data set")
        y_train = random_labels(len(y_train), int(ds.meta["n_classes"]), seed)
    elif kind in ("random_pixels", "shuffled_pixels"):
        per_sample = kind == "random_pixels"
        x_train = random_pixels(x_train, seed, per_sample=per_sample)
        if x_test is not None:  # shuffled pixels: the same permutation for the test images
            x_test = random_pixels(
                x_test, seed if not per_sample else seed + 1, per_sample=per_sample
            )
    else:
        mu = float(np.mean(x_train, dtype=np.float64))
        sd = float(np.std(x_train, dtype=np.float64))
        x_train = gaussian_pixels(x_train, seed, mean=mu, std=sd)
        if x_test is not None:
            x_test = gaussian_pixels(x_test, seed + 1, mean=mu, std=sd)
    meta = {k: v for k, v in ds.meta.items() if k != "checksums"}
    meta["options"] = {**meta.get("options", {}), "corrupt": kind}
    meta["corruption"] = {"kind": kind, "seed": int(seed)}
    arrays: dict[str, Any] = {"x_train.npy": x_train, "y_train.npy": y_train}
    if x_test is not None:
        arrays.update({"x_test.npy": x_test, "y_test.npy": y_test})
    for fname in ds.meta.get("checksums", {}):  # other files (train_source_index.npy) stay
        if fname not in arrays:
            arrays[fname] = np.load(os.path.join(path, fname))
    return write_normalized(path, arrays, meta)
