"""Tests of mfoml.collapse: NCC simplification and neural-collapse metrics.

Reference values are computed here independently: per-sample Python loops for the NCC decision,
explicit D x D covariance matrices and ``numpy.linalg.pinv`` for NC1, loops over class pairs for
NC2, and a real MNIST-1D training run (mfoml.nets.training + mfoml.nets.activations) for the end-to-end
checks.
"""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from logcapture import captured
from mfoml.collapse.accumulators import ClassMeans
from mfoml.collapse.measures import (
    WithinClassProjection,
    collapse_metrics,
    nc2_metrics,
    nc3_metric,
    ncc_accuracy,
    ncc_mismatch,
    ncc_predict,
)
from mfoml.collapse.streaming import NonFiniteFeaturesError
from mfoml.collapse.table import layer_table

# --------------------------------------------------------------------------------------------
# independent references
# --------------------------------------------------------------------------------------------


def loop_means(x: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.full((n_classes, x.shape[1]), np.nan)
    for c in range(n_classes):
        rows = [x[i].astype(np.float64) for i in range(len(y)) if y[i] == c]
        if rows:
            out[c] = np.sum(rows, axis=0) / len(rows)
    return out


def loop_ncc(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """The reference's method: one sample at a time, explicit distances, float64."""
    out = np.empty(len(x), dtype=np.int64)
    for i in range(len(x)):
        h = x[i].astype(np.float64)
        best, best_d = -1, np.inf
        for c in range(means.shape[0]):
            if np.isnan(means[c]).all():
                continue
            d = float(np.sum((h - means[c]) ** 2))
            if d < best_d:
                best, best_d = c, d
        out[i] = best
    return out


def pinv_nc1(x: np.ndarray, y: np.ndarray, n_classes: int) -> float:
    """tr(Sigma_W pinv(Sigma_B)) / C' with D x D matrices (present classes only)."""
    x = x.astype(np.float64)
    present = [c for c in range(n_classes) if np.any(y == c)]
    mu = np.stack([x[y == c].mean(axis=0) for c in present])
    mu_g = x.mean(axis=0)
    m = (mu - mu_g).T  # D x C'
    sigma_b = m @ m.T / len(present)
    mu_of = {c: k for k, c in enumerate(present)}
    r = x - mu[[mu_of[c] for c in y]]
    sigma_w = r.T @ r / len(x)
    return float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, rtol=1e-9, hermitian=True))) / len(
        present
    )


def blobs(rng, n, d, c, spread=1.0, weights=None):
    centers = 3.0 * rng.standard_normal((c, d))
    y = rng.choice(c, size=n, p=weights)
    x = centers[y] + spread * rng.standard_normal((n, d))
    return x, y.astype(np.int64)


# --------------------------------------------------------------------------------------------
# ClassMeans
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_class_means_match_loop_for_numpy_dtypes(rng, dtype):
    x, y = blobs(rng, 150, 6, 4)
    x = x.astype(dtype)
    cm = ClassMeans(4).update(x, y)
    np.testing.assert_allclose(cm.means_, loop_means(x, y, 4), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(cm.counts_, np.bincount(y, minlength=4))
    np.testing.assert_allclose(cm.global_mean_, x.astype(np.float64).mean(axis=0), rtol=1e-12)
    assert cm.n_samples_ == 150


def test_class_means_torch_stays_on_device_and_matches(rng):
    x, y = blobs(rng, 90, 5, 3)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    cm = ClassMeans(3)
    for a in range(0, 90, 16):
        cm.update(xt[a : a + 16], yt[a : a + 16])
    ref = loop_means(x.astype(np.float32), y, 3)
    np.testing.assert_allclose(cm.means_, ref, rtol=1e-12)
    t = cm.means_tensor()
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64 and t.device == xt.device
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-12)


