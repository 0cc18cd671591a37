"""Streaming per-class accumulators: :class:`ClassMeans` and the between-class eigenpairs.

:class:`ClassMeans` accumulates per-class sums and counts in float64, batch by batch, from numpy
arrays (any float dtype, memory maps included) or torch tensors (on their device). A class with
no sample has count 0 and a row of NaN in ``means_``; ``present_`` flags the present ones
(``docs/methods.md``, NCC and neural collapse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily, on the torch code paths only
    import torch

__all__ = ["ClassMeans", "between_class_eigh"]
from mfoml.collapse.streaming import (
    Features,
    NonFiniteFeaturesError,
    as_label_array,
    check_chunk_size,
    check_label_range,
    check_means,
    feature_rows,
    int_tensor,
    is_torch,
    iter_feature_chunks,
    single_blas_thread,
    sub_blocks,
    to_f64,
)

# --------------------------------------------------------------------------------------------
# Class means
# --------------------------------------------------------------------------------------------


class ClassMeans:
    """Streaming per-class means in float64.

    Parameters
    ----------
    n_classes : number of classes ``C`` (fixed up front; labels must lie in ``[0, C)``).
    dim : feature dimension ``D`` (inferred from the first batch when ``None``).

    Attributes
    ----------
    sums_ : ndarray (C, D) float64, per-class sums of the features.
    counts_ : ndarray (C,) int64, per-class sample counts.
    n_samples_ : int, total number of samples seen.
    present_ : ndarray (C,) bool, classes with at least one sample.
    means_ : ndarray (C, D) float64, class means; rows of absent classes are NaN (see the
        module docstring: every metric here uses the present classes only).
    global_mean_ : ndarray (D,) float64, mean over all samples (``mu_G``).

    Notes
    -----
    ``update`` accepts numpy arrays of any float dtype (float16 memory maps included; they are
    converted to float64 in cache-sized blocks) and torch tensors. With torch tensors the sums
    are kept on the tensor's device (one-hot matrix product in float64) and only copied to the host when
    an attribute is read; :meth:`means_tensor` returns them on a device without a host round trip.
    """

    def __init__(self, n_classes: int, dim: int | None = None) -> None:
        if not isinstance(n_classes, int | np.integer) or n_classes < 1:
            raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
        self.n_classes = int(n_classes)
        self.dim = None if dim is None else int(dim)
        self._sums: np.ndarray | torch.Tensor | None = None
        self._counts: np.ndarray | torch.Tensor | None = None
        self._buf: np.ndarray | None = None

    # -- accumulation ------------------------------------------------------------------------
    def _init_storage(self, dim: int, device: torch.device | None) -> None:
        if self.dim is None:
            self.dim = dim
        if device is None:
            self._sums = np.zeros((self.n_classes, self.dim), dtype=np.float64)
            self._counts = np.zeros(self.n_classes, dtype=np.int64)
        else:
            import torch

            self._sums = torch.zeros((self.n_classes, self.dim), dtype=torch.float64, device=device)
            self._counts = torch.zeros(self.n_classes, dtype=torch.int64, device=device)

    def update(self, features: Any, labels: Any) -> ClassMeans:
        """Add a batch.

        Parameters
        ----------
        features : (B, D) numpy array (float16/32/64, memmap allowed) or torch tensor.
        labels : (B,) integer labels in ``[0, n_classes)`` (numpy or torch).

        Returns
        -------
        self
        """
        if is_torch(features):
            if features.dim() != 2:
                raise ValueError(f"features must have shape (B, D), got {tuple(features.shape)}")
        else:
            features = features if hasattr(features, "dtype") else np.asarray(features)
            if features.ndim != 2:
                raise ValueError(f"features must have shape (B, D), got {features.shape}")
        b, d = int(features.shape[0]), int(features.shape[1])
        lab = as_label_array(labels)
        if len(lab) != b:
            raise ValueError(f"features have {b} rows but labels have {len(lab)}")
        if self.dim is not None and d != self.dim:
            raise ValueError(f"features have dimension {d}, expected {self.dim}")
        check_label_range(lab, self.n_classes, "labels")
        if self._sums is None:
            self._init_storage(d, features.device if is_torch(features) else None)
        if b == 0:
            return self
        if is_torch(self._sums):
            import torch

            dev = self._sums.device
            if not is_torch(features):
                features = torch.from_numpy(np.asarray(features, dtype=np.float64))
            h = features.detach().to(device=dev, dtype=torch.float64)
            y = int_tensor(lab, dev)
            onehot = torch.nn.functional.one_hot(y, self.n_classes).T.to(torch.float64)
            s = onehot @ h  # (C, D); a matrix product, deterministic on CUDA (no atomics)
            if not bool(torch.isfinite(s).all()):
                raise NonFiniteFeaturesError("features contain NaN or infinite values")
            self._sums += s
            self._counts += onehot.sum(dim=1).to(torch.int64)
            return self
        if is_torch(features):
            features = features.detach().cpu().numpy()
        if is_torch(lab):
            lab = lab.detach().cpu().numpy()
        classes = np.arange(self.n_classes)[:, None]
        s = np.zeros_like(self._sums)
        with single_blas_thread():
            for a, blk in sub_blocks(features, b):
                h, self._buf = to_f64(blk, self._buf)
                onehot = (lab[a : a + len(h)][None, :] == classes).astype(np.float64)
                s += onehot @ h
        if not np.isfinite(s).all():
            raise NonFiniteFeaturesError("features contain NaN or infinite values")
        self._sums += s
        self._counts += np.bincount(lab, minlength=self.n_classes)
        return self

    def update_from(self, features: Features, labels: Any, chunk_size: int = 4096) -> ClassMeans:
        """Add all rows of ``features`` (array, memmap, tensor or chunk callable), chunked."""
        chunk_size = check_chunk_size(chunk_size)
        lab = as_label_array(labels)
        n = feature_rows(features)
        if n is not None and n != len(lab):
            raise ValueError(f"features have {n} rows but labels have {len(lab)}")
        seen = 0
        for a, chunk in iter_feature_chunks(features, chunk_size):
            k = int(chunk.shape[0])
            if a + k > len(lab):
                raise ValueError(f"features have more rows than the {len(lab)} labels")
            self.update(chunk, lab[a : a + k])
            seen = a + k
        if seen != len(lab):
            raise ValueError(f"features have {seen} rows but labels have {len(lab)}")
        return self

    # -- results -------------------------------------------------------------------------------
    def _require(self) -> None:
        if self._sums is None:
            raise RuntimeError("ClassMeans has seen no data; call update() first")

    @property
    def sums_(self) -> np.ndarray:
        self._require()
        s = self._sums
        return s.detach().cpu().numpy().copy() if is_torch(s) else s.copy()

    @property
    def counts_(self) -> np.ndarray:
        self._require()
        c = self._counts
        return c.detach().cpu().numpy().copy() if is_torch(c) else c.copy()

    @property
    def n_samples_(self) -> int:
        return int(self.counts_.sum())

    @property
    def present_(self) -> np.ndarray:
        return self.counts_ > 0

    @property
    def n_classes_present_(self) -> int:
        return int(self.present_.sum())

    @property
    def means_(self) -> np.ndarray:
        counts = self.counts_
        out = np.full((self.n_classes, self.dim), np.nan)
        p = counts > 0
        out[p] = self.sums_[p] / counts[p, None]
        return out

    @property
    def global_mean_(self) -> np.ndarray:
        n = self.n_samples_
        if n == 0:
            raise RuntimeError("ClassMeans has seen no samples")
        return self.sums_.sum(axis=0) / n

    def means_tensor(
        self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Class means as a torch tensor ``(C, D)`` (absent classes: NaN rows; ``dtype``
        default float64)."""
        import torch

        dtype = torch.float64 if dtype is None else dtype
        self._require()
        sums = torch.as_tensor(self._sums)
        counts = torch.as_tensor(self._counts).to(sums.device)
        out = torch.full_like(sums, float("nan"))
        p = counts > 0
        out[p] = sums[p] / counts[p].to(torch.float64)[:, None]
        return out.to(device=device if device is not None else sums.device, dtype=dtype)

    def between_class_eigh(self, rtol: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Nonzero eigenpairs of ``Sigma_B``; see :func:`between_class_eigh`."""
        return between_class_eigh(self.means_, self.global_mean_, rtol=rtol)


def between_class_eigh(
    means: np.ndarray, global_mean: np.ndarray, rtol: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Nonzero eigenpairs of ``Sigma_B = (1/C') M M^T`` without forming a D x D matrix.

    ``M`` is ``D x C'`` with columns ``mu_c - mu_G`` over the present classes. Computed from the
    thin SVD of the ``C' x D`` matrix ``M^T`` (cost ``O(C'^2 D)``, the same as its ``C' x C'``
    Gram matrix, without squaring its condition number): ``M^T = P S Q^T`` gives eigenvalues
    ``S^2 / C'`` with eigenvectors the rows of ``Q^T``.

    Parameters
    ----------
    means : (C, D) class means; rows that are all NaN (absent classes) are ignored.
    global_mean : (D,) global mean ``mu_G``.
    rtol : singular values of ``M`` below ``rtol * max`` count as zero (default
        ``max(C', D) * eps``, numpy's ``matrix_rank`` rule). At most ``C' - 1`` pairs are kept
        (the rank of ``M`` when ``mu_G`` is a weighted average of the class means).

    Returns
    -------
    eigvals : (K,) float64, decreasing, ``K <= min(C' - 1, D)``.
    eigvecs : (D, K) float64, orthonormal columns ``u_k``.
    """
    m, present = check_means(means)
    mc = m[present] - np.asarray(global_mean, dtype=np.float64)[None, :]
    c_p, d = mc.shape
    if c_p < 2:
        return np.zeros(0), np.zeros((d, 0))
    _, s, qt = np.linalg.svd(mc, full_matrices=False)
    if rtol is None:
        rtol = max(c_p, d) * np.finfo(np.float64).eps
    keep = min(c_p - 1, d, int(np.sum(s > rtol * s[0])) if s[0] > 0 else 0)
    return s[:keep] ** 2 / c_p, np.ascontiguousarray(qt[:keep].T)
