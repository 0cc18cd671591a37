"""Tables of the self-supervised runs: per layer and label set, their fold summaries, per epoch.

- :func:`ssl_layers_table`: every run's ``ssl_eval.csv`` (one row per epoch, layer and label
  set: NCC accuracy train/test, NC1, linear-probe and k-NN accuracy, alpha) with the run
  columns :data:`mfoml.analysis.aggregate.RUN_COLUMNS` in front;
- :func:`ssl_layers_summary`: mean, standard deviation and count over folds per variant, epoch,
  layer and label set (:func:`mfoml.analysis.aggregate.summarize`);
- :func:`ssl_epochs_table`: every run's ``metrics.csv`` (the SSL loss and its terms per epoch).

The NCC mismatch compares the NCC decision with a classifier's predictions; a self-supervised
encoder has none, so the tables carry ``ncc_mismatch_status`` (the reason) and no mismatch
values, never zeros.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from mfoml.analysis.aggregate import RUN_COLUMNS, summarize, with_run_columns

__all__ = [
    "SSL_LAYER_KEYS",
    "SSL_VALUES",
    "ssl_epochs_table",
    "ssl_layers_summary",
    "ssl_layers_table",
]

#: Keys of a row of the per-layer table besides the run columns.
SSL_LAYER_KEYS = ["epoch", "layer", "layer_index", "label_set"]
#: The per-layer measures summarised over folds.
SSL_VALUES = [
    "ncc_accuracy_train",
    "ncc_accuracy_test",
    "nc1",
    "linear_probe_train",
    "linear_probe_test",
    "knn_test",
    "alpha",
]


def ssl_layers_table(
    runs: Sequence[Mapping[str, Any]], evals: Mapping[str, pd.DataFrame]
) -> pd.DataFrame:
    """Concatenate the runs' ``ssl_eval`` tables with the run columns in front.

    Parameters
    ----------
    runs : run descriptions (dicts with :data:`RUN_COLUMNS`).
    evals : ``{run id: ssl_eval table}``.
    """
    parts = [with_run_columns(evals[meta["run"]], meta) for meta in runs if meta["run"] in evals]
    if not parts:
        return pd.DataFrame(columns=[*RUN_COLUMNS, *SSL_LAYER_KEYS, *SSL_VALUES])
    return pd.concat(parts, ignore_index=True)


def ssl_layers_summary(layers: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count over folds of :data:`SSL_VALUES` per variant, epoch, layer and label
    set; ``n_classes`` and ``ncc_mismatch_status`` are carried along (one value per group)."""
    keys = [*SSL_LAYER_KEYS, "n_classes"]
    out = summarize(layers, keys, [v for v in SSL_VALUES if v in layers.columns])
    if "ncc_mismatch_status" in layers.columns and not out.empty:
        status = layers["ncc_mismatch_status"].dropna()
        out["ncc_mismatch_status"] = status.iloc[0] if len(status) else None
    return out


def ssl_epochs_table(
    runs: Sequence[Mapping[str, Any]], metrics: Mapping[str, pd.DataFrame]
) -> pd.DataFrame:
    """Concatenate the runs' ``metrics.csv`` (SSL loss and terms per epoch) with run columns."""
    parts = [
        with_run_columns(metrics[meta["run"]], meta) for meta in runs if meta["run"] in metrics
    ]
    if not parts:
        return pd.DataFrame(columns=[*RUN_COLUMNS, "epoch", "train_loss"])
    return pd.concat(parts, ignore_index=True)
