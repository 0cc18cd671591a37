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
    assert raw == {
        "n_splits": 5,
        "seed": 9,
        "stratified": True,
        "grouped": False,
        "fold": folds.tolist(),
    }
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


# ------------------------------------------------------------------------------------------
# Groups: the samples of one group share a fold
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stratified", [True, False])
def test_grouped_folds_keep_every_group_in_one_fold(rng, stratified):
    # 120 groups of 1 to 4 samples; labels constant within a group (as a sentence pair's
    # partner has the other label, use per-sample labels for the stratified case)
    sizes = rng.integers(1, 5, size=120)
    groups = rng.permutation(np.repeat(np.arange(120) * 7 + 3, sizes))  # ids need not be 0..G-1
    y = rng.integers(0, 3, size=groups.size) if stratified else rng.normal(size=groups.size)
    folds = make_folds(y, n_splits=5, seed=1, stratified=stratified, groups=groups)
    for g in np.unique(groups):
        assert len(set(folds[groups == g].tolist())) == 1, g
    assert set(folds.tolist()) == set(range(5))
    again = make_folds(y, n_splits=5, seed=1, stratified=stratified, groups=groups)
    assert np.array_equal(folds, again)
    other = make_folds(y, n_splits=5, seed=2, stratified=stratified, groups=groups)
    assert not np.array_equal(folds, other)
    if stratified:  # spread over the folds roughly as the classes are
        for k in range(5):
            share = np.bincount(y[folds == k], minlength=3) / np.sum(folds == k)
            assert np.all(np.abs(share - np.bincount(y) / y.size) < 0.15)


def test_ungrouped_folds_split_pairs_which_grouped_folds_keep():
    # sentence pairs: labels 0/1 within each pair (as the word-order task)
    groups = np.repeat(np.arange(200), 2)
    y = np.tile([0, 1], 200)
    plain = make_folds(y, n_splits=5, seed=0)
    together = np.mean(plain[0::2] == plain[1::2])
    assert together < 0.5  # the leak the groups remove
    grouped = make_folds(y, n_splits=5, seed=0, groups=groups)
    assert np.array_equal(grouped[0::2], grouped[1::2])


def test_grouped_folds_errors():
    y = np.tile([0, 1], 6)
    with pytest.raises(ValueError, match="3 groups cannot be split into 5 folds"):
        make_folds(y, n_splits=5, groups=np.repeat([0, 1, 2], 4))
    with pytest.raises(ValueError, match="groups has shape"):
        make_folds(y, n_splits=2, groups=np.arange(5))


def test_grouped_flag_round_trips(tmp_path):
    path = tmp_path / "f.json"
    save_folds(path, np.array([0, 1, 0, 1]), n_splits=2, seed=0, stratified=True, grouped=True)
    assert load_folds(path)["grouped"] is True
    data = json.loads(path.read_text())
    del data["grouped"]  # a file written before the flag existed
    path.write_text(json.dumps(data))
    assert load_folds(path)["grouped"] is False
