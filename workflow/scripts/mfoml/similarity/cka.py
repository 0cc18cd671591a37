"""Linear centered kernel alignment (CKA) with the unbiased HSIC estimator.

For two representations ``X (n, D1)`` and ``Y (n, D2)`` of the same ``n`` samples,
``K = X Xᵀ`` and ``L = Y Yᵀ`` are their linear Gram matrices ``(n, n)`` and

    CKA(X, Y) = HSIC₁(K, L) / sqrt(HSIC₁(K, K) · HSIC₁(L, L)),

with the unbiased estimator of Song et al. (2012), as used for CKA by Nguyen, Raghu & Kornblith
(2021): with ``K̃, L̃`` the Gram matrices with zeroed diagonals,

    HSIC₁ = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1] / (n(n−3)).

The biased estimator (centred Gram matrices, ``tr(KHLH)/(n−1)²``) is about 0.2 on independent
inputs at n = 32; the unbiased one is about 0 (it may be slightly negative). Only ``(n, n)``
matrices are formed (memory O(n²), never O(D²)); features are cast to float64 in row blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["gram", "hsic_unbiased", "cka", "cka_matrix"]


def gram(x: np.ndarray, *, block: int = 1024) -> np.ndarray:
    """Linear Gram matrix ``X Xᵀ`` (float64 ``(n, n)``) of features ``x`` ``(n, D)``.

    ``x`` may be a float16 memmap: columns are read and cast in blocks of ``block`` features,
    so the float64 copy held at once is ``(n, block)``. Inputs of more than two dimensions
    are flattened per sample.
    """
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    x = x.reshape(x.shape[0], -1)
    n, d = x.shape
    out = np.zeros((n, n), dtype=np.float64)
    for start in range(0, d, block):
        part = np.asarray(x[:, start : start + block], dtype=np.float64)
        out += part @ part.T
    return out


class _Centred:
    """A Gram matrix with zeroed diagonal, its row sums and total (computed once per matrix)."""

    __slots__ = ("kt", "rows", "total")

    def __init__(self, k: np.ndarray) -> None:
        k = np.asarray(k, dtype=np.float64)
        if k.ndim != 2 or k.shape[0] != k.shape[1]:
            raise ValueError(f"a Gram matrix must be square, got shape {k.shape}")
        if k.shape[0] < 4:
            raise ValueError(f"the unbiased HSIC needs at least 4 samples, got {k.shape[0]}")
        self.kt = k.copy()
        np.fill_diagonal(self.kt, 0.0)
        self.rows = self.kt.sum(axis=1)
        self.total = float(self.rows.sum())


def _hsic(a: _Centred, b: _Centred) -> float:
    n = a.kt.shape[0]
    if b.kt.shape[0] != n:
        raise ValueError(f"HSIC needs Gram matrices of the same samples: {n} != {b.kt.shape[0]}")
    trace = float(np.einsum("ij,ij->", a.kt, b.kt))  # tr(K̃L̃), both symmetric
    total = trace + a.total * b.total / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(a.rows @ b.rows)
    return total / (n * (n - 3))


def hsic_unbiased(k: np.ndarray, l_: np.ndarray) -> float:
    """Unbiased HSIC₁ of two Gram matrices ``(n, n)`` of the same samples (n >= 4).

    Raises ``ValueError`` for non-square or mismatched matrices or ``n < 4`` (the estimator
    divides by ``n − 3``).
    """
    return _hsic(_Centred(k), _Centred(l_))


def _cka_from_hsic(kl: float, kk: float, ll: float) -> float:
    denom = kk * ll
    if not (denom > 0 and math.isfinite(denom)):
        return math.nan
    return float(kl / math.sqrt(denom))


def cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (unbiased HSIC) of ``x`` ``(n, D1)`` and ``y`` ``(n, D2)`` on the same samples.

    Returns a float, about 1 for representations equal up to a rotation and an isotropic
    scaling, about 0 for independent ones (it can be slightly negative); NaN when a
    representation is constant (its self-HSIC is not positive).
    """
    if len(x) != len(y):
        raise ValueError(
            f"CKA needs the same samples in both representations: {len(x)} != {len(y)}"
        )
    return float(cka_matrix([gram(x)], [gram(y)])[0, 0])


def cka_matrix(
    grams: Sequence[np.ndarray], others: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """CKA between every pair of Gram matrices, ``(A, B)``: ``grams`` (A of them) against
    ``others`` (B; default ``grams`` itself, a symmetric ``(A, A)``). All are ``(n, n)`` on the
    same samples; each matrix is centred and its self-HSIC computed once."""
    same = others is None
    a = [_Centred(g) for g in grams]
    b = a if same else [_Centred(g) for g in others]
    self_a = [_hsic(g, g) for g in a]
    self_b = self_a if same else [_hsic(g, g) for g in b]
    out = np.full((len(a), len(b)), np.nan)
    for i, gi in enumerate(a):
        for j, gj in enumerate(b):
            if same and j < i:
                out[i, j] = out[j, i]
                continue
            out[i, j] = _cka_from_hsic(_hsic(gi, gj), self_a[i], self_b[j])
    return out
