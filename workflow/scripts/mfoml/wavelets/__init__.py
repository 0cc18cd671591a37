"""Geometric wavelets of random forests, their smoothness estimators and the sparsity probe.

- :mod:`mfoml.wavelets.forest`: :class:`WaveletForestRegressor`, :class:`WaveletForestClassifier`
  (machinery in :mod:`mfoml.wavelets.base`, :mod:`mfoml.wavelets.trees`,
  :mod:`mfoml.wavelets.scaling`);
- :mod:`mfoml.wavelets.smoothness`: :func:`alpha_star`, :func:`alpha_loglog`, :class:`AlphaResult`;
- :mod:`mfoml.wavelets.probe`: :func:`sparsity_probe`;
- :mod:`mfoml.wavelets.boosting`: :class:`WaveletBoostingRegressor`,
  :class:`WaveletBoostingClassifier` (gradient boosting; core in
  :mod:`mfoml.wavelets.boosted_trees`), and :mod:`mfoml.wavelets.xgboost_trees`:
  :func:`from_xgboost` (XGBoost models).

See ``docs/methods.md``. Names are loaded on first use (``import mfoml.wavelets`` does not import
scikit-learn).
"""

from mfoml._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "boosting": ("WaveletBoostingClassifier", "WaveletBoostingRegressor"),
        "forest": ("WaveletForestClassifier", "WaveletForestRegressor"),
        "probe": ("sparsity_probe",),
        "smoothness": ("AlphaResult", "alpha_loglog", "alpha_star"),
        "xgboost_trees": ("from_xgboost",),
    },
)
