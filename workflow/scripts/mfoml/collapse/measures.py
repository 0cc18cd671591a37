"""Nearest-class-center (NCC) simplification and neural-collapse metrics, per layer.

Implements ``METHODS.md`` sections 7 and 8, streaming and exact:

- :class:`ClassMeans` accumulates per-class sums and counts in float64, batch by batch, from
  numpy arrays (any float dtype, memory maps included) or torch tensors (on their device).
- :func:`ncc_predict`, :func:`ncc_mismatch`, :func:`ncc_accuracy`: ``argmin_c (||mu_c||^2 -
  2 <h, mu_c>)`` in float64, in batched matrix form, chunked over samples (never a Python loop
  over samples).
- :class:`WithinClassProjection` and :func:`collapse_metrics`: NC1 through the C-1 eigenpairs
  of the between-class covariance (no D x D matrix), NC2, NC3 and NC4.
- :func:`layer_table`: one row per layer of an activation dump (see ``docs/architecture.md``).

Conventions
-----------
- ``mu_G`` is the global mean over all samples (``sum_i h_i / N``), as in Papyan, Han & Donoho
  (2020). ``Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T`` and ``Sigma_B = (1/C)
  sum_c (mu_c - mu_G)(mu_c - mu_G)^T``.
- **Absent classes.** ``n_classes`` is fixed up front. A class with no sample has count 0 and a
  row of NaN in :attr:`ClassMeans.means_`; :attr:`ClassMeans.present_` flags the present ones.
  Every function here uses the present classes only: NCC takes the argmin over present classes
  (a sample predicted or labelled as an absent class counts as a mismatch / an error), and NC1,
  NC2 and NC3 use ``C' = n_classes_present`` classes (the rows of ``W`` for absent classes are
  dropped). NaN therefore never enters a metric silently; a NaN or infinite *feature* raises
  :class:`NonFiniteFeaturesError`.
- The numpy path works on sub-blocks of about 1 MiB of float64 (so that the float16 -> float64
  conversion and the skinny matrix products stay in cache) with BLAS limited to one thread for
  these products (they are memory bound; threading small products only adds overhead). The torch
  path computes on the tensor's device in float64, ``chunk_size`` rows at a time.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

__all__ = [
    "ActivationDumpLike",
    "ClassMeans",
    "NonFiniteFeaturesError",
    "WithinClassProjection",
    "between_class_eigh",
    "collapse_metrics",
    "layer_table",
    "nc2_metrics",
    "nc3_metric",
    "ncc_accuracy",
    "ncc_mismatch",
    "ncc_predict",
]

#: Target size (bytes, float64) of one numpy sub-block: fits in a 2 MiB L2 cache.
_BLOCK_BYTES = 1 << 20
#: Fewest rows per sub-block (very wide layers): keeps the loop over blocks, not samples.
_MIN_BLOCK_ROWS = 32

#: What the streaming functions accept as features: an ``(N, D)`` array-like that supports
#: row slicing (numpy array, ``np.memmap``, torch tensor), or a callable ``chunk_size ->
#: iterable of (n_i, D) arrays`` that yields the rows in order each time it is called (e.g.
#: ``lambda cs: dump.iter_chunks(name, cs)``).
Features = Any


class NonFiniteFeaturesError(ValueError):
    """Raised when features contain NaN or infinity (names the layer where known)."""


class ActivationDumpLike(Protocol):
    """What :func:`layer_table` needs from an activation dump (``mfoml.activations``)."""

    layers: list[str]
    labels: np.ndarray
    predictions: np.ndarray
    manifest: dict[str, Any]

    def layer(self, name: str) -> np.ndarray:  # (N, D) float16 memmap
        ...

    def iter_chunks(self, name: str, chunk_size: int) -> Iterator[np.ndarray]:  # float32
        ...


# --------------------------------------------------------------------------------------------
# Helpers: blocks, BLAS threads, validation
# --------------------------------------------------------------------------------------------

_THREADPOOL_CONTROLLER: Any = None


@contextlib.contextmanager
def _single_blas_thread() -> Iterator[None]:
    """Limit BLAS to one thread inside (skinny products on small blocks are memory bound)."""
    global _THREADPOOL_CONTROLLER
    try:
        if _THREADPOOL_CONTROLLER is None:
            from threadpoolctl import ThreadpoolController

            _THREADPOOL_CONTROLLER = ThreadpoolController()
        ctx = _THREADPOOL_CONTROLLER.limit(limits=1, user_api="blas")
    except Exception:  # threadpoolctl missing or unable to act: run with the defaults
        ctx = contextlib.nullcontext()
    with ctx:
        yield


def _is_torch(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def _check_chunk_size(chunk_size: int) -> int:
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


def _n_rows(features: Features) -> int | None:
    if callable(features) and not hasattr(features, "shape"):
        return None
    shape = getattr(features, "shape", None)
    if shape is None:
        raise TypeError(
            "features must be an (N, D) array, a torch tensor, or a callable chunk_size -> "
            f"iterable of chunks; got {type(features).__name__}"
        )
    if len(shape) != 2:
        raise ValueError(f"features must have shape (N, D), got {tuple(shape)}")
    return int(shape[0])


def _iter_chunks(features: Features, chunk_size: int) -> Iterator[tuple[int, Any]]:
    """Yield ``(start_row, chunk)`` over the rows of ``features`` in order."""
    n = _n_rows(features)
    if n is None:
        start = 0
        for chunk in features(chunk_size):
            if chunk.ndim != 2:
                raise ValueError(f"feature chunks must have shape (n, D), got {tuple(chunk.shape)}")
            yield start, chunk
            start += int(chunk.shape[0])
        return
    for a in range(0, n, chunk_size):
        yield a, features[a : a + chunk_size]


def _sub_blocks(chunk: np.ndarray, chunk_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """Split a numpy chunk into cache-sized row blocks (at most ``chunk_size`` rows)."""
    d = max(1, int(chunk.shape[1]))
    rows = min(chunk_size, max(_MIN_BLOCK_ROWS, _BLOCK_BYTES // (8 * d)))
    for a in range(0, int(chunk.shape[0]), rows):
        yield a, chunk[a : a + rows]


def _to_f64(block: np.ndarray, buf: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Convert a numpy block to float64, reusing ``buf`` (returned for the next call)."""
    n, d = block.shape
    if buf is None or buf.shape[0] < n or buf.shape[1] != d:
        buf = np.empty((n, d), dtype=np.float64)
    out = buf[:n]
    np.copyto(out, block, casting="unsafe")
    return out, buf