def test_class_means_from_tensors_with_grad_keep_no_graph():
    x = torch.randn(10, 3, requires_grad=True)
    cm = ClassMeans(2).update(x, torch.tensor([0, 1] * 5))
    assert not cm.means_tensor().requires_grad
    np.testing.assert_allclose(cm.means_[1], x.detach().double().numpy()[1::2].mean(axis=0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path_matches_cpu_loop(rng):
    x, y = blobs(rng, 300, 16, 5, spread=3.0)
    dev = torch.device("cuda")
    xt, yt = torch.tensor(x, device=dev), torch.tensor(y, device=dev)
    cm = ClassMeans(5).update(xt, yt)
    np.testing.assert_allclose(cm.means_, loop_means(x, y, 5), rtol=1e-10)
    means = cm.means_tensor(dev)
    got = ncc_predict(xt, means, chunk_size=64)
    assert got.device.type == "cuda"
    np.testing.assert_array_equal(got.cpu().numpy(), loop_ncc(x, loop_means(x, y, 5)))
    res = collapse_metrics(xt, yt, 5, predictions=yt, chunk_size=50)
    assert res["nc1"] == pytest.approx(pinv_nc1(x, y, 5), rel=1e-8)


def test_class_means_absent_class_is_flagged_nan(rng):
    x, y = blobs(rng, 60, 4, 3)
    y = np.where(y == 1, 0, y)  # class 1 absent, class 4 never occurs
    cm = ClassMeans(5).update(x, y)
    assert cm.present_.tolist() == [True, False, True, False, False]
    assert cm.counts_[1] == 0 and cm.n_classes_present_ == 2
    assert np.isnan(cm.means_[[1, 3, 4]]).all()
    assert np.isfinite(cm.means_[[0, 2]]).all()


def test_class_means_errors(rng):
    cm = ClassMeans(3)
    with pytest.raises(RuntimeError, match="no data"):
        _ = cm.means_
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        cm.update(np.zeros((2, 4)), np.array([0, 3]))
    with pytest.raises(ValueError, match="2 rows but labels have 3"):
        cm.update(np.zeros((2, 4)), np.array([0, 1, 2]))
    cm.update(np.zeros((2, 4)), np.array([0, 1]))
    with pytest.raises(ValueError, match="dimension 5, expected 4"):
        cm.update(np.zeros((2, 5)), np.array([0, 1]))
    with pytest.raises(NonFiniteFeaturesError):
        cm.update(np.array([[0.0, np.nan, 0.0, 0.0]]), np.array([2]))
    with pytest.raises(TypeError, match="integers"):
        cm.update(np.zeros((1, 4)), np.array([0.5]))


# --------------------------------------------------------------------------------------------
# NCC
# --------------------------------------------------------------------------------------------


def test_ncc_equals_per_sample_loop_numpy_memmap_and_torch(rng, tmp_path):
    x, y = blobs(rng, 400, 12, 6, spread=3.0)  # overlapping classes: many NCC "errors"
    path = tmp_path / "layer.npy"
    np.save(path, x.astype(np.float16))
    mm = np.load(path, mmap_mode="r")
    means = ClassMeans(6).update_from(mm, y, chunk_size=37).means_
    ref = loop_ncc(np.asarray(mm), means)
    preds = rng.integers(0, 6, size=400)
    assert 0.05 < np.mean(ref != y) < 0.95  # a non-trivial case
    for feats in (mm, np.asarray(mm, dtype=np.float32), torch.tensor(np.asarray(mm))):
        for cs in (1, 50, 4096):
            got = ncc_predict(feats, means, chunk_size=cs)
            got = got.numpy() if isinstance(got, torch.Tensor) else got
            np.testing.assert_array_equal(got, ref)
            assert ncc_mismatch(feats, preds, means, cs) == np.mean(preds != ref)
            assert ncc_accuracy(feats, y, means, cs) == np.mean(y == ref)


def test_ncc_near_ties_are_decided_in_float64(rng):
    """Samples equidistant from two class means up to a relative 1e-9."""
    d, n = 64, 200
    mu = rng.standard_normal((3, d)) * 10.0
    mu[2] += 100.0  # a far class
    mid = 0.5 * (mu[0] + mu[1])
    direction = mu[1] - mu[0]
    eps = rng.choice([-1.0, 1.0], size=n) * 1e-9
    noise = rng.standard_normal((n, d))
    noise -= np.outer(noise @ direction / (direction @ direction), direction)  # keep equidistant
    x = mid + 30.0 * noise + eps[:, None] * direction  # eps > 0: closer to class 1
    ref = loop_ncc(x, mu)
    np.testing.assert_array_equal(ref, np.where(eps > 0, 1, 0))
    np.testing.assert_array_equal(ncc_predict(x, mu, chunk_size=17), ref)
    np.testing.assert_array_equal(ncc_predict(torch.tensor(x), mu, 17).numpy(), ref)
    # the same formula in float32 flips a good share of them: the test is meaningful
    x32, mu32 = x.astype(np.float32), mu.astype(np.float32)
    f32 = np.argmin((mu32 * mu32).sum(1)[None] - 2 * x32 @ mu32.T, axis=1)
    assert np.mean(f32 != ref) > 0.1


def test_ncc_excludes_absent_classes_and_counts_them_wrong(rng):
    x, y = blobs(rng, 120, 5, 4, spread=0.3)
    means = loop_means(x, y, 4)
    means[2] = np.nan  # class 2 "absent from the training split"
    ref = loop_ncc(x, means)
    assert not np.any(ref == 2)
    np.testing.assert_array_equal(ncc_predict(x, means), ref)
    # samples labelled 2 can never be NCC-correct
    assert ncc_accuracy(x, y, means) == np.mean(ref == y)
    assert ncc_accuracy(x[y == 2], y[y == 2], means) == 0.0


def test_ncc_errors(rng):
    x, y = blobs(rng, 20, 3, 2)
    means = loop_means(x, y, 2)
    with pytest.raises(ValueError, match="dimension 3, means have dimension 4|dimension 4"):
        ncc_predict(x, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="20 rows but predictions have 19"):
        ncc_mismatch(x, y[:19], means)
    bad = x.copy()
    bad[7, 1] = np.nan
    with pytest.raises(NonFiniteFeaturesError, match="rows"):
        ncc_mismatch(bad, y, means)
    partial = means.copy()
    partial[0, 0] = np.nan
    with pytest.raises(NonFiniteFeaturesError, match="whole-NaN rows"):
        ncc_predict(x, partial)
    with pytest.raises(ValueError, match="chunk_size"):
        ncc_predict(x, means, chunk_size=0)


# --------------------------------------------------------------------------------------------
# Neural collapse
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "d", "c", "weights"),
    [
        (300, 8, 4, None),  # D > C
        (200, 3, 6, None),  # D < C - 1: rank limited by D
        (250, 10, 5, [0.5, 0.2, 0.15, 0.1, 0.05]),  # imbalanced
        (50, 20, 10, None),  # N small relative to D: singular Sigma_W
    ],
)
def test_nc1_equals_pinv_formula(rng, n, d, c, weights):
    x, y = blobs(rng, n, d, c, spread=2.0, weights=weights)
    res = collapse_metrics(x, y, c, chunk_size=33)
    assert res["nc1"] == pytest.approx(pinv_nc1(x, y, c), rel=1e-8)


