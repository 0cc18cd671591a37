"""The presort of the CART builder (:mod:`mfoml.wavelets.fasttree`): each feature's nonzero
values sorted once per tree.

Zeros (``0.0`` and ``-0.0``) are neither sorted nor stored: a feature's *row* holds its nonzero
samples sorted by value, negatives then positives (see :mod:`mfoml.wavelets.cart_kernels`). A
ReLU layer that is 90 % zeros is sorted, scanned and partitioned at a tenth of the cost of a
dense one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

#: Bytes of the sort keys of one block of features (bounded temporary memory per thread; long
#: blocks read X's rows in longer runs).
SORT_BYTES = 4 << 20
#: Trees on at most this many distinct samples store positions as uint16, larger ones uint32.
SMALL_N = 65536


_KW = {"cache": True, "nogil": True, "_nrt": False}  # no allocation: no reference counting
#: The float32 value of each of the 65536 float16 bit patterns.
HALF_TO_SINGLE = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


@njit(**_KW)
def _widen(bits, table, out):
    """``out[k] = table[bits[k]]`` over flat arrays; True if any pattern is inf or NaN (all
    exponent bits set)."""
    bad = False
    for k in range(bits.shape[0]):
        b = bits[k]
        out[k] = table[b]
        bad |= (b & 0x7C00) == 0x7C00
    return bad


@njit(**_KW)
def _half_bad(bits):
    """True if any float16 pattern of the flat ``bits`` is inf or NaN."""
    bad = False
    for k in range(bits.shape[0]):
        bad |= (bits[k] & 0x7C00) == 0x7C00
    return bad


def half_finite(X: np.ndarray) -> bool:
    """Whether every value of the C-contiguous float16 array ``X`` is finite."""
    return not _half_bad(X.view(np.uint16).reshape(-1))


def widen_half(X: np.ndarray) -> tuple[np.ndarray, bool]:
    """A float16 array as C-contiguous float32 (exact: a lookup of :data:`HALF_TO_SINGLE`) and
    whether all its values are finite, in one pass: about 8x faster than numpy's conversion,
    which the probe's float16 dumps otherwise pay at every fit (21 ms for 4000 x 1280)."""
    bits = np.ascontiguousarray(X).view(np.uint16)
    out = np.empty(bits.shape, dtype=np.float32)
    bad = _widen(bits.reshape(-1), HALF_TO_SINGLE, out.reshape(-1))
    return out, not bad


