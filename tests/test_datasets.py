"""Embedded data sets, the normalized format, options and load-time verification."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
from mfoml.data.catalog import prepare_dataset
from mfoml.data.sources import DATASETS, to_grayscale
from mfoml.data.store import IntegrityError, load_dataset, write_normalized
from mfoml.data.subsample import per_class_subset
from sklearn import datasets as skd


@pytest.fixture(scope="module")
def mnist1d_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "mnist1d"
    prepare_dataset("mnist1d", out)
    return out


def test_mnist1d_is_the_standard_split(mnist1d_dir):
    from mnist1d.data import get_dataset_args, make_dataset

    ds = load_dataset(mnist1d_dir)
    assert ds.x_train.shape == (4000, 1, 40) and ds.x_test.shape == (1000, 1, 40)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.meta["input_shape"] == [1, 40] and ds.n_classes == 10
    ref = make_dataset(get_dataset_args())  # the package itself, default args (seed 42)
    np.testing.assert_array_equal(ds.x_train[:, 0], ref["x"].astype(np.float32))
    np.testing.assert_array_equal(ds.x_test[:, 0], ref["x_test"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, ref["y"])
    np.testing.assert_array_equal(ds.y_test, ref["y_test"])
    assert "seed 42" in ds.meta["source"]


def test_mnist1d_leaves_global_random_state_alone(tmp_path):
    random.seed(7)
    np.random.seed(7)  # noqa: NPY002
    expect_py, expect_np = random.random(), np.random.random()  # noqa: NPY002
    random.seed(7)
    np.random.seed(7)  # noqa: NPY002
    prepare_dataset("mnist1d", tmp_path / "m")
    assert random.random() == expect_py
    assert np.random.random() == expect_np  # noqa: NPY002


def test_digits_images_in_unit_interval(tmp_path):
    meta = prepare_dataset("digits", tmp_path / "digits")
    ds = load_dataset(tmp_path / "digits")
    ref = skd.load_digits()
    assert ds.x_train.shape == (1797, 1, 8, 8) and ds.x_test is None and ds.y_test is None
    np.testing.assert_allclose(ds.x_train[:, 0], ref.images / 16.0, atol=1e-7)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    np.testing.assert_array_equal(ds.y_train, ref.target)
    assert meta["n_test"] == 0 and meta["kind"] == "image" and meta["n_classes"] == 10
    assert sorted(meta["checksums"]) == ["x_train.npy", "y_train.npy"]


@pytest.mark.parametrize(
    ("name", "loader", "n_classes"),
    [
        ("wine", skd.load_wine, 3),
        ("breast_cancer", skd.load_breast_cancer, 2),
        ("iris", skd.load_iris, 3),
    ],
)
def test_tabular_classification(tmp_path, name, loader, n_classes):
    meta = prepare_dataset(name, tmp_path / name)
    ds = load_dataset(tmp_path / name)
    ref = loader()
    np.testing.assert_array_equal(ds.x_train, ref.data.astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, ref.target)
    assert ds.y_train.dtype == np.int64 and ds.x_train.dtype == np.float32
    assert meta["task"] == "classification" and meta["n_classes"] == n_classes
    assert meta["input_shape"] == [ref.data.shape[1]]
    assert meta["feature_names"] == list(ref.feature_names)


def test_diabetes_regression(tmp_path):
    meta = prepare_dataset("diabetes", tmp_path / "d")
    ds = load_dataset(tmp_path / "d")
    ref = skd.load_diabetes(scaled=False)
    assert meta["task"] == "regression" and meta["n_classes"] is None
    assert ds.y_train.dtype == np.float64 and ds.x_train.shape == (442, 10)
    np.testing.assert_array_equal(ds.y_train, ref.target)
    np.testing.assert_array_equal(ds.x_train, ref.data.astype(np.float32))
    with pytest.raises(ValueError, match="per_class_cap applies to classification"):
        prepare_dataset("diabetes", tmp_path / "d2", per_class_cap=3)


def test_meta_checksums_are_sha256_of_files(tmp_path):
    import hashlib

    meta = prepare_dataset("iris", tmp_path / "iris")
    on_disk = json.loads((tmp_path / "iris" / "meta.json").read_text())
    assert on_disk == json.loads(json.dumps(meta))
    for fname, digest in meta["checksums"].items():
        assert hashlib.sha256((tmp_path / "iris" / fname).read_bytes()).hexdigest() == digest


def test_unknown_name_lists_known(tmp_path):
    with pytest.raises(ValueError, match="unknown data set 'mnist2'") as err:
        prepare_dataset("mnist2", tmp_path / "x")
    for name in DATASETS:
        assert name in str(err.value)
    assert "openml-" in str(err.value)


# ------------------------------------------------------------------------------------------
# Options
# ------------------------------------------------------------------------------------------


def test_per_class_cap_subset(tmp_path):
    full = skd.load_digits()
    meta = prepare_dataset("digits", tmp_path / "a", per_class_cap=7, seed=11)
    a = load_dataset(tmp_path / "a")
    src = np.load(tmp_path / "a" / "train_source_index.npy")
    assert meta["options"] == {"grayscale": False, "per_class_cap": 7, "seed": 11}
    assert np.bincount(a.y_train).tolist() == [7] * 10 and meta["n_train"] == 70
    assert np.all(np.diff(src) > 0)  # original order kept
    np.testing.assert_array_equal(a.y_train, full.target[src])
    np.testing.assert_allclose(a.x_train[:, 0], full.images[src] / 16.0, atol=1e-7)
    prepare_dataset("digits", tmp_path / "b", per_class_cap=7, seed=11)
    prepare_dataset("digits", tmp_path / "c", per_class_cap=7, seed=12)
    np.testing.assert_array_equal(src, np.load(tmp_path / "b" / "train_source_index.npy"))
    assert not np.array_equal(src, np.load(tmp_path / "c" / "train_source_index.npy"))
    # A cap above every class size keeps everything.
    y = np.array([0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(per_class_subset(y, 3, seed=0), np.arange(6))
    with pytest.raises(ValueError, match="per_class_cap must be a positive integer"):
        per_class_subset(y, 0, seed=0)


def test_per_class_cap_draws_uniformly():
    """Every sample of an over-full class is kept with probability cap / n_c."""
    y = np.repeat([0, 1], [10, 3])
    hits = np.zeros(13)
    n_rep = 2000
    for s in range(n_rep):
        hits[per_class_subset(y, 3, seed=s)] += 1
    freq = hits / n_rep
    np.testing.assert_allclose(freq[:10], 0.3, atol=0.04)
    np.testing.assert_array_equal(freq[10:], 1.0)


def test_grayscale_bt601():
    rng = np.random.default_rng(0)
    x = rng.random((3, 3, 4, 5), dtype=np.float32)
    g = to_grayscale(x)
    assert g.shape == (3, 1, 4, 5) and g.dtype == np.float32
    for n in range(3):
        for i in range(4):
            for j in range(5):
                r, gg, b = (float(x[n, c, i, j]) for c in range(3))
                assert abs(g[n, 0, i, j] - (0.299 * r + 0.587 * gg + 0.114 * b)) < 1e-6
    white = np.ones((1, 3, 2, 2), dtype=np.float32)
    np.testing.assert_allclose(to_grayscale(white), 1.0, atol=1e-6)  # weights sum to 1
    one = rng.random((2, 1, 3, 3), dtype=np.float32)
    np.testing.assert_array_equal(to_grayscale(one), one)


def test_grayscale_only_for_images(tmp_path):
    with pytest.raises(ValueError, match="grayscale applies to image data sets only"):
        prepare_dataset("wine", tmp_path / "w", grayscale=True)
    meta = prepare_dataset("digits", tmp_path / "d", grayscale=True)
    assert meta["input_shape"] == [1, 8, 8] and meta["options"]["grayscale"] is True


# ------------------------------------------------------------------------------------------
# load_dataset verification
# ------------------------------------------------------------------------------------------


def test_missing_meta_is_not_trusted(tmp_path):
    prepare_dataset("iris", tmp_path / "iris")
    (tmp_path / "iris" / "meta.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"meta.json: missing"):
        load_dataset(tmp_path / "iris")
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_dataset(tmp_path / "never-made")


def test_missing_file_is_named(tmp_path, mnist1d_dir):
    shutil.copytree(mnist1d_dir, tmp_path / "m")
    load_dataset(tmp_path / "m")  # the copy is valid
    (tmp_path / "m" / "y_test.npy").unlink()
    with pytest.raises(FileNotFoundError, match="y_test.npy: missing"):
        load_dataset(tmp_path / "m", verify=False)


def test_checksum_mismatch(tmp_path):
    prepare_dataset("wine", tmp_path / "w")
    path = tmp_path / "w" / "x_train.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of one feature value
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"x_train.npy: sha256 mismatch"):
        load_dataset(tmp_path / "w")
    ds = load_dataset(tmp_path / "w", verify=False)  # explicitly unverified still loads
    assert ds.x_train.shape == (178, 13)


def test_shape_disagreeing_with_meta(tmp_path):
    prepare_dataset("iris", tmp_path / "i")
    meta_path = tmp_path / "i" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["n_train"] = 149
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(IntegrityError, match="meta.json says"):
        load_dataset(tmp_path / "i")


def test_failed_rewrite_leaves_directory_untrusted(tmp_path):
    out = tmp_path / "iris"
    prepare_dataset("iris", out)
    unsaveable = np.array([object()], dtype=object)  # np.save(allow_pickle=False) refuses it
    with pytest.raises(ValueError, match="pickle"):
        write_normalized(
            out,
            {"x_train.npy": np.zeros((1, 4), np.float32), "y_train.npy": unsaveable},
            {"name": "iris"},
        )
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_dataset(out)
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_rewrite_without_test_split_removes_stale_files(tmp_path, mnist1d_dir):
    out = tmp_path / "d"
    shutil.copytree(mnist1d_dir, out)
    write_normalized(
        out,
        {
            "x_train.npy": np.zeros((2, 3), np.float32),
            "y_train.npy": np.array([0, 1]),
            "x_test.npy": None,
            "y_test.npy": None,
        },
        {
            "name": "toy",
            "task": "classification",
            "n_classes": 2,
            "input_shape": [3],
            "n_train": 2,
            "n_test": 0,
        },
    )
    assert not (out / "x_test.npy").exists()
    ds = load_dataset(out)
    assert ds.x_test is None and ds.x_train.shape == (2, 3)


def test_registry_class_counts_are_those_of_the_data(mnist1d_dir):
    """The class counts the configuration checks before any job equal the data's own."""
    from mfoml.data.catalog import find_source
    from mfoml.data.sources import CLASS_COUNTS, EMBEDDED, N_TRAIN

    y = load_dataset(mnist1d_dir).y_train
    assert CLASS_COUNTS["mnist1d"] == tuple(np.bincount(y).tolist())
    loaders = {"digits": skd.load_digits, "wine": skd.load_wine, "iris": skd.load_iris}
    loaders["breast_cancer"] = skd.load_breast_cancer
    for name, load in loaders.items():
        assert CLASS_COUNTS[name] == tuple(np.bincount(load().target).tolist()), name
    assert N_TRAIN["diabetes"] == len(skd.load_diabetes().target)
    for name in EMBEDDED:
        info = find_source(name)
        assert info is not None and info.n_train == N_TRAIN[name]
        assert info.class_counts == CLASS_COUNTS.get(name)
    assert sum(CLASS_COUNTS["mnist"]) == 60000 and sum(CLASS_COUNTS["cifar100"]) == 50000