def test_nc1_with_absent_class_uses_present_classes(rng):
    x, y = blobs(rng, 200, 6, 4)
    y = np.where(y == 3, 0, y)
    res = collapse_metrics(x.astype(np.float32), y, 6)  # classes 3, 4, 5 absent
    assert res["n_classes_present"] == 3
    assert res["nc1"] == pytest.approx(pinv_nc1(x.astype(np.float32), y, 6), rel=1e-8)
    assert np.isfinite([res[k] for k in res if k.startswith("nc2")]).all()


def test_nc1_two_pass_api_matches(rng):
    x, y = blobs(rng, 130, 7, 3)
    cm = ClassMeans(3)
    for a in range(0, 130, 20):
        cm.update(x[a : a + 20], y[a : a + 20])
    proj = WithinClassProjection(cm)
    for a in range(0, 130, 9):
        proj.update(x[a : a + 9], y[a : a + 9])
    assert proj.nc1() == pytest.approx(pinv_nc1(x, y, 3), rel=1e-9)
    assert proj.k == 2
    np.testing.assert_allclose(proj.eigvecs_.T @ proj.eigvecs_, np.eye(2), atol=1e-12)
    partial = WithinClassProjection(cm).update(x[:50], y[:50])
    with pytest.raises(RuntimeError, match="same samples"):
        partial.nc1()


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 300, 301, 10_000])
def test_streaming_any_chunk_size_equals_one_pass(rng, chunk_size, tmp_path):
    n = 300
    x, y = blobs(rng, n, 9, 5, spread=2.5)
    preds = rng.integers(0, 5, size=n)
    np.save(tmp_path / "f.npy", x.astype(np.float16))
    mm = np.load(tmp_path / "f.npy", mmap_mode="r")
    one = collapse_metrics(np.asarray(mm, dtype=np.float64), y, 5, predictions=preds, chunk_size=n)
    streams = {
        "memmap": mm,
        "torch": torch.tensor(np.asarray(mm, dtype=np.float32)),
        "chunk callable": lambda cs: (
            np.asarray(mm[a : a + cs], dtype=np.float32) for a in range(0, n, cs)
        ),
    }
    for name, src in streams.items():
        got = collapse_metrics(src, y, 5, predictions=preds, chunk_size=chunk_size)
        np.testing.assert_allclose(got["means"].means_, one["means"].means_, rtol=1e-12)
        for key in ("nc1", "nc2_equinorm", "nc2_equiangularity", "nc2_mean_angle_dev"):
            assert got[key] == pytest.approx(one[key], rel=1e-10), (name, key)
        assert got["ncc_mismatch"] == one["ncc_mismatch"], name
        assert got["ncc_accuracy"] == one["ncc_accuracy"], name


