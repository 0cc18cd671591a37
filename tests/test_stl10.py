"""STL-10 download and parsing against a loopback HTTP server.

The archive served is a tiny ``stl10_binary.tar.gz`` written here in the official binary format
(uint8 images stored column-major, 3 x 96 x 96 each, labels 1..10), by code independent of the
parser under test; the real download, md5 verification and parsing run end to end.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from loopback import md5s, prepare_served
from mfoml.data.catalog import prepare_dataset
from mfoml.data.formats import DataFormatError
from mfoml.data.store import load_dataset

NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def column_major(images: np.ndarray) -> bytes:
    """(N, 3, H, W) images -> the STL-10 byte order: per image, per channel, column by column."""
    out = bytearray()
    for img in images:
        for ch in img:
            for col in range(ch.shape[1]):
                out += ch[:, col].tobytes()
    return bytes(out)


def write_stl10(directory: Path, rng: np.random.Generator, n_train=6, n_test=4, members=None):
    x_tr = rng.integers(0, 256, (n_train, 3, 96, 96), dtype=np.uint8)
    x_te = rng.integers(0, 256, (n_test, 3, 96, 96), dtype=np.uint8)
    y_tr = rng.integers(1, 11, n_train).astype(np.uint8)
    y_te = rng.integers(1, 11, n_test).astype(np.uint8)
    if members is None:
        members = {
            "stl10_binary/train_X.bin": column_major(x_tr),
            "stl10_binary/train_y.bin": y_tr.tobytes(),
            "stl10_binary/test_X.bin": column_major(x_te),
            "stl10_binary/test_y.bin": y_te.tobytes(),
            "stl10_binary/unlabeled_X.bin": column_major(x_te[:1]),
            "stl10_binary/class_names.txt": ("\n".join(NAMES) + "\n").encode(),
        }
    with tarfile.open(directory / "stl10_binary.tar.gz", "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return x_tr, y_tr, x_te, y_te


def test_stl10_download_parse_and_cap(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    x_tr, y_tr, x_te, y_te = write_stl10(served, np.random.default_rng(0))
    meta = prepare_served("stl10", tmp_path / "s", served, tmp_path / "dl")
    ds = load_dataset(tmp_path / "s")
    assert ds.x_train.shape == (6, 3, 96, 96) and ds.x_test.shape == (4, 3, 96, 96)
    np.testing.assert_allclose(ds.x_train, x_tr / 255.0, atol=1e-7)
    np.testing.assert_allclose(ds.x_test, x_te / 255.0, atol=1e-7)
    np.testing.assert_array_equal(ds.y_train, y_tr.astype(np.int64) - 1)
    np.testing.assert_array_equal(ds.y_test, y_te.astype(np.int64) - 1)
    assert meta["class_names"] == NAMES and meta["n_classes"] == 10
    assert (tmp_path / "dl" / "stl10" / "stl10_binary.tar.gz").is_file()
    # from the cached archive (no server): grayscale and a per-class cap of 1
    g = prepare_dataset(
        "stl10",
        tmp_path / "g",
        download_dir=tmp_path / "dl",
        checksums=md5s(served),
        grayscale=True,
        per_class_cap=1,
    )
    assert g["input_shape"] == [1, 96, 96]
    assert g["n_train"] == len(set(y_tr.tolist())) and g["n_test"] == 4


def test_stl10_archive_missing_member_is_discarded(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    write_stl10(served, np.random.default_rng(1), members={"stl10_binary/train_X.bin": b"x" * 10})
    with pytest.raises(DataFormatError, match="train_y.bin"):
        prepare_served("stl10", tmp_path / "s", served, tmp_path / "dl")
    assert not (tmp_path / "dl" / "stl10" / "stl10_binary.tar.gz").exists()
