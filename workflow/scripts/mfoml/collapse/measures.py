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

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily, on the torch code paths only
    import torch

from mfoml.collapse.accumulators import ClassMeans
from mfoml.collapse.streaming import (
    Features,
    NonFiniteFeaturesError,
    Scan,
    as_label_array,
    check_chunk_size,
    check_means,
    feature_dim,
    is_torch,
)

__all__ = [
    "WithinClassProjection",
    "collapse_metrics",
    "nc2_metrics",
    "nc3_metric",
    "ncc_accuracy",
    "ncc_mismatch",
    "ncc_predict",
]


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
    m, _ = check_means(means, feature_dim(features))
    scan = Scan(m, None, None, m.shape[0])
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
    m, _ = check_means(means, feature_dim(features))
    res = Scan(m, None, None, m.shape[0]).run(features, chunk_size, predictions=predictions)
    return res["n_mismatch"] / res["n"] if res["n"] else float("nan")


def ncc_accuracy(features: Features, labels: Any, means: Any, chunk_size: int = 4096) -> float:
    """NCC accuracy ``(1/N) #{i : y_i == argmin_c ||h_i - mu_c||}`` against the labels.

    Shapes as in :func:`ncc_mismatch`. A label of a class absent from ``means`` is never
    predicted, so it counts as an error.
    """
    m, _ = check_means(means, feature_dim(features))
    res = Scan(m, None, None, m.shape[0]).run(features, chunk_size, labels=labels)
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
        self._scan = Scan(None, self.eigvecs_, pm, self.n_classes) if self.k else None
        self.proj_sq_ = np.zeros(self.k)
        self.n_samples_ = 0

    @property
    def k(self) -> int:
        return int(self.eigvals_.shape[0])

    def update(self, features: Any, labels: Any) -> WithinClassProjection:
        """Add a batch: ``features`` (B, D), ``labels`` (B,), the same samples as pass 1."""
        lab = as_label_array(labels)
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
        lab = as_label_array(labels)
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
    m, present = check_means(means)
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
    w = w.detach().cpu().numpy() if is_torch(w) else np.asarray(w)
    w = np.asarray(w, dtype=np.float64)
    m, present = check_means(means)
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
    chunk_size = check_chunk_size(chunk_size)
    lab = as_label_array(labels)
    if class_means is None:
        class_means = ClassMeans(n_classes).update_from(features, lab, chunk_size)
    elif class_means.n_classes != n_classes:
        raise ValueError(
            f"class_means has {class_means.n_classes} classes, n_classes is {n_classes}"
        )
    means = class_means.means_
    gmean = class_means.global_mean_
    proj = WithinClassProjection(class_means, rtol=rtol)
    scan = Scan(means, proj.eigvecs_, np.nan_to_num(means, nan=0.0) @ proj.eigvecs_, n_classes)
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
