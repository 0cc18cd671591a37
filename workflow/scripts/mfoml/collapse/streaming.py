"""Streaming over sample chunks for the NCC and collapse measures: blocks, BLAS, the scan kernel.

Features are an ``(N, D)`` array-like that supports row slicing (numpy array, ``np.memmap``,
torch tensor) or a callable ``chunk_size -> iterable of (n_i, D) arrays``. The numpy path works
on sub-blocks of about 1 MiB of float64 (so that the float16 -> float64 conversion and the skinny
matrix products stay in cache) with BLAS limited to one thread for these products (they are
memory bound; threading small products only adds overhead). The torch path computes on the
tensor's device in float64, ``chunk_size`` rows at a time.

:class:`Scan` is the kernel of one ordered pass: for each block ``h`` it forms
``h @ [mu_p^T | U]`` once, giving the NCC scores and the projected within-class residuals
(``docs/methods.md``, NCC and neural collapse).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily, on the torch code paths only
    import torch

__all__ = [
    "Features",
    "NonFiniteFeaturesError",
    "Scan",
    "as_label_array",
    "check_chunk_size",
    "check_label_range",
    "check_means",
    "feature_dim",
    "feature_rows",
    "int_tensor",
    "is_torch",
    "iter_feature_chunks",
    "merge_scans",
    "single_blas_thread",
    "sub_blocks",
    "to_f64",
]

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


# --------------------------------------------------------------------------------------------
# Helpers: blocks, BLAS threads, validation
# --------------------------------------------------------------------------------------------

_THREADPOOL_CONTROLLER: Any = None


@contextlib.contextmanager
def single_blas_thread() -> Iterator[None]:
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


def is_torch(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch: if torch was never imported,
    ``x`` cannot be one)."""
    mod = sys.modules.get("torch")
    return mod is not None and isinstance(x, mod.Tensor)


def check_chunk_size(chunk_size: int) -> int:
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


def feature_rows(features: Features) -> int | None:
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


def iter_feature_chunks(features: Features, chunk_size: int) -> Iterator[tuple[int, Any]]:
    """Yield ``(start_row, chunk)`` over the rows of ``features`` in order."""
    n = feature_rows(features)
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


def sub_blocks(chunk: np.ndarray, chunk_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """Split a numpy chunk into cache-sized row blocks (at most ``chunk_size`` rows)."""
    d = max(1, int(chunk.shape[1]))
    rows = min(chunk_size, max(_MIN_BLOCK_ROWS, _BLOCK_BYTES // (8 * d)))
    for a in range(0, int(chunk.shape[0]), rows):
        yield a, chunk[a : a + rows]


def to_f64(block: np.ndarray, buf: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Convert a numpy block to float64, reusing ``buf`` (returned for the next call)."""
    n, d = block.shape
    if buf is None or buf.shape[0] < n or buf.shape[1] != d:
        buf = np.empty((n, d), dtype=np.float64)
    out = buf[:n]
    np.copyto(out, block, casting="unsafe")
    return out, buf


def as_label_array(labels: Any, name: str = "labels") -> np.ndarray | torch.Tensor:
    if is_torch(labels):
        import torch

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


def check_label_range(lab: Any, n_classes: int, name: str) -> None:
    if len(lab) == 0:
        return
    lo, hi = (int(lab.min()), int(lab.max()))
    if lo < 0 or hi >= n_classes:
        raise ValueError(f"{name} must lie in [0, {n_classes}), found values in [{lo}, {hi}]")


def check_means(means: Any, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate class means ``(C, D)``; return them (float64 numpy) and the present mask.

    A row that is entirely NaN marks an absent class; any other non-finite value is an error.
    """
    m = means.detach().cpu().numpy() if is_torch(means) else np.asarray(means)
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


def feature_dim(features: Features) -> int | None:
    shape = getattr(features, "shape", None)
    return None if shape is None else int(shape[1])


# --------------------------------------------------------------------------------------------
# The scanning kernel: NCC scores and NC1 projections in one matrix product per block
# --------------------------------------------------------------------------------------------


class Scan:
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
            m, present = check_means(means)
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
        import torch

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
        chunk_size = check_chunk_size(chunk_size)
        n_expected = feature_rows(features)
        dim = feature_dim(features)
        if dim is not None and dim != self.dim:
            raise ValueError(f"features have dimension {dim}, means have dimension {self.dim}")
        lab = None if labels is None else as_label_array(labels, "labels")
        pred = None if predictions is None else as_label_array(predictions, "predictions")
        for name, arr in (("labels", lab), ("predictions", pred)):
            if arr is not None and n_expected is not None and len(arr) != n_expected:
                raise ValueError(f"features have {n_expected} rows but {name} have {len(arr)}")
        if self.n_proj and lab is None:
            raise ValueError("labels are needed for the within-class projections")
        if lab is not None and self.n_proj:
            check_label_range(lab, self.n_classes, "labels")
        if not is_torch(features):  # numpy features: numpy labels
            lab = lab.detach().cpu().numpy() if is_torch(lab) else lab
            pred = pred.detach().cpu().numpy() if is_torch(pred) else pred
        n = 0
        n_mismatch = 0
        n_correct = 0
        proj_sq = np.zeros(self.n_proj)
        preds_out: list[Any] = []
        buf: np.ndarray | None = None
        ctx = single_blas_thread() if not is_torch(features) else contextlib.nullcontext()
        with ctx:
            for start, chunk in iter_feature_chunks(features, chunk_size):
                k = int(chunk.shape[0])
                if int(chunk.shape[1]) != self.dim:
                    raise ValueError(
                        f"features have dimension {chunk.shape[1]}, means have dimension {self.dim}"
                    )
                for name, arr in (("labels", lab), ("predictions", pred)):
                    if arr is not None and start + k > len(arr):
                        raise ValueError(f"features have more rows than the {len(arr)} {name}")
                if is_torch(chunk):
                    res = self._block_torch(chunk, start, lab, pred, keep_predictions)
                else:
                    res = None
                    for a, blk in sub_blocks(chunk, chunk_size):
                        h, buf = to_f64(blk, buf)
                        r = self._block_numpy(h, start + a, lab, pred, keep_predictions)
                        res = r if res is None else merge_scans(res, r)
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
            if preds_out and is_torch(preds_out[0]):
                import torch

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
        import torch

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
                pr = int_tensor(pred[start : start + k], dev)
                res["n_mismatch"] = int((p != pr).sum())
            if lab is not None:
                lb = int_tensor(lab[start : start + k], dev)
                res["n_correct"] = int((p == lb).sum())
            if keep:
                res["pred"] = p
        if self.n_proj:
            lb = int_tensor(lab[start : start + k], dev)
            r = prod[:, self.n_scores :] - pm[lb]
            res["proj_sq"] = (r * r).sum(dim=0).cpu().numpy()
        return res


def int_tensor(x: Any, device: torch.device) -> torch.Tensor:
    """Labels (numpy, memmap or tensor) as an int64 tensor on ``device``."""
    import torch

    if is_torch(x):
        return x.to(device=device, dtype=torch.int64)
    return torch.from_numpy(np.array(x, dtype=np.int64)).to(device)


def merge_scans(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {
        "n_mismatch": a["n_mismatch"] + b["n_mismatch"],
        "n_correct": a["n_correct"] + b["n_correct"],
        "proj_sq": a["proj_sq"] + b["proj_sq"],
    }
    if "pred" in a:
        out["pred"] = np.concatenate([a["pred"], b["pred"]])
    return out
