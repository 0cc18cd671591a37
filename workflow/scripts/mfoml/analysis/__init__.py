"""Analysis of results: metrics, fold statistics and the pipeline's aggregated tables.

- :mod:`mfoml.analysis.metrics`: classification and regression metrics (one accuracy and R^2);
- :mod:`mfoml.analysis.statistics`: fold statistics, slope, Spearman with a status;
- :mod:`mfoml.analysis.aggregate`: tidy tables over runs, summaries over folds, correlations;
- :mod:`mfoml.analysis.ssl_tables`: the self-supervised runs' tables (per layer and label set).

Names are loaded on first use (``import mfoml.analysis`` does not import pandas).
"""

from mfoml._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "aggregate": ("correlation_table", "layers_table", "summarize"),
        "metrics": ("classification_metrics", "primary_score", "regression_metrics"),
        "statistics": ("fold_statistics",),
        "ssl_tables": ("ssl_epochs_table", "ssl_layers_summary", "ssl_layers_table"),
    },
)