def test_nc2_matches_pairwise_loop_and_is_zero_on_a_simplex(rng):
    means = rng.standard_normal((5, 8))
    g = rng.standard_normal(8)
    got = nc2_metrics(means, g)
    centred = means - g
    norms = [np.sqrt(np.sum(v**2)) for v in centred]
    cosines = [
        float(centred[a] @ centred[b]) / (norms[a] * norms[b])
        for a in range(5)
        for b in range(a + 1, 5)
    ]
    assert got["nc2_equinorm"] == pytest.approx(np.std(norms) / np.mean(norms), rel=1e-12)
    assert got["nc2_equiangularity"] == pytest.approx(np.std(cosines), rel=1e-12)
    dev = [abs(cv + 1 / 4) for cv in cosines]
    assert got["nc2_mean_angle_dev"] == pytest.approx(np.mean(dev), rel=1e-12)
    assert got["nc2_max_angle_dev"] == pytest.approx(np.max(dev), rel=1e-12)
    # a simplex equiangular tight frame (C = 4 in D = 6), rotated and shifted
    etf = np.eye(4) - 1 / 4
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    simplex = 2.5 * etf @ q[:4] + 7.0
    mg = simplex.mean(axis=0)
    got = nc2_metrics(simplex, mg)
    assert max(got.values()) < 1e-12


