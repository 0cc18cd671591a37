"""Feature importances (wavelet, impurity, permutation), their rank agreement and the synthetic check."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats
from sklearn.inspection import permutation_importance
from threadpoolctl import threadpool_limits

from mfoml.data.folds import split_indices
from mfoml.tabular.data import (
    DatasetJob,
    TabularData,
    check_folds,
    folds_array,
    forest_params,
)
from mfoml.tabular.models import impute_in_fold, inner_cv
from mfoml.tabular.wavelet import make_wavelet_forest

log = logging.getLogger(__name__)


IMPORTANCE_METHODS = ("wavelet", "impurity", "permutation")


def _ranks(values: np.ndarray) -> np.ndarray:
    """Rank 1 = most important (ties share the average rank)."""
    return stats.rankdata(-np.asarray(values, float), method="average")


def rank_agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Spearman rho and Kendall tau-b between two importance vectors (NaN if one is constant)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"spearman": float("nan"), "kendall": float("nan")}
    return {
        "spearman": float(stats.spearmanr(a, b).statistic),
        "kendall": float(stats.kendalltau(a, b).statistic),
    }


def _importances(
    data: TabularData,
    fit_idx: np.ndarray,
    test_idx: np.ndarray,
    params: Mapping[str, Any],
    *,
    tau: float,
    n_repeats: int,
    seed: int,
    n_jobs: int,
) -> dict[str, np.ndarray]:
    wf = make_wavelet_forest(data.task, {**params, "importance_tau": tau}, seed, n_jobs)
    X = impute_in_fold(data, fit_idx)  # missing values: statistics of the fit rows only
    with threadpool_limits(n_jobs):
        wf.fit(X[fit_idx], data.y[fit_idx])
    scoring = "accuracy" if data.is_classification else "r2"
    with threadpool_limits(n_jobs):
        perm = permutation_importance(
            wf,
            X[test_idx],
            data.y[test_idx],
            scoring=scoring,
            n_repeats=n_repeats,
            random_state=seed,
            n_jobs=1,
        )
    return {
        "wavelet": np.asarray(wf.feature_importances_, float),
        "impurity": np.asarray(wf.forest_.feature_importances_, float),
        "permutation": np.asarray(perm.importances_mean, float),
    }


def importance_cv(
    data: TabularData,
    folds: np.ndarray | Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    tau: float = 1.0,
    n_repeats: int = 5,
    seed: int = 0,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Wavelet vs impurity vs permutation importance of one forest per fold, with rank agreement.

    Per outer fold a wavelet forest is fit on the training fold; the wavelet importance
    (METHODS section 4, exponent ``tau``) and scikit-learn's impurity importance are read from
    that same forest, the permutation importance (mean drop of accuracy / R^2 over
    ``n_repeats`` shuffles) is measured on the test fold.

    Returns
    -------
    dict with ``rows`` (per fold, feature and method: ``importance`` normalized to sum 1 where
    the sum is positive, ``raw``, ``rank``) and ``agreement`` (per fold and method pair:
    ``spearman``, ``kendall``).
    """
    fold_arr, n_splits = folds_array(folds)
    check_folds(data, fold_arr)
    rows, agree = [], []
    for k in range(n_splits):
        tr, te = split_indices(fold_arr, k)
        imp = _importances(
            data, tr, te, params, tau=tau, n_repeats=n_repeats, seed=seed + k, n_jobs=n_jobs
        )
        for method, vals in imp.items():
            s = vals.sum()
            norm = vals / s if s > 0 else vals
            for i, (fname, v, nv, r) in enumerate(
                zip(data.feature_names, vals, norm, _ranks(vals), strict=True)
            ):
                rows.append(
                    {
                        "dataset": data.name,
                        "fold": k,
                        "method": method,
                        "feature": fname,
                        "feature_index": i,
                        "raw": float(v),
                        "importance": float(nv),
                        "rank": float(r),
                    }
                )
        for a, b in itertools.combinations(IMPORTANCE_METHODS, 2):
            agree.append(
                {
                    "dataset": data.name,
                    "fold": k,
                    "pair": f"{a}~{b}",
                    **rank_agreement(imp[a], imp[b]),
                }
            )
        log.info(f"{data.name}: importance fold {k} done")
    return {"rows": rows, "agreement": agree}


