"""Stratified k-fold assignment: balance, partition, reproducibility, storage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mfoml.data.folds import load_folds, make_folds, save_folds, split_indices


@pytest.fixture
def labels(rng):
    # Unbalanced classes with sizes not divisible by 5.
    return rng.permutation(np.repeat(np.arange(4), [53, 31, 17, 9]))


def test_folds_partition_the_set(labels):
    folds = make_folds(labels, n_splits=5, seed=0)
    assert folds.shape == labels.shape and folds.dtype == np.int64
    assert set(folds.tolist()) == set(range(5))
    seen = []
    for k in range(5):
        train, held = split_indices(folds, k)
        assert np.intersect1d(train, held).size == 0
        assert np.array_equal(np.sort(np.concatenate([train, held])), np.arange(labels.size))
        assert np.all(folds[held] == k) and np.all(folds[train] != k)
        seen.append(held)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(labels.size))
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1


def test_class_proportions_within_one_sample(labels):
    folds = make_folds(labels, n_splits=5, seed=3)
    n = labels.size
    for k in range(5):
        held = labels[folds == k]
        for c in range(4):
            global_share = np.sum(labels == c) / n
            # the count expected in this fold from the global proportion, within one sample
            assert abs(np.sum(held == c) - global_share * held.size) <= 1.0, (k, c)


def test_reproducible_and_seed_dependent(labels):
    a = make_folds(labels, n_splits=5, seed=42)
    b = make_folds(labels, n_splits=5, seed=42)
    c = make_folds(labels, n_splits=5, seed=43)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unstratified_for_regression(rng):
    y = rng.normal(size=103)
    folds = make_folds(y, n_splits=4, seed=1, stratified=False)
    assert np.bincount(folds).tolist() in ([26, 26, 26, 25],)
    np.testing.assert_array_equal(folds, make_folds(y, n_splits=4, seed=1, stratified=False))
    assert not np.array_equal(folds, make_folds(y, n_splits=4, seed=2, stratified=False))
    assert not np.array_equal(folds, np.sort(folds))  # shuffled, not contiguous blocks


def test_too_small_class_is_an_error():
    y = np.array([0] * 10 + [1] * 10 + [2] * 3)
    with pytest.raises(ValueError, match="class 2 has 3"):
        make_folds(y, n_splits=5)
    with pytest.raises(ValueError, match="n_splits must be an integer >= 2"):
        make_folds(y, n_splits=1)
    with pytest.raises(ValueError, match="cannot be split into 5 folds"):
        make_folds(np.arange(3.0), n_splits=5, stratified=False)


def test_save_load_roundtrip(tmp_path, labels):
    folds = make_folds(labels, n_splits=5, seed=9)
    path = tmp_path / "folds" / "digits.json"
    save_folds(path, folds, n_splits=5, seed=9, stratified=True)
    raw = json.loads(path.read_text())
    assert raw == {"n_splits": 5, "seed": 9, "stratified": True, "fold": folds.tolist()}
    loaded = load_folds(path)
    np.testing.assert_array_equal(loaded["fold"], folds)
    assert (loaded["n_splits"], loaded["seed"], loaded["stratified"]) == (5, 9, True)
    tr_a, he_a = split_indices(loaded, 2)
    tr_b, he_b = split_indices(folds, 2)
    np.testing.assert_array_equal(tr_a, tr_b)
    np.testing.assert_array_equal(he_a, he_b)
    with pytest.raises(ValueError, match="fold 5 out of range"):
        split_indices(loaded, 5)


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"n_splits": 3, "seed": 0, "fold": [0, 1, 2]}))
    with pytest.raises(ValueError, match=r"bad.json: missing keys \['stratified'\]"):
        load_folds(bad)
    bad.write_text(json.dumps({"n_splits": 3, "seed": 0, "stratified": True, "fold": [0, 1, 3]}))
    with pytest.raises(ValueError, match=r"fold values must lie in \[0, 3\)"):
        load_folds(bad)
    bad.write_text(json.dumps({"n_splits": 3, "seed": 0, "stratified": True, "fold": [0, 1, 1]}))
    with pytest.raises(ValueError, match=r"folds \[2\] are empty"):
        load_folds(bad)
