"""Guards against faults that once slipped through the suite (issue 21): each test here was seen
to fail with its fault injected by hand and to pass with the code restored.

- the random-label baseline must permute the labels (probe rule, ``alpha_random``);
- OpenML-style missing values must be imputed from the training rows of each fold, in the
  wavelet-forest CV and in the label-noise CV (a held-out row must not move the fit);
- the ``cross_entropy`` of ``checkpoints.csv`` is the dump's eval-mode loss of the same pass;
- the sampled permutation p-value carries its +1 (Phipson & Smyth), and the bootstrap
  resamples within strata (both in tests/test_inference.py, beside the simulations).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from mfoml.analysis.aggregate import RUN_COLUMNS, checkpoint_metrics
from mfoml.data.folds import make_folds
from mfoml.nets.activations import dump_activations
from mfoml.nets.dumps import open_activations
from mfoml.nets.models import build_model
from mfoml.tabular.data import TabularData
from mfoml.tabular.noise import noise_study
from mfoml.tabular.wavelet import wavelet_cv
from mfoml.wavelets.probe import random_labels_for_baseline


def test_random_label_baseline_permutes_the_labels():
    y = np.repeat(np.arange(10), 30)
    r = random_labels_for_baseline(y, seed=1079, epoch=4, split_no=0)
    # the same class counts (a permutation), not the same order
    np.testing.assert_array_equal(np.bincount(r, minlength=10), np.bincount(y, minlength=10))
    same = float((r == y).mean())
    assert same < 0.25  # about 1/10 expected for a random permutation of 10 balanced classes
    # reproducible per (seed, epoch, split), different across checkpoints and splits
    np.testing.assert_array_equal(r, random_labels_for_baseline(y, 1079, 4, 0))
    assert (r != random_labels_for_baseline(y, 1079, 5, 0)).any()
    assert (r != random_labels_for_baseline(y, 1079, 4, 1)).any()


def _missing_data(seed: int = 3, n: int = 150) -> TabularData:
    """Two informative numeric features, 20 % of the values missing."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = ((X[:, 0] + 0.5 * X[:, 1]) > 0).astype(np.int64)
    X[rng.random(X.shape) < 0.2] = np.nan
    return TabularData(X, y, "classification", 2, name="missing")


def _with_extreme_test_rows(data: TabularData, test: np.ndarray) -> TabularData:
    """The same data with every observed value of the ``test`` rows replaced by 1e6: only an
    imputer that sees held-out rows can notice."""
    X = data.X.copy()
    X[test] = np.where(np.isnan(X[test]), np.nan, 1e6)
    return TabularData(X, data.y, data.task, data.n_classes, name=data.name)


def test_wavelet_cv_imputes_from_the_fit_rows_only():
    data = _missing_data()
    folds = make_folds(data.y, n_splits=3, seed=0, stratified=True)
    test0 = np.flatnonzero(np.asarray(folds) == 0)
    params = {"n_estimators": 2, "max_depth": 4}
    a = wavelet_cv(data, folds, params, curve_points=6, trees_grid=(1,), seed=0)
    b = wavelet_cv(
        _with_extreme_test_rows(data, test0), folds, params, curve_points=6, trees_grid=(1,)
    )
    ra, rb = pd.DataFrame(a["rows"]), pd.DataFrame(b["rows"])
    # fold 0 is fitted and its M chosen on rows outside fold 0: identical forests
    for col in ("n_wavelets", "n_terms", "threshold"):
        assert ra.loc[0, col] == rb.loc[0, col], col
    ca, cb = pd.DataFrame(a["curve"]), pd.DataFrame(b["curve"])
    np.testing.assert_array_equal(
        ca.loc[ca["fold"] == 0, "val_error"], cb.loc[cb["fold"] == 0, "val_error"]
    )


def test_noise_cv_imputes_from_the_training_fold_only():
    data = _missing_data(seed=5)
    folds = make_folds(data.y, n_splits=3, seed=0, stratified=True)
    test0 = np.flatnonzero(np.asarray(folds) == 0)
    params = {"n_estimators": 2, "max_depth": 4}
    alpha_params = {"max_depth": 6}
    a = pd.DataFrame(noise_study(data, folds, [0.0], params, alpha_params=alpha_params)["rows"])
    moved = _with_extreme_test_rows(data, test0)
    b = pd.DataFrame(noise_study(moved, folds, [0.0], params, alpha_params=alpha_params)["rows"])
    # fold 0's forest and probe see only its training fold: the same alpha to the last bit
    for col in ("alpha", "forest_alpha"):
        assert a.loc[a["fold"] == 0, col].iloc[0] == b.loc[b["fold"] == 0, col].iloc[0], col


def test_checkpoint_table_cross_entropy_is_the_dumps_eval_loss(tmp_path):
    """The row written to checkpoints.csv carries the mean cross-entropy of the eval-mode logits
    against the dumped labels, computed here from the model independently."""
    rng = np.random.default_rng(0)
    model = build_model("mlp", (6,), 4, depth=2, width=8, seed=2)
    x = rng.normal(size=(23, 6)).astype(np.float32)
    y = rng.integers(0, 4, size=23)
    dump_activations(model, x, y, tmp_path / "d", batch_size=5, split="test", epoch=3)
    dump = open_activations(tmp_path / "d")
    meta = {c: f"m-{c}" for c in RUN_COLUMNS}
    row, conf = checkpoint_metrics(
        meta, 3, "test", dump.labels, dump.predictions, 4, dump.manifest.get("cross_entropy")
    )
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(x)).double()
    logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    expected = float(-logp[torch.arange(23), torch.from_numpy(y)].mean())
    assert row["cross_entropy"] == pytest.approx(expected, rel=1e-5)
    assert row["accuracy"] == pytest.approx(float((logits.argmax(1).numpy() == y).mean()))
    assert int(conf["count"].sum()) == 23
    # without a recorded loss the table says so (NaN), it does not invent one
    row_none, _ = checkpoint_metrics(meta, 3, "test", dump.labels, dump.predictions, 4, None)
    assert np.isnan(row_none["cross_entropy"])