def make_synthetic(
    kind: str, n_samples: int, n_features: int, n_informative: int, seed: int, noise: float = 0.0
) -> tuple[TabularData, np.ndarray]:
    """A synthetic data set with known relevant features.

    ``kind="classification"``: :func:`sklearn.datasets.make_classification` with
    ``shuffle=False`` and no redundant/repeated features, so features ``0..n_informative-1`` are
    the informative ones. ``kind="friedman1"``: :func:`sklearn.datasets.make_friedman1`
    (features 0-4 relevant; ``n_informative`` is ignored and set to 5).

    Returns
    -------
    (data, true_features): the data set and the indices of the relevant features.
    """
    from sklearn import datasets as skd

    if kind == "classification":
        X, y = skd.make_classification(
            n_samples=n_samples,
            n_features=n_features,
            n_informative=n_informative,
            n_redundant=0,
            n_repeated=0,
            n_classes=2,
            shuffle=False,
            random_state=seed,
            flip_y=noise,
        )
        true = np.arange(n_informative)
        return TabularData(X, y, "classification", 2, name="synthetic-classification"), true
    if kind == "friedman1":
        if n_features < 5:
            raise ValueError("friedman1 needs n_features >= 5")
        X, y = skd.make_friedman1(
            n_samples=n_samples, n_features=n_features, noise=noise, random_state=seed
        )
        return TabularData(X, y, "regression", 0, name="synthetic-friedman1"), np.arange(5)
    raise ValueError(f"synthetic kind must be 'classification' or 'friedman1', got {kind!r}")


def top_k_pessimistic(values: np.ndarray, true: Sequence[int], k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``values`` (shape (d,)), ties broken *against* the features
    in ``true``: a true feature ranks above an irrelevant one only with a strictly larger
    value, so tied (e.g. all-zero) importances never count as recovered features."""
    values = np.asarray(values, dtype=np.float64)
    is_true = np.isin(np.arange(values.shape[0]), np.asarray(true))
    order = np.lexsort((is_true, -values))  # primary: value descending; ties: irrelevant first
    return order[:k]


def synthetic_importance(
    kind: str = "classification",
    *,
    n_samples: int = 400,
    n_features: int = 10,
    n_informative: int = 3,
    noise: float = 0.0,
    params: Mapping[str, Any] | None = None,
    n_splits: int = 5,
    tau: float = 1.0,
    n_repeats: int = 5,
    seed: int = 0,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """How many of the truly relevant features each importance method ranks on top.

    Cross-validated (``n_splits`` folds, stratified for classification): per fold and method,
    ``recovered`` = |top-k features ∩ true features| with k = the number of true features.

    Returns
    -------
    dict with ``rows`` (per fold and method: ``recovered``, ``k``, ``top`` the top-k indices),
    ``importance`` (per fold, method, feature: normalized importance and ``relevant`` flag),
    ``true_features``.
    """
    data, true = make_synthetic(kind, n_samples, n_features, n_informative, seed, noise)
    params = dict(params or {"n_estimators": 50})
    fold_arr = np.empty(n_samples, dtype=np.int64)
    cv = inner_cv(data.task, n_splits, seed)
    for k, (_, te) in enumerate(cv.split(data.X, data.y)):
        fold_arr[te] = k
    rows, imp_rows = [], []
    kk = len(true)
    for k in range(n_splits):
        tr, te = split_indices(fold_arr, k)
        imp = _importances(
            data, tr, te, params, tau=tau, n_repeats=n_repeats, seed=seed + k, n_jobs=n_jobs
        )
        for method, vals in imp.items():
            top = top_k_pessimistic(vals, true, kk)
            rows.append(
                {
                    "dataset": data.name,
                    "fold": k,
                    "method": method,
                    "k": kk,
                    "recovered": int(np.isin(top, true).sum()),
                    "top": top.tolist(),
                }
            )
            s = vals.sum()
            for i, v in enumerate(vals / s if s > 0 else vals):
                imp_rows.append(
                    {
                        "dataset": data.name,
                        "fold": k,
                        "method": method,
                        "feature_index": i,
                        "importance": float(v),
                        "relevant": bool(i in set(true.tolist())),
                    }
                )
    log.info(
        f"{data.name}: recovered true features: "
        + ", ".join(
            f"{m} {np.mean([r['recovered'] for r in rows if r['method'] == m]):.2f}/{kk}"
            for m in IMPORTANCE_METHODS
        )
    )
    return {"rows": rows, "importance": imp_rows, "true_features": true.tolist(), "kind": kind}


def importance_job(job: DatasetJob) -> dict[str, Any]:
    """The computation of rule ``tabular_importance``: :func:`importance_cv` with the settings of
    the job's ``tabular`` slice (``forest``, ``seed`` and ``importance``: ``tau``,
    ``n_repeats``); returns its result.
    """
    tau, repeats = job.cfg["importance"]["tau"], job.cfg["importance"]["n_repeats"]
    log.info("%s: importances, tau %s, %s permutation repeats", job.data.name, tau, repeats)
    params = forest_params(job.cfg["forest"])
    seed = job.cfg["seed"]
    return importance_cv(
        job.data, job.folds, params, tau=tau, n_repeats=repeats, seed=seed, n_jobs=job.n_jobs
    )