def _as_label_array(labels: Any, name: str = "labels") -> np.ndarray | torch.Tensor:
    if _is_torch(labels):
        if labels.dim() != 1:
            raise ValueError(f"{name} must have shape (N,), got {tuple(labels.shape)}")
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise TypeError(f"{name} must be integers, got {labels.dtype}")
        return labels
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape (N,), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
    return arr


def _check_label_range(lab: Any, n_classes: int, name: str) -> None:
    if len(lab) == 0:
        return
    lo, hi = (int(lab.min()), int(lab.max()))
    if lo < 0 or hi >= n_classes:
        raise ValueError(f"{name} must lie in [0, {n_classes}), found values in [{lo}, {hi}]")


def _check_means(means: Any, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate class means ``(C, D)``; return them (float64 numpy) and the present mask.

    A row that is entirely NaN marks an absent class; any other non-finite value is an error.
    """
    m = means.detach().cpu().numpy() if _is_torch(means) else np.asarray(means)
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"means must have shape (C, D), got {m.shape}")
    if dim is not None and m.shape[1] != dim:
        raise ValueError(f"means have dimension {m.shape[1]} but features have dimension {dim}")
    nan_rows = np.isnan(m).all(axis=1)
    finite_rows = np.isfinite(m).all(axis=1)
    bad = ~(nan_rows | finite_rows)
    if bad.any():
        raise NonFiniteFeaturesError(
            f"means contain non-finite values in rows {np.flatnonzero(bad).tolist()} "
            "(only whole-NaN rows, which mark absent classes, are allowed)"
        )
    present = finite_rows
    if not present.any():
        raise ValueError("means have no present class (all rows are NaN)")
    return m, present


def _feature_dim(features: Features) -> int | None:
    shape = getattr(features, "shape", None)
    return None if shape is None else int(shape[1])


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
        if _is_torch(features):
            if features.dim() != 2:
                raise ValueError(f"features must have shape (B, D), got {tuple(features.shape)}")
        else:
            features = features if hasattr(features, "dtype") else np.asarray(features)
            if features.ndim != 2:
                raise ValueError(f"features must have shape (B, D), got {features.shape}")
        b, d = int(features.shape[0]), int(features.shape[1])
        lab = _as_label_array(labels)
        if len(lab) != b:
            raise ValueError(f"features have {b} rows but labels have {len(lab)}")
        if self.dim is not None and d != self.dim:
            raise ValueError(f"features have dimension {d}, expected {self.dim}")
        _check_label_range(lab, self.n_classes, "labels")
        if self._sums is None:
            self._init_storage(d, features.device if _is_torch(features) else None)
        if b == 0:
            return self
        if isinstance(self._sums, torch.Tensor):
            dev = self._sums.device
            if not _is_torch(features):
                features = torch.from_numpy(np.asarray(features, dtype=np.float64))
            h = features.detach().to(device=dev, dtype=torch.float64)
            y = _int_tensor(lab, dev)
            onehot = torch.nn.functional.one_hot(y, self.n_classes).T.to(torch.float64)
            s = onehot @ h  # (C, D); a matrix product, deterministic on CUDA (no atomics)
            if not bool(torch.isfinite(s).all()):
                raise NonFiniteFeaturesError("features contain NaN or infinite values")
            self._sums += s
            self._counts += onehot.sum(dim=1).to(torch.int64)
            return self
        if _is_torch(features):
            features = features.detach().cpu().numpy()
        if _is_torch(lab):
            lab = lab.detach().cpu().numpy()
        classes = np.arange(self.n_classes)[:, None]
        s = np.zeros_like(self._sums)
        with _single_blas_thread():
            for a, blk in _sub_blocks(features, b):
                h, self._buf = _to_f64(blk, self._buf)
                onehot = (lab[a : a + len(h)][None, :] == classes).astype(np.float64)
                s += onehot @ h
        if not np.isfinite(s).all():
            raise NonFiniteFeaturesError("features contain NaN or infinite values")
        self._sums += s
        self._counts += np.bincount(lab, minlength=self.n_classes)
        return self

    def update_from(self, features: Features, labels: Any, chunk_size: int = 4096) -> ClassMeans:
        """Add all rows of ``features`` (array, memmap, tensor or chunk callable), chunked."""
        chunk_size = _check_chunk_size(chunk_size)
        lab = _as_label_array(labels)
        n = _n_rows(features)
        if n is not None and n != len(lab):
            raise ValueError(f"features have {n} rows but labels have {len(lab)}")
        seen = 0
        for a, chunk in _iter_chunks(features, chunk_size):
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
        return s.detach().cpu().numpy().copy() if isinstance(s, torch.Tensor) else s.copy()

    @property
    def counts_(self) -> np.ndarray:
        self._require()
        c = self._counts
        return c.detach().cpu().numpy().copy() if isinstance(c, torch.Tensor) else c.copy()

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
        self, device: str | torch.device | None = None, dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """Class means as a torch tensor ``(C, D)`` (absent classes: NaN rows)."""
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
    m, present = _check_means(means)
    mc = m[present] - np.asarray(global_mean, dtype=np.float64)[None, :]
    c_p, d = mc.shape
    if c_p < 2:
        return np.zeros(0), np.zeros((d, 0))
    _, s, qt = np.linalg.svd(mc, full_matrices=False)
    if rtol is None:
        rtol = max(c_p, d) * np.finfo(np.float64).eps
    keep = min(c_p - 1, d, int(np.sum(s > rtol * s[0])) if s[0] > 0 else 0)
    return s[:keep] ** 2 / c_p, np.ascontiguousarray(qt[:keep].T)


# --------------------------------------------------------------------------------------------
# The scanning kernel: NCC scores and NC1 projections in one matrix product per block
# --------------------------------------------------------------------------------------------


class _Scan:
    """One ordered pass computing NCC predictions and/or projected within-class residuals.

    For each block ``h`` (float64) it forms ``h @ [mu_p^T | U]`` once; the first ``C'`` columns
    give the NCC scores ``||mu_c||^2 - 2 <h, mu_c>``, the last ``K`` the projections
    ``u_k^T h`` from which ``u_k^T mu_{y_i}`` is subtracted.
    """

    def __init__(
        self,
        means: np.ndarray | None,
        proj: np.ndarray | None,
        proj_means: np.ndarray | None,
        n_classes: int,
    ) -> None:
        self.n_classes = n_classes
        self.class_index: np.ndarray | None = None
        cols = []
        self.n_scores = 0
        if means is not None:
            m, present = _check_means(means)
            self.class_index = np.flatnonzero(present)
            mp = m[present]
            self.sq_norms = np.einsum("cd,cd->c", mp, mp)
            cols.append(mp.T)
            self.n_scores = mp.shape[0]
        self.n_proj = 0
        if proj is not None:
            cols.append(proj)
            self.n_proj = proj.shape[1]
            self.proj_means = proj_means  # (C, K): u_k^T mu_c (rows of absent classes: 0)
        self.dim = int(cols[0].shape[0])
        self.a = np.ascontiguousarray(np.concatenate(cols, axis=1))
        self._torch_cache: dict[Any, tuple[torch.Tensor, ...]] = {}

    def _torch_consts(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        if device not in self._torch_cache:
            a = torch.as_tensor(self.a, device=device)
            sq = torch.as_tensor(self.sq_norms if self.n_scores else np.zeros(0), device=device)
            ci = torch.as_tensor(
                self.class_index if self.class_index is not None else np.zeros(0, np.int64),
                device=device,
            )
            pm = torch.as_tensor(
                self.proj_means if self.n_proj else np.zeros((self.n_classes, 0)), device=device
            )
            self._torch_cache[device] = (a, sq, ci, pm)
        return self._torch_cache[device]

    def run(
        self,
        features: Features,
        chunk_size: int,
        *,
        labels: Any = None,
        predictions: Any = None,
        keep_predictions: bool = False,
    ) -> dict[str, Any]:
        """Scan all rows; return counts (``n``, ``n_mismatch``, ``n_correct``), ``proj_sq``."""
        chunk_size = _check_chunk_size(chunk_size)
        n_expected = _n_rows(features)
        dim = _feature_dim(features)
        if dim is not None and dim != self.dim:
            raise ValueError(f"features have dimension {dim}, means have dimension {self.dim}")
        lab = None if labels is None else _as_label_array(labels, "labels")
        pred = None if predictions is None else _as_label_array(predictions, "predictions")
        for name, arr in (("labels", lab), ("predictions", pred)):
            if arr is not None and n_expected is not None and len(arr) != n_expected:
                raise ValueError(f"features have {n_expected} rows but {name} have {len(arr)}")
        if self.n_proj and lab is None:
            raise ValueError("labels are needed for the within-class projections")
        if lab is not None and self.n_proj:
            _check_label_range(lab, self.n_classes, "labels")
        if not _is_torch(features):  # numpy features: numpy labels
            lab = lab.detach().cpu().numpy() if _is_torch(lab) else lab
            pred = pred.detach().cpu().numpy() if _is_torch(pred) else pred
        n = 0
        n_mismatch = 0
        n_correct = 0
        proj_sq = np.zeros(self.n_proj)
        preds_out: list[Any] = []
        buf: np.ndarray | None = None
        ctx = _single_blas_thread() if not _is_torch(features) else contextlib.nullcontext()
        with ctx:
            for start, chunk in _iter_chunks(features, chunk_size):
                k = int(chunk.shape[0])
                if int(chunk.shape[1]) != self.dim:
                    raise ValueError(
                        f"features have dimension {chunk.shape[1]}, means have dimension {self.dim}"
                    )
                for name, arr in (("labels", lab), ("predictions", pred)):
                    if arr is not None and start + k > len(arr):
                        raise ValueError(f"features have more rows than the {len(arr)} {name}")
                if _is_torch(chunk):
                    res = self._block_torch(chunk, start, lab, pred, keep_predictions)
                else:
                    res = None
                    for a, blk in _sub_blocks(chunk, chunk_size):
                        h, buf = _to_f64(blk, buf)
                        r = self._block_numpy(h, start + a, lab, pred, keep_predictions)
                        res = r if res is None else _merge(res, r)
                if res is not None:
                    n_mismatch += res["n_mismatch"]
                    n_correct += res["n_correct"]
                    proj_sq += res["proj_sq"]
                    if keep_predictions:
                        preds_out.append(res["pred"])
                n += k
        for name, arr in (("labels", lab), ("predictions", pred)):
            if arr is not None and len(arr) != n:
                raise ValueError(f"features have {n} rows but {name} have {len(arr)}")
        out: dict[str, Any] = {
            "n": n,
            "n_mismatch": n_mismatch,
            "n_correct": n_correct,
            "proj_sq": proj_sq,
        }
        if keep_predictions:
            if preds_out and _is_torch(preds_out[0]):
                out["pred"] = torch.cat(preds_out)
            else:
                out["pred"] = (
                    np.concatenate(preds_out) if preds_out else np.zeros(0, dtype=np.int64)
                )
        return out

    def _block_numpy(
        self, h: np.ndarray, start: int, lab: Any, pred: Any, keep: bool
    ) -> dict[str, Any]:
        k = h.shape[0]
        prod = h @ self.a
        if not np.isfinite(prod).all():
            raise NonFiniteFeaturesError(
                f"features contain NaN or infinite values (rows {start}..{start + k - 1})"
            )
        res: dict[str, Any] = {"n_mismatch": 0, "n_correct": 0, "proj_sq": np.zeros(self.n_proj)}
        if self.n_scores:
            scores = self.sq_norms[None, :] - 2.0 * prod[:, : self.n_scores]
            p = self.class_index[np.argmin(scores, axis=1)]
            if pred is not None:
                pr = np.asarray(pred[start : start + k])
                res["n_mismatch"] = int(np.count_nonzero(p != pr))
            if lab is not None:
                lb = np.asarray(lab[start : start + k])
                res["n_correct"] = int(np.count_nonzero(p == lb))
            if keep:
                res["pred"] = p
        if self.n_proj:
            lb = np.asarray(lab[start : start + k])
            r = prod[:, self.n_scores :] - self.proj_means[lb]
            res["proj_sq"] = np.einsum("ik,ik->k", r, r)
        return res

    def _block_torch(
        self, chunk: torch.Tensor, start: int, lab: Any, pred: Any, keep: bool
    ) -> dict[str, Any]:
        dev = chunk.device
        a, sq, ci, pm = self._torch_consts(dev)
        k = int(chunk.shape[0])
        h = chunk.detach().to(torch.float64)
        prod = h @ a
        if not bool(torch.isfinite(prod).all()):
            raise NonFiniteFeaturesError(
                f"features contain NaN or infinite values (rows {start}..{start + k - 1})"
            )
        res: dict[str, Any] = {"n_mismatch": 0, "n_correct": 0, "proj_sq": np.zeros(self.n_proj)}
        if self.n_scores:
            scores = sq[None, :] - 2.0 * prod[:, : self.n_scores]
            p = ci[torch.argmin(scores, dim=1)]
            if pred is not None:
                pr = _int_tensor(pred[start : start + k], dev)
                res["n_mismatch"] = int((p != pr).sum())
            if lab is not None:
                lb = _int_tensor(lab[start : start + k], dev)
                res["n_correct"] = int((p == lb).sum())
            if keep:
                res["pred"] = p
        if self.n_proj:
            lb = _int_tensor(lab[start : start + k], dev)
            r = prod[:, self.n_scores :] - pm[lb]
            res["proj_sq"] = (r * r).sum(dim=0).cpu().numpy()
        return res


def _int_tensor(x: Any, device: torch.device) -> torch.Tensor:
    """Labels (numpy, memmap or tensor) as an int64 tensor on ``device``."""
    if _is_torch(x):
        return x.to(device=device, dtype=torch.int64)
    return torch.from_numpy(np.array(x, dtype=np.int64)).to(device)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {
        "n_mismatch": a["n_mismatch"] + b["n_mismatch"],
        "n_correct": a["n_correct"] + b["n_correct"],
        "proj_sq": a["proj_sq"] + b["proj_sq"],
    }
    if "pred" in a:
        out["pred"] = np.concatenate([a["pred"], b["pred"]])
    return out


# --------------------------------------------------------------------------------------------
# NCC
# --------------------------------------------------------------------------------------------


def ncc_predict(
    features: Features, means: Any, chunk_size: int = 4096
) -> np.ndarray | torch.Tensor:
    """Nearest-class-center prediction of every sample.

    Parameters
    ----------
    features : (N, D) numpy array / memmap (any float dtype), torch tensor (computed on its
        device), or a chunk callable (see ``Features``).
    means : (C, D) class means (float64 used); all-NaN rows mark absent classes, which are
        excluded from the argmin.
    chunk_size : rows per chunk (bounds the memory).

    Returns
    -------
    (N,) int64 class indices ``argmin_c ||mu_c||^2 - 2 <h, mu_c>`` (a torch tensor on the
    features' device when ``features`` is a tensor). Ties go to the lowest class index.
    """
    m, _ = _check_means(means, _feature_dim(features))
    scan = _Scan(m, None, None, m.shape[0])
    return scan.run(features, chunk_size, keep_predictions=True)["pred"]


def ncc_mismatch(features: Features, predictions: Any, means: Any, chunk_size: int = 4096) -> float:
    """NCC mismatch ``(1/N) #{i : prediction_i != argmin_c ||h_i - mu_c||}``.

    Parameters
    ----------
    features : (N, D) features (see :func:`ncc_predict`).
    predictions : (N,) the network's predicted classes (not the labels).
    means : (C, D) class means of the training split (true labels).
    chunk_size : rows per chunk.

    Returns
    -------
    float in [0, 1] (NaN when N = 0).
    """
    m, _ = _check_means(means, _feature_dim(features))
    res = _Scan(m, None, None, m.shape[0]).run(features, chunk_size, predictions=predictions)
    return res["n_mismatch"] / res["n"] if res["n"] else float("nan")


def ncc_accuracy(features: Features, labels: Any, means: Any, chunk_size: int = 4096) -> float:
    """NCC accuracy ``(1/N) #{i : y_i == argmin_c ||h_i - mu_c||}`` against the labels.

    Shapes as in :func:`ncc_mismatch`. A label of a class absent from ``means`` is never
    predicted, so it counts as an error.
    """
    m, _ = _check_means(means, _feature_dim(features))
    res = _Scan(m, None, None, m.shape[0]).run(features, chunk_size, labels=labels)
    return res["n_correct"] / res["n"] if res["n"] else float("nan")


# --------------------------------------------------------------------------------------------
# Neural collapse
# --------------------------------------------------------------------------------------------


class WithinClassProjection:
    """Second streaming pass for NC1: ``u_k^T Sigma_W u_k`` over the ``Sigma_B`` eigenvectors.

    ``NC1 = (1/C') sum_k lambda_k^{-1} u_k^T Sigma_W u_k`` with ``u_k^T Sigma_W u_k = (1/N)
    sum_i (u_k^T (h_i - mu_{y_i}))^2``; exact (``Sigma_W`` restricted to the range of
    ``Sigma_B``, which is all that ``tr(Sigma_W Sigma_B^+)`` sees), cost ``O(N D C)``.

    Parameters
    ----------
    class_means : a filled :class:`ClassMeans` (the first pass over the same samples).
    rtol : rank tolerance, see :func:`between_class_eigh`.
    """

    def __init__(self, class_means: ClassMeans, rtol: float | None = None) -> None:
        self.class_means = class_means
        self.n_classes = class_means.n_classes
        self.means = class_means.means_
        self.eigvals_, self.eigvecs_ = class_means.between_class_eigh(rtol=rtol)
        pm = np.nan_to_num(self.means, nan=0.0) @ self.eigvecs_  # (C, K), absent rows 0
        self._scan = _Scan(None, self.eigvecs_, pm, self.n_classes) if self.k else None
        self.proj_sq_ = np.zeros(self.k)
        self.n_samples_ = 0

    @property
    def k(self) -> int:
        return int(self.eigvals_.shape[0])

    def update(self, features: Any, labels: Any) -> WithinClassProjection:
        """Add a batch: ``features`` (B, D), ``labels`` (B,), the same samples as pass 1."""
        lab = _as_label_array(labels)
        if self._scan is not None:
            res = self._scan.run(features, max(1, len(lab)), labels=lab)
            self.proj_sq_ += res["proj_sq"]
            self.n_samples_ += res["n"]
        else:
            self.n_samples_ += len(lab)
        return self

    def update_from(
        self, features: Features, labels: Any, chunk_size: int = 4096
    ) -> WithinClassProjection:
        """Add all rows of ``features`` (array, memmap, tensor or chunk callable)."""
        lab = _as_label_array(labels)
        if self._scan is not None:
            res = self._scan.run(features, chunk_size, labels=lab)
            self.proj_sq_ += res["proj_sq"]
            self.n_samples_ += res["n"]
        else:
            self.n_samples_ += len(lab)
        return self

    @property
    def within_variances_(self) -> np.ndarray:
        """(K,) ``u_k^T Sigma_W u_k``."""
        self._check_complete()
        return self.proj_sq_ / self.n_samples_

    def _check_complete(self) -> None:
        if self.n_samples_ != self.class_means.n_samples_:
            raise RuntimeError(
                f"the projection pass saw {self.n_samples_} samples but the class means were "
                f"computed from {self.class_means.n_samples_}: both passes must cover the same "
                "samples"
            )

    def nc1(self) -> float:
        """NC1 = tr(Sigma_W Sigma_B^+) / C' (NaN with a warning when Sigma_B = 0 or C' < 2)."""
        self._check_complete()
        c_p = self.class_means.n_classes_present_
        if self.k == 0:
            warnings.warn(
                f"NC1 undefined: {c_p} present class(es) and/or all class means coincide",
                RuntimeWarning,
                stacklevel=2,
            )
            return float("nan")
        return float(np.sum(self.within_variances_ / self.eigvals_) / c_p)


def nc2_metrics(means: np.ndarray, global_mean: np.ndarray) -> dict[str, float]:
    """NC2 of the present classes' centred means ``mu_c - mu_G``.

    Parameters
    ----------
    means : (C, D) class means (all-NaN rows: absent, ignored).
    global_mean : (D,) global mean.

    Returns
    -------
    dict with ``nc2_equinorm`` (std_c / mean_c of ``||mu_c - mu_G||``, population std),
    ``nc2_equiangularity`` (std over pairs c != c' of the cosines), ``nc2_mean_angle_dev`` and
    ``nc2_max_angle_dev`` (mean and max of ``|cos + 1/(C'-1)|``). NaN (with a warning) when fewer
    than two classes are present or a centred mean is zero.
    """
    m, present = _check_means(means)
    mc = m[present] - np.asarray(global_mean, dtype=np.float64)[None, :]
    c_p = mc.shape[0]
    nan = {
        "nc2_equinorm": float("nan"),
        "nc2_equiangularity": float("nan"),
        "nc2_mean_angle_dev": float("nan"),
        "nc2_max_angle_dev": float("nan"),
    }
    norms = np.linalg.norm(mc, axis=1)
    if c_p < 2 or not np.all(norms > 0):
        warnings.warn(
            f"NC2 undefined: {c_p} present class(es) or a class mean equal to the global mean",
            RuntimeWarning,
            stacklevel=2,
        )
        return nan
    unit = mc / norms[:, None]
    cos = (unit @ unit.T)[np.triu_indices(c_p, k=1)]
    dev = np.abs(cos + 1.0 / (c_p - 1))
    return {
        "nc2_equinorm": float(norms.std() / norms.mean()),
        "nc2_equiangularity": float(cos.std()),
        "nc2_mean_angle_dev": float(dev.mean()),
        "nc2_max_angle_dev": float(dev.max()),
    }


def nc3_metric(classifier_weight: Any, means: np.ndarray, global_mean: np.ndarray) -> float:
    """NC3 = ``|| W^T/||W||_F - M/||M||_F ||_F^2`` (self-duality).

    Parameters
    ----------
    classifier_weight : (C, D) weight ``W`` of the last linear layer (``logits = h W^T + b``).
    means : (C, D) class means of the penultimate layer (all-NaN rows: absent classes; the
        corresponding rows of ``W`` are dropped).
    global_mean : (D,) global mean.

    Returns
    -------
    float in [0, 4]; ``M`` is ``D x C'`` with columns ``mu_c - mu_G``, so ``W^T`` (``D x C``)
    and ``M`` have the same orientation.
    """
    w = classifier_weight
    w = w.detach().cpu().numpy() if _is_torch(w) else np.asarray(w)
    w = np.asarray(w, dtype=np.float64)
    m, present = _check_means(means)
    if w.shape != m.shape:
        raise ValueError(
            f"classifier weight has shape {w.shape}, expected (n_classes, D) = {m.shape}"
        )
    if not np.isfinite(w).all():
        raise NonFiniteFeaturesError("classifier weight contains NaN or infinite values")
    wt = w[present].T
    mm = (m[present] - np.asarray(global_mean, dtype=np.float64)[None, :]).T
    nw, nm = np.linalg.norm(wt), np.linalg.norm(mm)
    if nw == 0 or nm == 0:
        warnings.warn(
            "NC3 undefined: zero classifier weight or zero class means",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan")
    return float(np.sum((wt / nw - mm / nm) ** 2))


def collapse_metrics(
    features: Features,
    labels: Any,
    n_classes: int,
    *,
    predictions: Any = None,
    classifier_weight: Any = None,
    penultimate: bool = False,
    chunk_size: int = 4096,
    rtol: float | None = None,
    class_means: ClassMeans | None = None,
) -> dict[str, Any]:
    """Neural-collapse metrics of one layer on one split, in two streaming passes.

    Pass 1 accumulates the class means (skipped when ``class_means`` is given, which must come
    from the same samples); pass 2 computes, in one matrix product per block, the NCC
    predictions and the projections of ``h_i - mu_{y_i}`` on the ``Sigma_B`` eigenvectors.

    Parameters
    ----------
    features : (N, D) features (numpy array / memmap / torch tensor / chunk callable).
    labels : (N,) true labels in ``[0, n_classes)``.
    n_classes : number of classes ``C``.
    predictions : (N,) the network's predictions (for the NCC mismatch and NC4), optional.
    classifier_weight : (C, D) last-layer weight; gives NC3 (only meaningful at the
        penultimate layer).
    penultimate : this is the penultimate layer: report ``nc4`` = NCC mismatch.
    chunk_size : rows per chunk.
    rtol : rank tolerance for ``Sigma_B`` (see :func:`between_class_eigh`).
    class_means : precomputed :class:`ClassMeans` of these samples.

    Returns
    -------
    dict: ``n_samples, dim, n_classes_present, ncc_accuracy, ncc_mismatch`` (NaN without
    predictions), ``nc1, nc2_equinorm, nc2_equiangularity, nc2_mean_angle_dev,
    nc2_max_angle_dev, nc3`` (NaN without ``classifier_weight``), ``nc4`` (NaN unless
    ``penultimate``), and ``means`` (the :class:`ClassMeans`).
    """
    chunk_size = _check_chunk_size(chunk_size)
    lab = _as_label_array(labels)
    if class_means is None:
        class_means = ClassMeans(n_classes).update_from(features, lab, chunk_size)
    elif class_means.n_classes != n_classes:
        raise ValueError(
            f"class_means has {class_means.n_classes} classes, n_classes is {n_classes}"
        )
    means = class_means.means_
    gmean = class_means.global_mean_
    proj = WithinClassProjection(class_means, rtol=rtol)
    scan = _Scan(means, proj.eigvecs_, np.nan_to_num(means, nan=0.0) @ proj.eigvecs_, n_classes)
    res = scan.run(features, chunk_size, labels=lab, predictions=predictions)
    proj.proj_sq_ = res["proj_sq"]
    proj.n_samples_ = res["n"]
    nc1 = proj.nc1()
    nc2 = nc2_metrics(means, gmean)
    n = res["n"]
    mismatch = res["n_mismatch"] / n if (predictions is not None and n) else float("nan")
    if penultimate and predictions is None:
        raise ValueError("nc4 (penultimate=True) needs the network's predictions")
    return {
        "n_samples": n,
        "dim": int(means.shape[1]),
        "n_classes_present": class_means.n_classes_present_,
        "ncc_accuracy": res["n_correct"] / n if n else float("nan"),
        "ncc_mismatch": mismatch,
        "nc1": nc1,
        **nc2,
        "nc3": (
            nc3_metric(classifier_weight, means, gmean)
            if classifier_weight is not None
            else float("nan")
        ),
        "nc4": mismatch if penultimate else float("nan"),
        "means": class_means,
    }


# --------------------------------------------------------------------------------------------
# Per-layer table over an activation dump
# --------------------------------------------------------------------------------------------


def _dump_source(dump: ActivationDumpLike, name: str) -> Features:
    """Rows of layer ``name``: the memmap when the dump offers one, else its chunk iterator."""
    if hasattr(dump, "layer"):
        return dump.layer(name)
    return lambda cs: dump.iter_chunks(name, cs)


def _manifest_layers(dump: ActivationDumpLike) -> dict[str, dict[str, Any]]:
    manifest = getattr(dump, "manifest", None) or {}
    return {entry["name"]: entry for entry in manifest.get("layers", []) if "name" in entry}


def _layer_dim(dump: ActivationDumpLike, name: str) -> int:
    entry = _manifest_layers(dump).get(name)
    if entry is not None and "dim" in entry:
        return int(entry["dim"])
    if hasattr(dump, "layer"):
        return int(dump.layer(name).shape[1])
    return int(next(iter(dump.iter_chunks(name, 1))).shape[1])


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def layer_table(
    train_dump: ActivationDumpLike,
    test_dump: ActivationDumpLike | None = None,
    *,
    classifier_weight: Any = None,
    penultimate_layer: str | None = None,
    n_classes: int | None = None,
    layers: Sequence[str] | None = None,
    chunk_size: int = 4096,
    log: Callable[[str], None] | None = _stderr,
) -> pd.DataFrame:
    """NCC and neural-collapse metrics for every layer of an activation dump.

    Class means come from the train dump with the true labels (the dump's ``true_labels`` when
    it has them, as the train split of a label-noise run does, else its ``labels``; NC1 and the
    NCC accuracy use the same labels); the NCC mismatch compares the NCC decision with the
    network's predictions stored in each dump (test uses the train means).

    Parameters
    ----------
    train_dump, test_dump : activation dumps (``mfoml.activations.open_activations``) of the
        same model and epoch; ``test_dump`` must have the same layers and dimensions.
    classifier_weight : (C, D_penultimate) last-layer weight, for NC3.
    penultimate_layer : name of the penultimate layer (NC3, NC4). Default: the layer just
        before ``"logits"`` when the dump has one, else, with ``classifier_weight``, the last
        layer whose dimension equals ``W.shape[1]``.
    n_classes : number of classes. Default: ``classifier_weight.shape[0]``, else the dimension
        of the ``"logits"`` layer, else ``max(labels, predictions) + 1``.
    layers : subset of layers (default: all, in probe order).
    chunk_size : rows per chunk (bounds the memory).
    log : progress callback (one line per layer; default stderr; ``None``: silent).

    Returns
    -------
    pandas.DataFrame, one row per layer in probe order, columns ``layer, layer_index, dim,
    reduction (JSON text or None), n_train, n_test, n_classes, n_classes_present, ncc_mismatch_train,
    ncc_mismatch_test, ncc_accuracy_train, ncc_accuracy_test, nc1, nc2_equinorm,
    nc2_equiangularity, nc2_mean_angle_dev, nc2_max_angle_dev, nc3, nc4, is_penultimate``.
    ``nc3`` and ``nc4`` (= the train NCC mismatch, Papyan's definition) are filled on the
    penultimate row only and NaN elsewhere (``nc3`` also NaN, with a log line, when the dump
    stores a pooled version of the penultimate layer, since ``W`` does not act on it);
    ``*_test`` are NaN without a test dump.

    Raises
    ------
    NonFiniteFeaturesError : a layer contains NaN/inf (the message names the layer and split).
    ValueError : inconsistent dumps, classes or classifier shape.
    """
    chunk_size = _check_chunk_size(chunk_size)
    names = list(train_dump.layers if layers is None else layers)
    unknown = [n for n in names if n not in train_dump.layers]
    if unknown:
        raise ValueError(f"layers {unknown} are not in the train dump (has {train_dump.layers})")
    if test_dump is not None:
        missing = [n for n in names if n not in test_dump.layers]
        if missing:
            raise ValueError(f"layers {missing} are missing from the test dump")
    # true labels (METHODS section 7): a label-noise run's train dump stores the noisy labels it
    # was trained on in ``labels`` and the true ones in ``true_labels``
    y_train = _as_label_array(getattr(train_dump, "true_labels", train_dump.labels), "train labels")
    p_train = _as_label_array(train_dump.predictions, "train predictions")
    w = classifier_weight
    if w is not None:
        w = w.detach().cpu().numpy() if _is_torch(w) else np.asarray(w)
        w = np.asarray(w, dtype=np.float64)
        if w.ndim != 2:
            raise ValueError(f"classifier_weight must have shape (C, D), got {w.shape}")
    dims = {name: _layer_dim(train_dump, name) for name in train_dump.layers}
    if n_classes is None:
        if w is not None:
            n_classes = int(w.shape[0])
        elif "logits" in dims:
            n_classes = dims["logits"]
        else:
            arrays = [y_train, p_train]
            if test_dump is not None:
                arrays += [
                    np.asarray(getattr(test_dump, "true_labels", test_dump.labels)),
                    np.asarray(test_dump.predictions),
                ]
            n_classes = int(max(int(np.max(a)) for a in arrays if len(a))) + 1
    if w is not None and w.shape[0] != n_classes:
        raise ValueError(f"classifier_weight has {w.shape[0]} rows but n_classes is {n_classes}")
    all_layers = list(train_dump.layers)
    if penultimate_layer is None:
        if "logits" in all_layers and all_layers.index("logits") > 0:
            penultimate_layer = all_layers[all_layers.index("logits") - 1]
        elif w is not None:
            match = [n for n in all_layers if dims[n] == w.shape[1] and n != "logits"]
            if not match:
                raise ValueError(
                    f"no layer of the dump has the classifier's input dimension {w.shape[1]} "
                    f"(dims: {dims}); pass penultimate_layer or drop classifier_weight"
                )
            penultimate_layer = match[-1]
    elif penultimate_layer not in all_layers:
        raise ValueError(f"penultimate_layer {penultimate_layer!r} is not in the dump")
    man = _manifest_layers(train_dump)
    w_pen = w
    if w is not None and dims[penultimate_layer] != w.shape[1]:
        reduction = man.get(penultimate_layer, {}).get("reduction") or {}
        if int(reduction.get("original_dim", -1)) != w.shape[1]:
            raise ValueError(
                f"classifier_weight expects {w.shape[1]} features but penultimate layer "
                f"{penultimate_layer!r} has dimension {dims[penultimate_layer]} in the dump"
            )
        w_pen = None  # the dump stores a pooled version: W does not act on it
        if log is not None:
            log(
                f"[ncc] penultimate layer {penultimate_layer!r} was reduced "
                f"({reduction.get('method')}, {w.shape[1]} -> {dims[penultimate_layer]} "
                "features) in the dump: NC3 is not computable (NaN)"
            )
    rows = []
    t_all = time.perf_counter()
    for pos, name in enumerate(names):
        t0 = time.perf_counter()
        is_pen = name == penultimate_layer
        try:
            split = "train"
            src = _dump_source(train_dump, name)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                met = collapse_metrics(
                    src,
                    y_train,
                    n_classes,
                    predictions=p_train,
                    classifier_weight=w_pen if is_pen else None,
                    penultimate=is_pen,
                    chunk_size=chunk_size,
                )
            for wrn in caught:
                if log is not None:
                    log(f"[ncc] layer {name!r}: warning: {wrn.message}")
            row_test = {"n": 0, "ncc_mismatch": float("nan"), "ncc_accuracy": float("nan")}
            if test_dump is not None:
                split = "test"
                if _layer_dim(test_dump, name) != dims[name]:
                    raise ValueError(
                        f"layer {name!r} has dimension {_layer_dim(test_dump, name)} in the "
                        f"test dump but {dims[name]} in the train dump"
                    )
                scan = _Scan(met["means"].means_, None, None, n_classes)
                res = scan.run(
                    _dump_source(test_dump, name),
                    chunk_size,
                    labels=_as_label_array(
                        getattr(test_dump, "true_labels", test_dump.labels), "test labels"
                    ),
                    predictions=_as_label_array(test_dump.predictions, "test predictions"),
                )
                row_test = {
                    "n": res["n"],
                    "ncc_mismatch": res["n_mismatch"] / res["n"] if res["n"] else float("nan"),
                    "ncc_accuracy": res["n_correct"] / res["n"] if res["n"] else float("nan"),
                }
        except NonFiniteFeaturesError as exc:
            raise NonFiniteFeaturesError(f"layer {name!r} ({split} split): {exc}") from exc
        except ValueError as exc:
            raise ValueError(f"layer {name!r} ({split} split): {exc}") from exc
        entry = man.get(name, {})
        rows.append(
            {
                "layer": name,
                "layer_index": int(entry.get("index", all_layers.index(name))),
                "dim": dims[name],
                "reduction": (
                    None
                    if entry.get("reduction") is None
                    else json.dumps(entry["reduction"], sort_keys=True)
                ),
                "n_train": met["n_samples"],
                "n_test": row_test["n"],
                "n_classes": n_classes,
                "n_classes_present": met["n_classes_present"],
                "ncc_mismatch_train": met["ncc_mismatch"],
                "ncc_mismatch_test": row_test["ncc_mismatch"],
                "ncc_accuracy_train": met["ncc_accuracy"],
                "ncc_accuracy_test": row_test["ncc_accuracy"],
                "nc1": met["nc1"],
                "nc2_equinorm": met["nc2_equinorm"],
                "nc2_equiangularity": met["nc2_equiangularity"],
                "nc2_mean_angle_dev": met["nc2_mean_angle_dev"],
                "nc2_max_angle_dev": met["nc2_max_angle_dev"],
                "nc3": met["nc3"],
                "nc4": met["nc4"],
                "is_penultimate": is_pen,
            }
        )
        if log is not None:
            log(
                f"[ncc] layer {pos + 1}/{len(names)} {name!r} (D={dims[name]}): "
                f"mismatch train={met['ncc_mismatch']:.4f} test={row_test['ncc_mismatch']:.4f} "
                f"nc1={met['nc1']:.4g} ({time.perf_counter() - t0:.1f}s)"
            )
    if log is not None:
        log(f"[ncc] {len(names)} layers in {time.perf_counter() - t_all:.1f}s")
    return pd.DataFrame(rows)
