"""Wavelets of boosted trees beside the wavelet forest under the stored folds (issue 15).

Per outer fold the training fold is split into a fit part and a validation part exactly as
:func:`mfoml.tabular.wavelet.wavelet_cv` does (same seed, so the forest here is the forest of the
wavelet part); every model (the wavelet forest, scikit-learn's gradient boosting, XGBoost) is fit
on the fit part, its number of wavelets M chosen on the validation part (smallest M with the
lowest validation error) and scored on the test fold. Recorded per fold and model: the scores at
M* and with all wavelets, the compression curve (held-out error vs M), for the boosted models the
error vs number of stages, the wavelet importances and their rank agreement between models, and
the smoothness alpha of the wavelet norms (angle estimator; J = number of trees for the forest's
average, J = 1 for a boosted sum). Errors: misclassification rate (classification), mean squared
error (regression), as the forest's curves.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mfoml.data.folds import split_indices
from mfoml.tabular.data import (
    DatasetJob,
    TabularData,
    check_folds,
    folds_array,
    forest_params,
)
from mfoml.tabular.importance import _ranks, rank_agreement
from mfoml.tabular.models import XGBoostModel, evaluate, scalar_metrics
from mfoml.tabular.wavelet import _split_validation, make_wavelet_forest, n_terms_grid
from mfoml.wavelets.boosting import WaveletBoostingClassifier, WaveletBoostingRegressor
from mfoml.wavelets.smoothness import alpha_star
from mfoml.wavelets.xgboost_trees import from_xgboost

log = logging.getLogger(__name__)

BOOSTED_MODELS = ("gradient_boosting", "xgboost")
#: Keys of the ``tabular.boosting`` config block that parameterize the boosted models.
BOOSTING_PARAMS = ("n_estimators", "learning_rate", "max_depth", "subsample", "norm_weight")


class WaveletModel:
    """One fitted model of the comparison with a common wavelet interface.

    ``kind``: ``"wavelet_forest"``, ``"gradient_boosting"`` (:mod:`mfoml.wavelets.boosting`) or
    ``"xgboost"`` (an ``XGBRegressor`` / ``XGBClassifier`` decomposed by
    :mod:`mfoml.wavelets.xgboost_trees`).
    """

    def __init__(self, kind: str, task: str, params: Mapping[str, Any], seed: int, n_jobs: int):
        self.kind, self.task, self.params = kind, task, dict(params)
        self.seed, self.n_jobs = seed, n_jobs

    # ---- fitting ------------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray) -> WaveletModel:
        clf = self.task == "classification"
        if self.kind == "wavelet_forest":
            self.est = make_wavelet_forest(self.task, self.params, self.seed, self.n_jobs)
            self.est.fit(X, y)
            self.n_trees = len(self.est.forest_.estimators_)
            self.norms = self.est.wavelet_norms_
        elif self.kind == "gradient_boosting":
            cls = WaveletBoostingClassifier if clf else WaveletBoostingRegressor
            self.est = cls(random_state=self.seed, **self.params).fit(X, y)
            self.wav, self.n_trees = self.est.wavelets_, 1
            self.norms = self.wav.wavelet_norms_
        elif self.kind == "xgboost":
            p = dict(self.params)
            norm_weight = p.pop("norm_weight", "num_samples")
            tau = p.pop("importance_tau", 1.0)
            model = XGBoostModel(self.task, self.seed, self.n_jobs, **p).fit(X, y)
            self.est, self.classes_ = model.model_, getattr(model, "classes_", None)
            self.wav = from_xgboost(model.model_, X, norm_weight=norm_weight, importance_tau=tau)
            self.n_trees, self.norms = 1, self.wav.wavelet_norms_
        else:
            raise ValueError(f"unknown wavelet model {self.kind!r}")
        return self

    @property
    def n_wavelets(self) -> int:
        """Number of non-root wavelets."""
        return int(self.norms.shape[0])

    @property
    def importances(self) -> np.ndarray:
        """Wavelet feature importance (METHODS section 4), shape (d,)."""
        return np.asarray(self.est.feature_importances_ if self.kind != "xgboost" else
                          self.wav.feature_importances_, dtype=np.float64)  # fmt: skip

    # ---- evaluation ---------------------------------------------------------------------------
    def _codes(self, y: np.ndarray) -> np.ndarray:
        idx = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
        return np.where(self.classes_[idx] == y, idx, -1)

    def predict(self, X: np.ndarray, n_terms: int | str) -> np.ndarray:
        """Labels or values of the M-term model."""
        if self.kind != "xgboost":
            return self.est.predict(X, n_terms=n_terms)
        if self.task == "regression":
            return self.wav.predict(X, n_terms)[:, 0]  # the response scale (inverse link)
        raw = self.wav.raw_predict(X, n_terms)
        code = (raw[:, 0] >= 0).astype(np.int64) if raw.shape[1] == 1 else raw.argmax(axis=1)
        return self.classes_[code]

    def curve(self, X: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """Held-out error for each M in ``grid`` (sorted, unique)."""
        if self.kind == "xgboost":
            t = self._codes(y) if self.task == "classification" else y
            c = self.wav.mterm_curve(X, t, grid)
        else:
            c = self.est.mterm_curve(X, y, grid)
        return np.asarray(c["error" if self.task == "classification" else "mse"], float)

    def select(self, X: np.ndarray, y: np.ndarray, metric: str) -> tuple[int, float]:
        """The validation-chosen M and the norm of its M-th wavelet."""
        kw = {"metric": metric} if self.task == "classification" else {}
        if self.kind == "xgboost":
            t = self._codes(y) if self.task == "classification" else y
            return self.wav.select_n_terms(X, t, None, kw.get("metric"))
        return self.est.select_n_terms(X, y, **kw)

    def stages(self, X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray] | None:
        """Error vs number of boosting stages (None for the forest)."""
        if self.kind == "wavelet_forest":
            return None
        if self.kind == "xgboost":
            t = self._codes(y) if self.task == "classification" else y
            return self.wav.staged_curve(X, t)
        return self.est.staged_curve(X, y)

    def alpha(self) -> dict[str, Any]:
        """Angle-estimator smoothness of the wavelet norms (J = trees of an average, 1 for a sum)."""
        return alpha_star(self.norms, self.n_trees).to_dict()


def boosting_cv(
    data: TabularData,
    folds: np.ndarray | Mapping[str, Any],
    boosted_params: Mapping[str, Any],
    forest_params: Mapping[str, Any] | None,
    *,
    models: Sequence[str] = BOOSTED_MODELS,
    val_fraction: float = 0.2,
    select_metric: str = "error",
    curve_points: int = 40,
    importance_tau: float = 1.0,
    seed: int = 0,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Boosted-model wavelets beside the wavelet forest under the stored folds.

    Parameters
    ----------
    boosted_params : parameters of the boosted models (``n_estimators, learning_rate,
        max_depth, subsample, norm_weight``); the same for scikit-learn and XGBoost.
    forest_params : wavelet-forest parameters (``tabular.forest``), or None to leave the forest
        out of the comparison.
    models : boosted models, a subset of :data:`BOOSTED_MODELS`.
    val_fraction, select_metric, curve_points : as :func:`mfoml.tabular.wavelet.wavelet_cv`.
    importance_tau : exponent of the wavelet importance.

    Returns
    -------
    dict with ``rows`` (per fold and model: metrics at M* and ``full_*`` with all wavelets,
    ``n_terms``, ``n_wavelets``, ``kept_fraction``, ``threshold``, ``alpha``, ``fit_seconds``),
    ``curve`` (per fold, model, M: ``test_error``, ``val_error``), ``stages`` (per fold, boosted
    model and number of stages: ``n_wavelets``, ``test_error``), ``importance`` (per fold,
    model, feature: normalized ``importance`` and ``rank``), ``agreement`` (per fold and model
    pair: Spearman and Kendall of the importance vectors) and ``error_kind``.
    """
    unknown = [m for m in models if m not in BOOSTED_MODELS]
    if unknown:
        raise ValueError(f"tabular.boosting.models: unknown {unknown}; known {BOOSTED_MODELS}")
    fold_arr, n_splits = folds_array(folds)
    check_folds(data, fold_arr)
    specs: list[tuple[str, dict[str, Any]]] = []
    if forest_params is not None:
        specs.append(("wavelet_forest", {**forest_params, "importance_tau": importance_tau}))
    for m in models:
        p = {k: boosted_params[k] for k in BOOSTING_PARAMS if k in boosted_params}
        specs.append((m, {**p, "importance_tau": importance_tau}))
    rows, stage_rows, imp_rows, agree_rows, fitted = [], [], [], [], []
    for k in range(n_splits):
        tr, te = split_indices(fold_arr, k)
        fit_idx, val_idx = _split_validation(data, tr, val_fraction, seed + k)
        imps = {}
        for kind, params in specs:
            wm = WaveletModel(kind, data.task, params, seed + k, n_jobs)
            t0 = time.perf_counter()
            with threadpool_limits(n_jobs):
                wm.fit(data.X[fit_idx], data.y[fit_idx])
            fit_s = time.perf_counter() - t0
            m_star, thr = wm.select(data.X[val_idx], data.y[val_idx], select_metric)
            m_sel = evaluate(data, data.y[te], wm.predict(data.X[te], int(m_star)))
            m_all = evaluate(data, data.y[te], wm.predict(data.X[te], "all"))
            a = wm.alpha()
            rows.append(
                {
                    "dataset": data.name,
                    "model": kind,
                    "fold": k,
                    "n_terms": int(m_star),
                    "n_wavelets": wm.n_wavelets,
                    "kept_fraction": float(m_star) / max(wm.n_wavelets, 1),
                    "threshold": float(thr),
                    "alpha": float("nan") if a["alpha"] is None else float(a["alpha"]),
                    "fit_seconds": fit_s,
                    **scalar_metrics(m_sel),
                    **{f"full_{key}": v for key, v in scalar_metrics(m_all).items()},
                }
            )
            st = wm.stages(data.X[te], data.y[te])
            if st is not None:
                err = st["error" if data.is_classification else "mse"]
                for s, nw, e in zip(st["n_stages"], st["n_wavelets"], err, strict=True):
                    stage_rows.append(
                        {
                            "dataset": data.name,
                            "model": kind,
                            "fold": k,
                            "n_stages": int(s),
                            "n_wavelets": int(nw),
                            "test_error": float(e),
                        }
                    )
            imps[kind] = wm.importances
            total = imps[kind].sum()
            norm = imps[kind] / total if total > 0 else imps[kind]
            for i, (fname, v, r) in enumerate(
                zip(data.feature_names, norm, _ranks(imps[kind]), strict=True)
            ):
                imp_rows.append(
                    {
                        "dataset": data.name,
                        "model": kind,
                        "fold": k,
                        "feature": fname,
                        "feature_index": i,
                        "importance": float(v),
                        "rank": float(r),
                    }
                )
            fitted.append((k, kind, wm, te, val_idx))
            log.info(
                "%s: %s fold %d: M*=%d/%d score %.4f (all wavelets %.4f)",
                data.name, kind, k, m_star, wm.n_wavelets, m_sel["score"], m_all["score"],
            )  # fmt: skip
        for a, b in itertools.combinations(imps, 2):
            agree_rows.append(
                {
                    "dataset": data.name,
                    "fold": k,
                    "pair": f"{a}~{b}",
                    **rank_agreement(imps[a], imps[b]),
                }
            )
    curve_rows = []
    for kind, _ in specs:
        mine = [f for f in fitted if f[1] == kind]
        grid = n_terms_grid(max(f[2].n_wavelets for f in mine), curve_points)
        for k, _, wm, te, val_idx in mine:
            et = wm.curve(data.X[te], data.y[te], grid)
            ev = wm.curve(data.X[val_idx], data.y[val_idx], grid)
            for M, a, b in zip(grid, et, ev, strict=True):
                curve_rows.append(
                    {
                        "dataset": data.name,
                        "model": kind,
                        "fold": k,
                        "n_terms": int(M),
                        "test_error": float(a),
                        "val_error": float(b),
                    }
                )
    return {
        "rows": rows,
        "curve": curve_rows,
        "stages": stage_rows,
        "importance": imp_rows,
        "agreement": agree_rows,
        "error_kind": "misclassification rate" if data.is_classification else "mean squared error",
    }


def boosting_job(job: DatasetJob) -> dict[str, Any]:
    """The computation of rule ``tabular_boosting``: :func:`boosting_cv` with the settings of the
    job's ``tabular`` slice (``seed``, ``forest`` when ``boosting.compare_forest``, and
    ``boosting``: the boosted models' ``n_estimators, learning_rate, max_depth, subsample,
    norm_weight``, ``models``, ``val_fraction``, ``select_metric``, ``curve_points``, ``tau``);
    returns its result.
    """
    b = job.cfg["boosting"]
    forest = forest_params(job.cfg["forest"]) if b["compare_forest"] else None
    log.info("%s: boosted wavelets %s (forest beside: %s)", job.data.name, b["models"], forest)
    boosted = ("n_estimators", "learning_rate", "max_depth", "subsample", "norm_weight")
    return boosting_cv(
        job.data,
        job.folds,
        {k: b[k] for k in boosted},
        forest,
        **{k: b[k] for k in ("models", "val_fraction", "select_metric", "curve_points")},
        importance_tau=b["tau"],
        seed=job.cfg["seed"],
        n_jobs=job.n_jobs,
    )
