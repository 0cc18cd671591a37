"""Analysis of results: metrics, fold statistics and the pipeline's aggregated tables.

- :mod:`mfoml.analysis.metrics`: classification and regression metrics (one accuracy and R^2);
- :mod:`mfoml.analysis.statistics`: fold statistics, slope;
- :mod:`mfoml.analysis.aggregate`: tidy tables over runs, summaries over folds, correlation points;
  :mod:`mfoml.analysis.aggregate_tables`: the ``aggregate`` rule's inputs read and checked, and
  every table it writes;
- :mod:`mfoml.analysis.permutation`: Spearman rho (within strata), restricted permutation
  tests, stratified bootstrap intervals, the smallest attainable p, Holm;
- :mod:`mfoml.analysis.runstats`: variant-level inference (correlation across variants per
  checkpoint, the variant being a run without fold and seed; per-run dynamics features);
- :mod:`mfoml.analysis.studies`: the course's study tables (training phases, label noise,
  most-confused class pairs);
- :mod:`mfoml.analysis.ssl_tables`: the self-supervised runs' tables (per layer and label set).

Names are loaded on first use (``import mfoml.analysis`` does not import pandas).
"""

from mfoml._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "aggregate": ("correlation_points", "layers_table", "summarize"),
        "metrics": ("classification_metrics", "primary_score", "regression_metrics"),
        "statistics": ("fold_statistics",),
        "runstats": ("checkpoint_correlations", "dynamics_correlations", "dynamics_features"),
        "studies": ("confused_pairs", "noise_table", "phases_pivot", "training_phases"),
        "ssl_tables": ("ssl_epochs_table", "ssl_layers_summary", "ssl_layers_table"),
    },
)
