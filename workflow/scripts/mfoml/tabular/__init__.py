"""The tabular track: cross-validated baselines (XGBoost included), nested random-forest and
XGBoost searches, the wavelet forest, the wavelets of boosted trees beside it, feature
importances and the label-noise study (issues 6 and 15; METHODS.md sections 3, 4, 10, 13).

Every driver takes the full training set ``(X, y)`` and the stored fold assignment (``folds``,
an int array ``(N,)`` as written by :mod:`mfoml.data.folds`) and returns plain records (lists of
dicts, one per fold and item) that :func:`aggregate` turns into mean/std tables. Nothing here
reads config files or imports Snakemake: each part's ``*_job`` function maps the parsed
``tabular`` config slice onto its driver, and :func:`mfoml.tabular.job.run_dataset_job` reads a
rule script's ``snakemake`` object by its attributes, so the rule scripts
``workflow/scripts/tabular_*.py`` are two calls.

Scores
------
The *primary score* (higher is better) used for model selection is accuracy for classification
and R^2 for regression; every record also carries the full metric dict of
:mod:`mfoml.analysis.metrics` (macro precision/recall, MAE and its std, RMSE, ...). The wavelet-forest
*error* curves are misclassification rate (classification) and mean squared error (regression),
as :meth:`mfoml.wavelets.WaveletForestClassifier.mterm_curve` returns them.

Leakage
-------
In :func:`nested_rf_search` the inner search only ever sees the outer training indices of the
fold: the inner K-fold split is made on ``train_idx`` and every inner fit/evaluation indexes
``X[train_idx[...]]``. In :func:`wavelet_cv` the validation split that chooses M is carved out of
the outer training fold, and :func:`boosting_cv` uses the same split. Label / target noise is applied to the training part only; test labels
stay clean.
"""

from mfoml._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "baselines": ("run_baselines",),
        "data": ("TabularData", "forest_params", "load_tabular", "table_meta"),
        "importance": (
            "IMPORTANCE_METHODS",
            "importance_cv",
            "make_synthetic",
            "rank_agreement",
            "synthetic_importance",
            "top_k_pessimistic",
        ),
        "models": ("BASELINES", "evaluate", "make_baseline"),
        "noise": ("noise_study",),
        "boosting": ("BOOSTED_MODELS", "boosting_cv"),
        "search": (
            "SEARCH_PARAMS",
            "XGB_SEARCH_PARAMS",
            "hparam_effects",
            "nested_rf_search",
            "nested_xgb_search",
        ),
        "tables": ("aggregate", "mean_std"),
        "wavelet": ("n_terms_grid", "wavelet_cv"),
    },
)
