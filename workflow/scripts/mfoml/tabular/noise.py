"""The label-noise (target-noise) study: accuracy and smoothness alpha under increasing noise."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mfoml.data.folds import split_indices
from mfoml.data.noise import flip_labels, gaussian_target_noise
from mfoml.tabular.data import (
    DatasetJob,
    TabularData,
    check_folds,
    folds_array,
    forest_params,
)
from mfoml.tabular.models import evaluate, impute_in_fold, scalar_metrics
from mfoml.tabular.wavelet import make_wavelet_forest
from mfoml.wavelets.probe import sparsity_probe
from mfoml.wavelets.smoothness import alpha_star

log = logging.getLogger(__name__)


def noise_study(
    data: TabularData,
    folds: np.ndarray | Mapping[str, Any],
    levels: Sequence[float],
    params: Mapping[str, Any],
    *,
    alpha_params: Mapping[str, Any] | None = None,
    seed: int = 0,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Scores and the forest's smoothness alpha as label / target noise grows.

    Per level and outer fold: classification relabels ``round(level * N_train)`` training labels
    (:func:`mfoml.data.noise.flip_labels`); regression adds Gaussian noise with standard deviation
    ``level * std(y_train)`` to the training targets (:func:`mfoml.data.noise.gaussian_target_noise`).
    A wavelet forest (``params``) is fit on the noisy training fold and scored on the clean
    test fold; ``forest_alpha`` is :func:`mfoml.wavelets.smoothness.alpha_star` (angle estimator) of that
    forest's wavelet norms, and ``alpha`` the sparsity probe
    (:func:`mfoml.wavelets.probe.sparsity_probe`, ``alpha_params`` overriding its defaults: 1 tree,
    depth 15) on the same noisy training fold.

    Returns
    -------
    dict with ``rows``: per (level, fold) the scalar metrics, ``alpha``, ``alpha_min``,
    ``alpha_max``, ``alpha_status``, ``forest_alpha``, ``forest_alpha_status``, ``noise_sigma`` (regression) and ``n_changed``
    (classification).
    """

    fold_arr, n_splits = folds_array(folds)
    check_folds(data, fold_arr)
    alpha_params = dict(alpha_params or {})
    rows = []
    for li, level in enumerate(levels):
        for k in range(n_splits):
            tr, te = split_indices(fold_arr, k)
            y_tr = data.y[tr]
            noise_seed = seed + 7919 * li + k
            extra: dict[str, Any] = {}
            if data.is_classification:
                y_noisy, changed = flip_labels(y_tr, float(level), data.n_classes, noise_seed)
                extra["n_changed"] = int(changed.sum())
            else:
                sigma = float(level) * float(np.std(y_tr))
                y_noisy = gaussian_target_noise(y_tr, sigma, noise_seed)
                extra["noise_sigma"] = sigma
            wf = make_wavelet_forest(data.task, params, seed + k, n_jobs)
            X = impute_in_fold(data, tr)  # missing values: statistics of the training fold only
            with threadpool_limits(n_jobs):
                wf.fit(X[tr], y_noisy)
                m = evaluate(data, data.y[te], wf.predict(X[te], n_terms="all"))
                res = sparsity_probe(X[tr], y_noisy, task=data.task, **alpha_params)
            a = res.to_dict()
            fa = alpha_star(wf.wavelet_norms_, len(wf.forest_.estimators_)).to_dict()
            rows.append(
                {
                    "dataset": data.name,
                    "level": float(level),
                    "fold": k,
                    **extra,
                    **scalar_metrics(m),
                    "alpha": _float_or_nan(a.get("alpha")),
                    "alpha_min": _float_or_nan(a.get("alpha_min")),
                    "alpha_max": _float_or_nan(a.get("alpha_max")),
                    "alpha_status": str(a.get("status", "")),
                    "forest_alpha": _float_or_nan(fa.get("alpha")),
                    "forest_alpha_status": str(fa.get("status", "")),
                }
            )
        lv = [r for r in rows if r["level"] == float(level)]
        log.info(
            f"{data.name}: noise {level}: score {np.mean([r['score'] for r in lv]):.4f} "
            f"alpha {np.nanmean([r['alpha'] for r in lv]):.4f}"
        )
    return {"rows": rows}


def _float_or_nan(v: Any) -> float:
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def noise_job(job: DatasetJob) -> dict[str, Any]:
    """The computation of rule ``tabular_noise``: :func:`noise_study` with the settings of the
    job's ``tabular`` slice (``forest`` with ``noise.n_estimators`` trees, ``seed`` and
    ``noise``: ``levels`` for classification, ``regression_levels`` for regression, ``probe``);
    returns its result.
    """
    n = job.cfg["noise"]
    levels = n["levels"] if job.data.is_classification else n["regression_levels"]
    log.info("%s: noise levels %s", job.data.name, levels)
    params = forest_params({**job.cfg["forest"], "n_estimators": n["n_estimators"]})
    probe, seed = n["probe"], job.cfg["seed"]
    return noise_study(
        job.data, job.folds, levels, params, alpha_params=probe, seed=seed, n_jobs=job.n_jobs
    )
