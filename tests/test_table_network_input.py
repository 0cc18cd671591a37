"""A table's categorical columns one-hot encoded and its missing values imputed for a network,
fitted on the run's training rows only (mfoml.tabular.netinput; issue 20, "table ... feeds the
mlp architecture"). The whole path (data -> train -> activations) runs in
tests/test_own_model_data_workflow.py."""

from __future__ import annotations

import numpy as np
import pytest
from mfoml.tabular.netinput import TableEncoder, fold_encoder, needs_encoding

NAN = np.nan
# column 0 numeric, column 1 categorical with codes of 3 categories (0, 1, 2)
X = np.array(
    [
        [1.0, 0.0],
        [3.0, 2.0],
        [NAN, 2.0],
        [10.0, NAN],
        [100.0, 1.0],  # rows 4, 5: not training rows
        [NAN, NAN],
    ]
)
META = {
    "kind": "tabular",
    "options": {
        "nominal_features": [1],
        "feature_types": [
            {"name": "age", "type": "numeric"},
            {"name": "color", "type": "nominal", "categories": ["blue", "green", "red"]},
        ],
    },
}


def test_fitted_on_the_training_rows_only():
    enc = fold_encoder(META, X, np.array([0, 1, 2, 3]))
    out = enc(X)
    # median of 1, 3, 10 is 3 (row 4's 100 is not a training row); the most frequent training
    # colour is code 2; one-hot over all three categories, including green, absent in training
    expected = np.array(
        [
            [1, 1, 0, 0],
            [3, 0, 0, 1],
            [3, 0, 0, 1],
            [10, 0, 0, 1],
            [100, 0, 1, 0],
            [3, 0, 0, 1],
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32 and enc.n_features_out_ == 4


def test_other_training_rows_give_other_fill_values():
    out = fold_encoder(META, X, np.array([3, 4]))(X[[2, 5]])
    # median of 10 and 100 is 55; training colours: code 1 only (row 3's is missing), so row
    # 5's missing colour becomes 1; row 2 keeps its own colour 2
    np.testing.assert_array_equal(out, [[55, 0, 0, 1], [55, 0, 1, 0]])


def test_unknown_codes_are_all_zero_and_counts_can_be_learnt():
    enc = TableEncoder([1]).fit(X[:2])  # categories learnt from the rows: codes 0 and 2
    np.testing.assert_array_equal(enc(np.array([[5.0, 1.0], [5.0, 2.0]])), [[5, 0, 0], [5, 0, 1]])
    with pytest.raises(ValueError, match=r"expected \(n, 2\) inputs"):
        enc(np.zeros((1, 3)))


def test_plain_numbers_and_other_kinds_pass_unchanged():
    numeric = {"kind": "tabular", "options": {"nominal_features": []}}
    assert fold_encoder(numeric, np.ones((4, 2)), np.arange(4)) is None
    assert needs_encoding(numeric, np.array([[1.0, NAN]]))
    assert not needs_encoding({"kind": "image"}, np.full((2, 1, 2, 2), NAN))
    assert not needs_encoding({"kind": "tabular"}, np.zeros((2, 3), dtype=np.int64))
