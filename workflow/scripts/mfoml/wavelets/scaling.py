"""Min-max input scaling of the wavelet forest, in bounded-memory blocks.

Inputs are min-max scaled per feature over the training set into ``[0, 1]`` (a constant feature
maps to 0, never NaN); the same affine map (clipped to ``[0, 1]``) is applied at predict time
(``docs/methods.md``, geometric wavelets). Blocks of about 4 MiB of float64 are converted at a
time, so float16 memory maps of any size can be scaled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_2d", "minmax_fit", "minmax_transform"]

#: Bytes of the float64 block converted at once when scaling inputs (bounded temporary memory,
#: also for float16 memmaps); the row count per block is derived from the number of features.
_SCALE_CHUNK_BYTES = 4 * 2**20


def _chunk_rows(n_features: int, chunk_rows: int | None) -> int:
    if chunk_rows is not None:
        return max(1, int(chunk_rows))
    return max(16, _SCALE_CHUNK_BYTES // (8 * max(1, n_features)))


# --------------------------------------------------------------------------------------------
# Input scaling
# --------------------------------------------------------------------------------------------
def as_2d(X: Any, what: str = "X") -> np.ndarray:
    """Return ``X`` as a 2-D numpy array without copying numpy arrays or memmaps."""
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {X.shape})")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
        raise ValueError(f"{what} must be numeric, got dtype {X.dtype}")
    return X


def minmax_fit(X: Any, chunk_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature minimum and inverse range of ``X``, computed in row chunks.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Any numeric dtype, including a float16 ``np.memmap``; it is read chunk by chunk.
    chunk_rows : rows converted to float64 at once (default: about 4 MB worth).

    Returns
    -------
    data_min : ndarray of shape (n_features,), float64
    scale : ndarray of shape (n_features,), float64
        ``1 / (max - min)``; 0 for a constant feature (which therefore maps to 0).

    Raises
    ------
    ValueError
        If ``X`` contains NaN or infinite values (the message names the first bad column).
    """
    X = as_2d(X)
    n, d = X.shape
    chunk_rows = _chunk_rows(d, chunk_rows)
    lo = np.full(d, np.inf)
    hi = np.full(d, -np.inf)
    for start in range(0, n, chunk_rows):
        block = np.asarray(X[start : start + chunk_rows], dtype=np.float64)
        if not np.isfinite(block).all():
            bad = np.argwhere(~np.isfinite(block))[0]
            raise ValueError(
                f"X contains NaN or infinite values (first at row {start + bad[0]}, "
                f"feature {bad[1]}); the wavelet forest needs finite inputs"
            )
        np.minimum(lo, block.min(axis=0), out=lo)
        np.maximum(hi, block.max(axis=0), out=hi)
    rng = hi - lo
    scale = np.zeros(d)
    np.divide(1.0, rng, out=scale, where=rng > 0)
    return lo, scale


def minmax_transform(
    X: Any,
    data_min: np.ndarray,
    scale: np.ndarray,
    chunk_rows: int | None = None,
    check_finite: bool = True,
) -> np.ndarray:
    """Apply the min-max map ``clip((x − min) · scale, 0, 1)`` in row chunks.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), any numeric dtype (memmap allowed).
    data_min, scale : ndarrays of shape (n_features,), from :func:`minmax_fit`.

    Returns
    -------
    ndarray of shape (n_samples, n_features), float32, C-contiguous
        The representation the trees see (sklearn trees work in float32). A constant training
        feature maps to 0.
    """
    X = as_2d(X)
    n, d = X.shape
    if d != data_min.shape[0]:
        raise ValueError(
            f"X has {d} features, but the wavelet forest was fitted with {data_min.shape[0]}"
        )
    chunk_rows = _chunk_rows(d, chunk_rows)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk_rows):
        # Always a copy: the block is modified in place below and X must stay untouched.
        block = np.array(X[start : start + chunk_rows], dtype=np.float64, copy=True)
        if check_finite and not np.isfinite(block).all():
            bad = np.argwhere(~np.isfinite(block))[0]
            raise ValueError(
                f"X contains NaN or infinite values (first at row {start + bad[0]}, feature {bad[1]})"
            )
        block -= data_min
        block *= scale
        np.clip(block, 0.0, 1.0, out=block)
        out[start : start + block.shape[0]] = block
    return out


# --------------------------------------------------------------------------------------------
# Tree structure and norms (vectorized over nodes, loops only over depth levels)
# --------------------------------------------------------------------------------------------