def test_nc3_orientation_and_self_duality(rng):
    means = rng.standard_normal((4, 6))
    g = means.mean(axis=0)
    w = 3.0 * (means - g)  # W rows = class directions: perfect self-duality
    assert nc3_metric(w, means, g) == pytest.approx(0.0, abs=1e-24)
    w2 = rng.standard_normal((4, 6))
    wt = w2.T / np.linalg.norm(w2)
    m = (means - g).T / np.linalg.norm(means - g)
    assert nc3_metric(torch.tensor(w2), means, g) == pytest.approx(np.sum((wt - m) ** 2))
    with pytest.raises(ValueError, match=r"shape \(6, 4\)"):
        nc3_metric(w2.T, means, g)


def test_collapse_metrics_undefined_cases_warn_not_silent():
    x = np.zeros((6, 3))
    y = np.array([0, 0, 1, 1, 2, 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = collapse_metrics(x, y, 3)
    messages = " | ".join(str(w.message) for w in caught)
    assert "NC1 undefined" in messages and "NC2 undefined" in messages
    assert np.isnan(res["nc1"]) and np.isnan(res["nc2_equinorm"])


# --------------------------------------------------------------------------------------------
# Real training run: MNIST-1D, MLP trained to interpolation, real activation dumps
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_dumps(tmp_path_factory):
    from mfoml.nets.activations import dump_activations, open_activations
    from mfoml.nets.models import build_model
    from mfoml.nets.training import TrainConfig, train
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 500  # 400 train / 100 test
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    try:
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
    x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
    xt, yt = data["x_test"].astype(np.float32), data["y_test"].astype(np.int64)
    torch.manual_seed(0)
    model = build_model("mlp", (40,), 10, depth=3, width=128)
    tmp = tmp_path_factory.mktemp("ncc_run")
    cfg = TrainConfig(epochs=40, batch_size=100, lr=3e-3, device="cpu", seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead on a shared CPU
    try:
        metrics = train(model, x, y, cfg, tmp / "ckpt")
    finally:
        torch.set_num_threads(threads)
    assert metrics["train_acc"].iloc[-1] == 1.0  # interpolation reached
    dump_activations(model, x, y, tmp / "train", device="cpu", split="train")
    dump_activations(model, xt, yt, tmp / "test", device="cpu", split="test")
    return model, open_activations(tmp / "train"), open_activations(tmp / "test"), tmp


@pytest.mark.slow
def test_layer_table_on_trained_mlp(trained_dumps):
    model, train_dump, test_dump, _ = trained_dumps
    with captured("mfoml.collapse.table") as lines:
        tab = layer_table(
            train_dump,
            test_dump,
            classifier_weight=model.classifier_weight(),
            penultimate_layer=model.penultimate_layer,
            chunk_size=64,
        )
    assert tab["layer"].tolist() == model.probe_layers
    assert len(lines) == len(model.probe_layers) + 1  # progress per layer + total
    pen = tab.set_index("layer").loc[model.penultimate_layer]
    # NCC agrees with the network at the last layers of an interpolating network
    assert pen["ncc_mismatch_train"] <= 0.02
    assert tab.set_index("layer").loc["logits", "ncc_mismatch_train"] <= 0.02
    # NC1 falls from the first to the last hidden layer, by a wide margin
    nc1 = tab["nc1"].to_numpy()
    assert nc1[tab["layer"] == model.penultimate_layer][0] < 0.1 * nc1[0]
    assert np.all(np.diff(nc1[:-1]) < 0)  # input -> block1 -> ... -> penultimate
    # nc3 / nc4 only on the penultimate row; nc4 is the train mismatch there
    assert tab["nc3"].notna().sum() == 1 and tab["nc4"].notna().sum() == 1
    assert pen["nc4"] == pen["ncc_mismatch_train"]
    assert 0.0 <= pen["nc3"] < 2.0


def test_layer_table_values_equal_independent_loops(trained_dumps):
    model, train_dump, test_dump, _ = trained_dumps
    tab = layer_table(train_dump, test_dump, chunk_size=97).set_index("layer")
    y, p = np.asarray(train_dump.labels), np.asarray(train_dump.predictions)
    yt, pt = np.asarray(test_dump.labels), np.asarray(test_dump.predictions)
    for name in ("input", "block2", model.penultimate_layer):
        h = np.asarray(train_dump.layer(name), dtype=np.float64)
        ht = np.asarray(test_dump.layer(name), dtype=np.float64)
        means = loop_means(h, y, 10)
        ref_tr, ref_te = loop_ncc(h, means), loop_ncc(ht, means)
        row = tab.loc[name]
        assert row["ncc_mismatch_train"] == np.mean(ref_tr != p)
        assert row["ncc_mismatch_test"] == np.mean(ref_te != pt)
        assert row["ncc_accuracy_train"] == np.mean(ref_tr == y)
        assert row["ncc_accuracy_test"] == np.mean(ref_te == yt)
        assert row["nc1"] == pytest.approx(pinv_nc1(h, y, 10), rel=1e-6)
        assert row["dim"] == h.shape[1] and row["n_train"] == len(y) and row["n_test"] == len(yt)
    # a default table (no classifier, no test dump): penultimate found before "logits"
    assert tab["nc4"].notna().sum() == 1 and tab["nc3"].isna().all()
    bare = layer_table(train_dump)
    assert bare["ncc_mismatch_test"].isna().all()


def test_layer_table_errors_name_the_layer(trained_dumps, tmp_path):
    import shutil

    from mfoml.nets.dumps import open_activations

    model, train_dump, test_dump, _ = trained_dumps
    bad_dir = tmp_path / "bad"
    shutil.copytree(train_dump.path, bad_dir)
    arr = np.load(bad_dir / "block2.npy", mmap_mode="r+")
    arr[5, 3] = np.nan
    arr.flush()
    del arr
    with pytest.raises(NonFiniteFeaturesError, match="layer 'block2'"):
        layer_table(open_activations(bad_dir))
    w = model.classifier_weight()
    with pytest.raises(ValueError, match="classifier_weight expects 128 features but pen"):
        layer_table(train_dump, classifier_weight=w, penultimate_layer="logits")
    with pytest.raises(ValueError, match="not in the train dump"):
        layer_table(train_dump, layers=["nope"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the normal path emits no warning
        layer_table(train_dump, test_dump, layers=["block1"])


def test_layer_table_reduced_penultimate_gives_nan_nc3(tmp_path):
    from mfoml.nets.activations import dump_activations, open_activations
    from mfoml.nets.models import build_model

    torch.manual_seed(0)
    model = build_model("conv1d", (1, 40), 3, depth=2, width=8)  # penultimate (8, 10) -> 80
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 1, 40)).astype(np.float32)
    y = np.arange(60) % 3
    dump_activations(model, x, y, tmp_path / "d", max_features=40, device="cpu")
    dump = open_activations(tmp_path / "d")
    assert dump.entry("block2")["dim"] < 80  # really pooled
    with captured("mfoml.collapse.table") as lines:
        tab = layer_table(
            dump,
            classifier_weight=model.classifier_weight(),
            penultimate_layer=model.penultimate_layer,
        ).set_index("layer")
    assert np.isnan(tab.loc["block2", "nc3"]) and tab["nc3"].isna().all()
    assert tab.loc["block2", "nc4"] == tab.loc["block2", "ncc_mismatch_train"]
    assert any("NC3 is not computable" in line for line in lines)
    assert "adaptive_avg_pool1d" in tab.loc["block2", "reduction"]


def test_layer_table_uses_true_labels_of_a_noisy_train_dump(trained_dumps, tmp_path):
    """Under label noise the train dump carries the labels trained on; METHODS section 7 takes
    the class means (and NCC accuracy, NC1) from the true labels."""
    from mfoml.data.noise import flip_labels
    from mfoml.nets.activations import dump_activations, open_activations

    model, train_dump, _, _ = trained_dumps
    x = np.asarray(train_dump.layer("input"), dtype=np.float32)  # (400, 40) MNIST-1D inputs
    y = np.asarray(train_dump.labels)
    y_noisy, changed = flip_labels(y, 0.3, 10, seed=1)
    assert changed.sum() == round(0.3 * len(y))
    dump_activations(
        model, x, y_noisy, tmp_path / "noisy", true_labels=y, device="cpu", split="train"
    )
    noisy = open_activations(tmp_path / "noisy")
    np.testing.assert_array_equal(noisy.labels, y_noisy)  # the labels trained on, as before
    np.testing.assert_array_equal(noisy.true_labels, y)
    np.testing.assert_array_equal(train_dump.true_labels, train_dump.labels)  # no noise file
    tab = layer_table(noisy).set_index("layer")
    p = np.asarray(noisy.predictions)
    for name in ("block1", model.penultimate_layer):
        h = np.asarray(noisy.layer(name), dtype=np.float64)
        ref = loop_ncc(h, loop_means(h, y, 10))
        row = tab.loc[name]
        assert row["ncc_mismatch_train"] == np.mean(ref != p)
        assert row["ncc_accuracy_train"] == np.mean(ref == y)
        assert row["nc1"] == pytest.approx(pinv_nc1(h, y, 10), rel=1e-6)
        assert row["nc1"] != pytest.approx(pinv_nc1(h, y_noisy, 10), rel=1e-3)
    with pytest.raises(ValueError, match="true_labels must have shape"):
        dump_activations(model, x, y, tmp_path / "bad", true_labels=y[:-1], device="cpu")


class _ArrayDump:
    """A minimal in-memory activation dump (the ActivationDumpLike protocol)."""

    def __init__(self, layers: dict[str, np.ndarray], labels: np.ndarray) -> None:
        self._layers = layers
        self.layers = list(layers)
        self.labels = labels
        self.predictions = labels.copy()
        self.manifest = {
            "layers": [
                {"name": n, "index": i, "dim": a.shape[1], "reduction": None}
                for i, (n, a) in enumerate(layers.items())
            ]
        }

    def layer(self, name: str) -> np.ndarray:
        return self._layers[name]

    def iter_chunks(self, name: str, chunk_size: int):
        a = self._layers[name]
        for i in range(0, len(a), chunk_size):
            yield a[i : i + chunk_size].astype(np.float32)


def test_layer_table_status_says_why_nc1_nc2_are_undefined(rng):
    y = np.arange(40) % 2
    sign = np.where((np.arange(40) // 2) % 2 == 0, 1.0, -1.0)[:, None]
    layers = {
        "input": rng.normal(size=(40, 3)) + y[:, None],  # separated classes
        "dead": np.zeros((40, 5)),  # e.g. every ReLU dead
        # varies within each class, but both class means are 0: NC1/NC2 undefined
        "same_means": sign * np.ones((40, 4)),
        "logits": np.stack([1.0 - y, y], axis=1) + 0.1 * rng.normal(size=(40, 2)),
    }
    layers = {k: v.astype(np.float16) for k, v in layers.items()}
    with captured("mfoml.collapse.table") as lines:
        tab = layer_table(_ArrayDump(layers, y), n_classes=2, chunk_size=7).set_index("layer")
    assert tab["status"].to_dict() == {
        "input": "ok",
        "dead": "constant_layer",
        "same_means": "class_means_degenerate",
        "logits": "ok",
    }
    assert tab.loc[["dead", "same_means"], "nc1"].isna().all()
    assert tab.loc[["input", "logits"], "nc1"].notna().all()
    assert any("'dead': status constant_layer" in line for line in lines)
    # one class present: NC1/NC2 undefined for every layer
    one = layer_table(_ArrayDump(layers, np.zeros(40, dtype=np.int64)), n_classes=2)
    assert (one["status"] == "one_class").all()
    # the statuses are documented values
    from mfoml.collapse.table import LAYER_STATUSES

    assert set(tab["status"]) | set(one["status"]) <= set(LAYER_STATUSES)