def as_float32(X: Any, check_finite: bool = False, keep_half: bool = False) -> np.ndarray:
    """``X`` (n_samples, n_features) as C-contiguous float32 (float16 widened by
    :func:`widen_half`, or kept as float16 with ``keep_half`` where it has at most SMALL_N rows:
    the presort reads it directly); with ``check_finite``, a ValueError where a value is NaN or
    infinite."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    if X.dtype == np.float16:
        if keep_half and X.shape[0] <= SMALL_N:
            X = np.ascontiguousarray(X)
            finite = not check_finite or half_finite(X)
        else:
            X, finite = widen_half(X)
    else:
        X = np.ascontiguousarray(X, dtype=np.float32)
        # no temporary: the extremes are NaN where any value is, and +-inf where one is
        finite = (
            not check_finite or not X.size or bool(np.isfinite(X.max()) and np.isfinite(X.min()))
        )
    if check_finite and not finite:
        raise ValueError(
            "X contains NaN or infinite values; the fast tree backend needs finite inputs"
        )
    return X


@njit(**_KW)
def pack_keys(Xu, samples, f0, keys, shift, counts, negs):
    """The sort keys of the nonzero values of features ``f0 .. f0 + nb``.

    ``Xu``: X (N, d) float32 viewed as uint32; ``samples``: (n,) rows of X; ``keys``: (nb, n)
    uint64. Row ``k`` gets in its first ``counts[k]`` entries the keys ``(order-preserving bits
    of X[samples[j], f0 + k]) << shift | j`` of the samples ``j`` (increasing) whose value is not
    ±0, ``negs[k]`` of them negative. Negative floats get all bits flipped, the others the sign
    bit set, so unsigned order is float order (+0 becomes ``0x80000000``, -0 ``0x7FFFFFFF``).
    """
    nb, n = keys.shape
    sign = np.uint32(0x80000000)
    ones = np.uint32(0xFFFFFFFF)
    for j in range(n):  # all keys, reading X row by row
        row = Xu[samples[j], f0 : f0 + nb]
        tag = np.uint64(j)
        for k in range(nb):
            b = row[k]
            b = b ^ ones if b & sign else b | sign
            keys[k, j] = (np.uint64(b) << shift) | tag
    zero_lo = np.uint64(0x7FFFFFFF)  # the high bits of the keys of -0 and +0
    for k in range(nb):  # the zeros' keys dropped (order kept, branch-free)
        row_k = keys[k]
        c = neg = 0
        for j in range(n):
            high = row_k[j] >> shift
            row_k[c] = row_k[j]
            c += 1 if high - zero_lo > 1 else 0  # 0 or 1 for a zero (unsigned: wraps below)
            neg += 1 if high < zero_lo else 0
        counts[k] = c
        negs[k] = neg


@njit(**_KW)
def unpack_keys(keys, f0, shift, counts, order, vals_u):
    """Inverse of :func:`pack_keys` on sorted keys: the positions and float bits of row ``k``'s
    ``counts[k]`` keys into the first slots of ``order[f0 + k]`` and ``vals_u[f0 + k]`` (float32
    storage viewed as uint32)."""
    nb = keys.shape[0]
    mask = (np.uint64(1) << shift) - np.uint64(1)
    sign = np.uint32(0x80000000)
    ones = np.uint32(0xFFFFFFFF)
    for k in range(nb):
        key_row = keys[k]
        o_row = order[f0 + k]
        v_row = vals_u[f0 + k]
        for j in range(counts[k]):
            key = key_row[j]
            o_row[j] = key & mask
            b = np.uint32(key >> shift)
            v_row[j] = b ^ sign if b & sign else b ^ ones


@njit(**_KW)
def pack_keys16(Hu, samples, f0, keys, counts, negs):
    """:func:`pack_keys` for float16 data (``Hu``: X (N, d) float16 viewed as uint16) and at
    most 65536 samples: 32-bit keys ``(order-preserving 16 bits of the value) << 16 | j``,
    written in one pass with the zeros dropped as they come (``counts``, ``negs``: (nb,))."""
    nb, n = keys.shape
    sign = np.uint32(0x8000)
    ones = np.uint32(0xFFFF)
    for k in range(nb):
        counts[k] = 0
        negs[k] = 0
    for j in range(n):
        row = Hu[samples[j], f0 : f0 + nb]
        tag = np.uint32(j)
        for k in range(nb):
            h = np.uint32(row[k])
            code = h ^ ones if h & sign else h | sign
            c = counts[k]
            keys[k, c] = (code << np.uint32(16)) | tag
            nonzero = 1 if h & np.uint32(0x7FFF) else 0
            counts[k] = c + nonzero
            negs[k] += nonzero if h & sign else 0


@njit(**_KW)
def unpack_keys16(keys, f0, counts, order, vals, table):
    """Inverse of :func:`pack_keys16` on sorted keys: positions into ``order[f0 + k]`` and the
    float32 values (``table``: :data:`HALF_TO_SINGLE`) into ``vals[f0 + k]``."""
    nb = keys.shape[0]
    sign = np.uint32(0x8000)
    ones = np.uint32(0xFFFF)
    for k in range(nb):
        key_row = keys[k]
        o_row = order[f0 + k]
        v_row = vals[f0 + k]
        for j in range(counts[k]):
            key = key_row[j]
            o_row[j] = key & ones
            code = key >> np.uint32(16)
            v_row[j] = table[code ^ sign if code & sign else code ^ ones]


def presort(
    X: np.ndarray, samples: np.ndarray, n_threads: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each feature's nonzero values of ``X[samples]`` sorted once.

    Parameters
    ----------
    X : (N, d) float32 or float16, C-contiguous (float16 with at most SMALL_N samples sorts
        32-bit keys, :func:`pack_keys16`: half the memory and about twice as fast as the
        64-bit keys of float32 data);  samples : (n,) int rows of X;  n_threads : threads that
        share the blocks of features (numpy's SIMD sort releases the GIL).

    Returns
    -------
    order : (d, n) positions into ``samples`` (uint16 when ``n <= SMALL_N``, else uint32);
    vals : (d, n) float32;  counts : (2, d) int32 ``n_neg``, ``n_pos``. Row ``f`` holds the
        samples whose feature ``f`` is not ±0, sorted by value (ties by position), in its first
        ``n_neg[f] + n_pos[f]`` slots (negatives first), and their values; the other slots are
        unspecified.
    """
    n = samples.shape[0]
    d = X.shape[1]
    small = n <= SMALL_N
    half = X.dtype == np.float16
    if half and not small:
        X = widen_half(X)[0]
        half = False
    shift = np.uint64(16 if small else 32)
    order = np.empty((d, n), dtype=np.uint16 if small else np.uint32)
    vals = np.empty((d, n), dtype=np.float32)
    counts = np.zeros((2, d), dtype=np.int32)
    Xu = X.view(np.uint16 if half else np.uint32)
    vals_u = vals.view(np.uint32)
    samples = np.ascontiguousarray(samples, dtype=np.int64)
    key_type, key_bytes = (np.uint32, 4) if half else (np.uint64, 8)

    block = max(16, min(256, SORT_BYTES // (key_bytes * max(n, 1))))  # features per block

    def blocks(first: int) -> None:  # every n_threads-th block, one key buffer (no page faults)
        buf = np.empty((min(block, d), n), dtype=key_type)
        for f0 in range(first * block, d, n_threads * block):
            nb = min(block, d - f0)
            keys = buf[:nb]
            negs = counts[0, f0 : f0 + nb]
            nz = np.empty(nb, dtype=np.int32)
            if half:
                pack_keys16(Xu, samples, f0, keys, nz, negs)
            else:
                pack_keys(Xu, samples, f0, keys, shift, nz, negs)
            if (nz == n).all():  # no zeros: one call
                keys.sort(axis=1)
            else:
                for k in range(nb):
                    keys[k, : nz[k]].sort()
            if half:
                unpack_keys16(keys, f0, nz, order, vals, HALF_TO_SINGLE)
            else:
                unpack_keys(keys, f0, shift, nz, order, vals_u)
            counts[1, f0 : f0 + nb] = nz - negs

    n_threads = max(1, min(n_threads, -(-d // block)))
    if n_threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(blocks, range(n_threads)))
    else:
        blocks(0)
    return order, vals, counts
