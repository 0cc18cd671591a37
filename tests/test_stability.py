"""Edge-of-stability summaries (issue 22): the sharpness after its first crossing of 2/lr beside
the peak (mfoml.analysis.stability), on hand-computed series."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from mfoml.analysis.stability import STABILITY_COLUMNS, stability_summary, stability_table


def test_summary_after_the_first_crossing():
    # threshold 10; crosses at epoch 60 (12 > 10); from there on 12, 9.5, 10.5, 8:
    # median (9.5 + 10.5) / 2 = 10, two of four above; the peak 12 is the transient
    epoch = [100, 20, 40, 60, 80, 120, 140]  # any order; 140 not measured
    sharp = [10.5, 5.0, 9.0, 12.0, 9.5, 8.0, np.nan]
    out = stability_summary(epoch, sharp, [10.0] * 7)
    assert set(out) == set(STABILITY_COLUMNS)
    assert out["sharpness_peak"] == 12.0 and out["sharpness_peak_epoch"] == 60.0
    assert out["first_crossing_epoch"] == 60.0 and out["stability_threshold"] == 10.0
    assert out["sharpness_median_after_crossing"] == 10.0
    assert out["fraction_above_threshold"] == 0.5
    assert out["n_sharpness_steps"] == 6.0


def test_never_crossing_and_no_measurement():
    out = stability_summary([1, 2], [3.0, 4.0], [10.0, 10.0])
    assert out["sharpness_peak"] == 4.0 and out["stability_threshold"] == 10.0
    assert math.isnan(out["first_crossing_epoch"])
    assert math.isnan(out["sharpness_median_after_crossing"])
    assert math.isnan(out["fraction_above_threshold"])
    empty = stability_summary([1], [np.nan], [10.0])
    assert empty["n_sharpness_steps"] == 0.0 and math.isnan(empty["sharpness_peak"])
    with pytest.raises(ValueError, match="differ in shape"):
        stability_summary([1, 2], [1.0], [1.0])


def test_table_per_run():
    epochs = pd.DataFrame(
        {
            "run": ["a"] * 3 + ["b"] * 3 + ["c"] * 2,
            "epoch": [1, 2, 3] * 2 + [1, 2],
            "sharpness": [30.0, 50.0, 38.0, 1.0, 2.0, 3.0, np.nan, np.nan],
            "stability_threshold": [40.0] * 3 + [20.0] * 3 + [np.nan] * 2,
        }
    )
    table = stability_table(epochs)
    assert list(table.columns) == ["run", *STABILITY_COLUMNS]
    assert list(table["run"]) == ["a", "b"]  # c tracked no sharpness
    a = table.iloc[0]
    assert a["first_crossing_epoch"] == 2 and a["sharpness_median_after_crossing"] == 44.0
    assert a["fraction_above_threshold"] == 0.5
    assert stability_table(epochs.drop(columns="sharpness")).empty
