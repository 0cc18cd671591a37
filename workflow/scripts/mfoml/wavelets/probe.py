"""The sparsity probe: Besov smoothness alpha of a labelled data set in one call.

:func:`sparsity_probe` fits a wavelet forest (:mod:`mfoml.wavelets.forest`) on ``(X, y)`` and
estimates alpha from its wavelet norms (:func:`mfoml.wavelets.smoothness.alpha_star`) or from its
M-term error curve (:func:`mfoml.wavelets.smoothness.alpha_loglog`); see ``docs/methods.md``
(the sparsity probe).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from mfoml.wavelets.decompose import fit_decompose, onehot_labels, resolve_backend
from mfoml.wavelets.params import PROBE_PARAMS, check_params
from mfoml.wavelets.smoothness import METHODS, AlphaResult, alpha_loglog, alpha_star

__all__ = ["sparsity_probe", "random_labels_for_baseline"]

log = logging.getLogger(__name__)


def random_labels_for_baseline(y: np.ndarray, seed: int, epoch: int, split_no: int) -> np.ndarray:
    """The random-label baseline's labels: ``y`` (N,) permuted by a generator seeded with
    ``(seed, epoch, split_no)`` (one permutation per checkpoint and split, shared by every
    layer). Same class counts as ``y``, association with the inputs destroyed."""
    return np.random.default_rng([int(seed), int(epoch), int(split_no)]).permutation(np.asarray(y))


def _infer_task(y: np.ndarray) -> str:
    if y.ndim == 1 and (
        np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_ or y.dtype.kind in "OUS"
    ):
        return "classification"
    return "regression"


def sparsity_probe(
    X: Any,
    y: Any,
    *,
    task: str | None = None,
    n_trees: int = 1,
    max_depth: int | None = 15,
    norm_weight: str = "num_samples",
    max_features: int | float | str | None = None,
    min_samples_leaf: int | float = 1,
    bootstrap: bool = True,
    random_state: int | None = 0,
    n_jobs: int | None = None,
    method: str = "angle",
    backend: str = "auto",
    **alpha_kwargs: Any,
) -> AlphaResult:
    """The sparsity probe: fit a wavelet forest on a representation and estimate α.

    Defaults are the reference's deep-net probe: 1 tree, depth 15, ``num_samples`` weighting,
    all features considered at every split (``max_features=None``), sklearn's bootstrap.

    Parameters
    ----------
    X : array-like (n_samples, n_features), e.g. a float16 ``np.memmap`` of a layer's
        activations; it is read in row chunks and converted once to the scaled float32 matrix
        the trees need (no float64 copy of the whole matrix).
    y : (n_samples,) labels (classification: one-hot targets) or targets (regression).
    task : ``"classification"``, ``"regression"`` or None (integer/bool/string labels →
        classification, floats → regression).
    n_trees, max_depth, norm_weight, max_features, min_samples_leaf, bootstrap, random_state,
    n_jobs : forest settings.
    backend : forest builder: ``"auto"`` (the fast exact builder for classification,
        scikit-learn for regression), ``"fast"`` or ``"sklearn"``; both give the same trees.
    method : ``"angle"`` (default), ``"angle_true_derivative"``, ``"norms"`` or ``"loglog"``
        (the log-log M-term estimator on the training data).
    **alpha_kwargs : passed to :func:`alpha_star` (tau and epsilon grids, ``tau_fixed``) or to
        :func:`alpha_loglog` (``n_points``, ``n_terms``).

    Returns
    -------
    AlphaResult whose ``metadata`` holds ``n_samples, n_features, n_wavelets, task,
    backend`` (the builder used), ``fit_seconds`` (forest fit), ``decompose_seconds``,
    ``alpha_seconds`` and the settings.

    Raises
    ------
    ValueError
        NaN/inf in X (naming row and feature), mismatched lengths, unknown task or method;
        :class:`mfoml.wavelets.params.InvalidParameterError` (a ``ValueError``) for a forest
        setting out of range (``n_trees=0``, ``max_depth=-1``: ``PROBE_PARAMS``).
    """
    settings = {"n_trees": n_trees, "max_depth": max_depth, "norm_weight": norm_weight,
                "max_features": max_features, "min_samples_leaf": min_samples_leaf,
                "bootstrap": bootstrap, "random_state": random_state, "n_jobs": n_jobs,
                "backend": backend}  # fmt: skip
    check_params(settings, PROBE_PARAMS, "sparsity_probe")
    y = np.asarray(y)
    if task is None:
        task = _infer_task(y)
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    if method not in METHODS + ("loglog",):
        raise ValueError(f"method must be one of {METHODS + ('loglog',)}, got {method!r}")
    used = resolve_backend(backend, task)
    forest_params = {
        "n_estimators": n_trees,
        "max_depth": max_depth,
        "min_samples_leaf": min_samples_leaf,
        "max_features": max_features,
        "bootstrap": bootstrap,
        "random_state": random_state,
        "n_jobs": n_jobs,
    }
    shape = getattr(X, "shape", None)
    log.info(
        "sparsity probe: fitting %d tree(s), depth %s on X of shape %s", n_trees, max_depth, shape
    )
    if used == "fast" and task == "classification" and method != "loglog":
        # Only the norms are needed: fit and decompose without the scikit-learn estimator
        # (the same forest and norms as WaveletForestClassifier(backend="fast"); no sklearn
        # import, about 2 CPU-s saved per probe job).
        from mfoml.wavelets.fasttree import FastForestRegressor

        _, targets = onehot_labels(y)
        fitted = fit_decompose(X, targets, FastForestRegressor(**forest_params), norm_weight)
        norms = fitted.norms
        fit_seconds, decompose_seconds = fitted.fit_seconds, fitted.decompose_seconds
        n_features = fitted.data_min.shape[0]
    else:
        from mfoml.wavelets.forest import WaveletForestClassifier, WaveletForestRegressor

        cls = WaveletForestClassifier if task == "classification" else WaveletForestRegressor
        model = cls(norm_weight=norm_weight, backend=backend, **forest_params)
        model.fit(X, y)
        norms = model.wavelet_norms_
        fit_seconds, decompose_seconds = model.fit_seconds_, model.decompose_seconds_
        n_features = model.n_features_in_
    t0 = time.perf_counter()
    if method == "loglog":
        result = alpha_loglog(model, X, y, **alpha_kwargs)
    else:
        result = alpha_star(norms, n_trees, method=method, **alpha_kwargs)
    alpha_seconds = time.perf_counter() - t0
    result.metadata.update(
        {
            "n_samples": int(np.shape(X)[0]),
            "n_features": int(n_features),
            "n_wavelets": int(norms.shape[0]),
            "task": task,
            "backend": used,
            "n_trees": int(n_trees),
            "max_depth": max_depth,
            "norm_weight": norm_weight,
            "max_features": max_features,
            "min_samples_leaf": min_samples_leaf,
            "bootstrap": bool(bootstrap),
            "random_state": random_state,
            "fit_seconds": float(fit_seconds),
            "decompose_seconds": float(decompose_seconds),
            "alpha_seconds": float(alpha_seconds),
        }
    )
    log.info(
        "sparsity probe: alpha=%.4g (%s), %d wavelets, fit %.2fs (%s), decomposition %.3fs",
        result.alpha,
        result.status,
        norms.shape[0],
        fit_seconds,
        used,
        decompose_seconds,
    )
    return result
