"""The intrinsic-dimension columns of the layers table (the aggregate rule imports only this
module of the package, so a change to the CKA code does not rerun the aggregation)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from mfoml.layer_measures import INTRINSIC_DIM

__all__ = ["INTRINSIC_DIM_COLUMNS", "merge_intrinsic_dim"]


#: Columns of the per-run intrinsic-dimension table (rule ``intrinsic_dim``) merged into the
#: layers table: those of its entry in the registry of per-layer measures
#: (:data:`mfoml.layer_measures.INTRINSIC_DIM`).
INTRINSIC_DIM_COLUMNS = list(INTRINSIC_DIM.columns)


def merge_intrinsic_dim(layers: pd.DataFrame, per_run: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """``layers`` (one row per run, epoch and layer, with a ``run`` column) with the
    :data:`INTRINSIC_DIM_COLUMNS` of ``per_run`` (run id -> ``intrinsic_dim.csv``) added; rows
    without a value get NaN. ``per_run`` empty (the measure is off): ``layers`` unchanged."""
    if not per_run:
        return layers
    parts = []
    for rid, t in per_run.items():
        part = t[["epoch", "layer", *INTRINSIC_DIM_COLUMNS]].copy()
        part.insert(0, "run", rid)
        parts.append(part)
    extra = pd.concat(parts, ignore_index=True)
    return layers.merge(extra, on=["run", "epoch", "layer"], how="left", validate="many_to_one")
