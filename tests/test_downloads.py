"""Download and parsing of MNIST / FashionMNIST / CIFAR against a loopback HTTP server.

The files served are small files generated here in the real formats (IDX gzip; CIFAR "python
version" tar.gz of pickled batches), written by code in this test module that is independent
of the parser under test. The real download, verification and parsing code runs end to end.
"""

from __future__ import annotations

import gzip
import io
import pickle
import shutil
import struct
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from logcapture import captured
from loopback import LoopbackServer, md5s, prepare_served, serve_directory
from mfoml.data.catalog import prepare_dataset
from mfoml.data.download import DownloadError
from mfoml.data.formats import DataFormatError, read_idx_gz
from mfoml.data.store import load_dataset

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


# ------------------------------------------------------------------------------------------
# Writers of the real formats (independent of mfoml)
# ------------------------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX: 0x00 0x00, type 0x08 (ubyte), ndim, big-endian uint32 dims, then the bytes."""
    assert arr.dtype == np.uint8
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.tobytes(order="C")


def write_gz(path: Path, payload: bytes) -> None:
    with gzip.open(path, "wb") as fh:
        fh.write(payload)


def make_idx_set(directory: Path, rng: np.random.Generator, n_train=30, n_test=12):
    x_tr = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    y_tr = rng.integers(0, 10, size=n_train).astype(np.uint8)
    x_te = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    y_te = rng.integers(0, 10, size=n_test).astype(np.uint8)
    for name, arr in zip(IDX_FILES, (x_tr, y_tr, x_te, y_te), strict=True):
        write_gz(directory / name, idx_bytes(arr))
    return x_tr, y_tr, x_te, y_te


def pickled(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)


def write_tar_gz(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def make_cifar10(directory: Path, rng: np.random.Generator, per_batch=4, n_test=6):
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    members = {}
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, size=per_batch).tolist()
        xs.append(x)
        ys += y
        members[f"cifar-10-batches-py/data_batch_{i}"] = pickled(
            {
                "batch_label": f"training batch {i} of 5",
                "labels": y,
                "data": x,
                "filenames": [f"img_{i}_{j}.png" for j in range(per_batch)],
            }
        )
    x_te = rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    y_te = rng.integers(0, 10, size=n_test).tolist()
    members["cifar-10-batches-py/test_batch"] = pickled(
        {"batch_label": "testing batch 1 of 1", "labels": y_te, "data": x_te, "filenames": []}
    )
    members["cifar-10-batches-py/batches.meta"] = pickled(
        {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}
    )
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    write_tar_gz(directory / "cifar-10-python.tar.gz", members)
    return np.concatenate(xs), np.array(ys), x_te, np.array(y_te), names


def make_cifar100(directory: Path, rng: np.random.Generator, n_train=25, n_test=7):
    fine = [f"class{i:03d}" for i in range(100)]
    coarse = [f"super{i:02d}" for i in range(20)]
    out = {}
    members = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = rng.integers(0, 100, size=n).tolist()
        out[split] = (x, np.array(y))
        members[f"cifar-100-python/{split}"] = pickled(
            {
                "filenames": [f"{split}_{j}.png" for j in range(n)],
                "batch_label": f"{split} batch",
                "fine_labels": y,
                "coarse_labels": [v // 5 for v in y],
                "data": x,
            }
        )
    members["cifar-100-python/meta"] = pickled(
        {"fine_label_names": fine, "coarse_label_names": coarse}
    )
    write_tar_gz(directory / "cifar-100-python.tar.gz", members)
    return (*out["train"], *out["test"], fine)


def chw_reference(rows: np.ndarray) -> np.ndarray:
    """CIFAR rows (n, 3072) -> (n, 3, 32, 32) in [0, 1], by explicit indexing."""
    n = rows.shape[0]
    out = np.empty((n, 3, 32, 32), dtype=np.float64)
    for c in range(3):
        for r in range(32):
            out[:, c, r, :] = rows[:, c * 1024 + r * 32 : c * 1024 + (r + 1) * 32]
    return out / 255.0


def assert_nothing_trusted(out_dir: Path, raw_dir: Path) -> None:
    """No normalized data set and no raw file that a later run would accept."""
    assert not (out_dir / "meta.json").exists()
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_dataset(out_dir)
    leftovers = (
        sorted(p.name for p in raw_dir.rglob("*") if p.is_file()) if raw_dir.exists() else []
    )
    assert leftovers == []


# ------------------------------------------------------------------------------------------
# The loopback server itself
# ------------------------------------------------------------------------------------------


def test_loopback_serves_files_and_records_requests(tmp_path):
    payload = bytes(range(256)) * 40
    (tmp_path / "blob.bin").write_bytes(payload)
    with serve_directory(tmp_path) as base_url:
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/")
        with urllib.request.urlopen(base_url + "blob.bin", timeout=10) as resp:
            assert resp.headers["Content-Length"] == str(len(payload))
            assert resp.read() == payload
    with LoopbackServer(tmp_path) as srv:
        with urllib.request.urlopen(srv.url("blob.bin"), timeout=10) as resp:
            assert resp.read() == payload
        assert srv.requests == ["/blob.bin"]


# ------------------------------------------------------------------------------------------
# End to end: MNIST / FashionMNIST
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashionmnist"])
def test_idx_download_and_parse(tmp_path, name):
    served = tmp_path / "served"
    served.mkdir()
    x_tr, y_tr, x_te, y_te = make_idx_set(served, np.random.default_rng(1))
    out, dl = tmp_path / "data" / name, tmp_path / "downloads"
    with LoopbackServer(served) as srv, captured("mfoml.data.download") as logs:
        meta = prepare_dataset(
            name, out, download_dir=dl, mirror=srv.base_url, checksums=md5s(served)
        )
        assert sorted(srv.requests) == sorted("/" + f for f in IDX_FILES)
    ds = load_dataset(out)
    assert ds.x_train.dtype == np.float32 and ds.x_train.shape == (30, 1, 28, 28)
    np.testing.assert_array_equal(ds.x_train[:, 0], x_tr / np.float32(255))
    np.testing.assert_array_equal(ds.x_test[:, 0], x_te / np.float32(255))
    assert ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, y_tr)
    np.testing.assert_array_equal(ds.y_test, y_te)
    assert (meta["n_train"], meta["n_test"], meta["n_classes"]) == (30, 12, 10)
    assert meta["input_shape"] == [1, 28, 28] and meta["task"] == "classification"
    assert {f["file"] for f in meta["raw_files"]} == set(IDX_FILES)
    assert all(f["url"].startswith(srv.base_url) for f in meta["raw_files"])
    assert any(" / " in line and "%" in line for line in logs), logs  # progress: done / total
    # The raw files were kept, verified, under download_dir/<name>/, and no temp file remains.
    assert sorted(p.name for p in (dl / name).iterdir()) == sorted(IDX_FILES)

    # A second run reuses the verified raw files: no server needed.
    meta2 = prepare_dataset(name, out, download_dir=dl, mirror=srv.base_url, checksums=md5s(served))
    assert meta2["checksums"] == meta["checksums"]


def test_idx_parser_agrees_with_torchvision(tmp_path, rng):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    x_tr, y_tr, _, _ = make_idx_set(tmp_path, rng, n_train=7, n_test=3)
    for fname, reader in (
        ("train-images-idx3-ubyte.gz", read_image_file),
        ("train-labels-idx1-ubyte.gz", read_label_file),
    ):
        plain = tmp_path / fname.removesuffix(".gz")
        plain.write_bytes(gzip.decompress((tmp_path / fname).read_bytes()))
        np.testing.assert_array_equal(read_idx_gz(tmp_path / fname), reader(str(plain)).numpy())
    assert read_idx_gz(tmp_path / "train-images-idx3-ubyte.gz").shape == (7, 28, 28)


def test_idx_parser_multibyte_big_endian(tmp_path):
    arr = np.arange(6, dtype=np.int32).reshape(2, 3) * 1000 - 2500
    payload = bytes([0, 0, 0x0C, 2]) + struct.pack(">II", 2, 3)
    payload += b"".join(struct.pack(">i", int(v)) for v in arr.ravel())
    write_gz(tmp_path / "a.gz", payload)
    got = read_idx_gz(tmp_path / "a.gz")
    assert got.dtype == np.int32 and got.dtype.isnative
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (bytes([0, 1, 8, 1]) + struct.pack(">I", 2) + b"ab", "magic"),
        (bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"ab", "size mismatch"),
        (bytes([0, 0, 8, 2]) + struct.pack(">I", 5), "header truncated"),
    ],
)
def test_idx_parser_rejects_bad_contents(tmp_path, payload, message):
    write_gz(tmp_path / "bad.gz", payload)
    with pytest.raises(DataFormatError, match=message) as err:
        read_idx_gz(tmp_path / "bad.gz")
    assert "bad.gz" in str(err.value)


# ------------------------------------------------------------------------------------------
# End to end: CIFAR-10 / CIFAR-100
# ------------------------------------------------------------------------------------------


def test_cifar10_download_parse_grayscale_and_cap(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    x_tr, y_tr, x_te, y_te, names = make_cifar10(served, np.random.default_rng(2))
    dl = tmp_path / "dl"
    with serve_directory(served) as base:
        meta = prepare_dataset(
            "cifar10",
            tmp_path / "c10",
            download_dir=dl,
            mirror=base,
            checksums=md5s(served),
        )
        ds = load_dataset(tmp_path / "c10")
        assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (6, 3, 32, 32)
        np.testing.assert_allclose(ds.x_train, chw_reference(x_tr), rtol=0, atol=1e-7)
        np.testing.assert_allclose(ds.x_test, chw_reference(x_te), rtol=0, atol=1e-7)
        np.testing.assert_array_equal(ds.y_train, y_tr)
        np.testing.assert_array_equal(ds.y_test, y_te)
        assert meta["class_names"] == names and meta["n_classes"] == 10

        # Grayscale (ITU-R BT.601 luma) and a per-class cap, from the cached archive.
        gmeta = prepare_dataset(
            "cifar10",
            tmp_path / "c10g",
            download_dir=dl,
            mirror=base,
            checksums=md5s(served),
            grayscale=True,
            per_class_cap=1,
            seed=3,
        )
    g = load_dataset(tmp_path / "c10g")
    assert gmeta["options"] == {"grayscale": True, "per_class_cap": 1, "seed": 3}
    assert gmeta["input_shape"] == [1, 32, 32]
    src = np.load(tmp_path / "c10g" / "train_source_index.npy")
    ref = chw_reference(x_tr)
    luma = 0.299 * ref[:, 0] + 0.587 * ref[:, 1] + 0.114 * ref[:, 2]
    np.testing.assert_allclose(g.x_train[:, 0], luma[src], atol=1e-6)
    np.testing.assert_allclose(
        g.x_test[:, 0],
        (
            0.299 * chw_reference(x_te)[:, 0]
            + 0.587 * chw_reference(x_te)[:, 1]
            + 0.114 * chw_reference(x_te)[:, 2]
        ),
        atol=1e-6,
    )
    np.testing.assert_array_equal(g.y_train, y_tr[src])
    assert sorted(g.y_train.tolist()) == sorted(set(y_tr.tolist()))  # one per present class
    np.testing.assert_array_equal(g.y_test, y_te)  # the test split is not capped


def test_cifar100_download_and_parse(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    x_tr, y_tr, x_te, y_te, fine = make_cifar100(served, np.random.default_rng(3))
    meta = prepare_served("cifar100", tmp_path / "c100", served, tmp_path / "dl")
    ds = load_dataset(tmp_path / "c100")
    np.testing.assert_allclose(ds.x_train, chw_reference(x_tr), atol=1e-7)
    np.testing.assert_allclose(ds.x_test, chw_reference(x_te), atol=1e-7)
    np.testing.assert_array_equal(ds.y_train, y_tr)  # the fine labels
    np.testing.assert_array_equal(ds.y_test, y_te)
    assert meta["n_classes"] == 100 and meta["class_names"] == fine


def test_cifar_pickle_with_foreign_globals_is_refused(tmp_path):
    served = tmp_path / "served"
    served.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("should never run",))

    members = {
        f"cifar-100-python/{n}": pickle.dumps({"data": Evil()}, protocol=2)
        for n in ("train", "test", "meta")
    }
    write_tar_gz(served / "cifar-100-python.tar.gz", members)
    with pytest.raises(DataFormatError, match="forbidden global .*print"):
        prepare_served("cifar100", tmp_path / "out", served, tmp_path / "dl")
    assert_nothing_trusted(tmp_path / "out", tmp_path / "dl")


def test_cifar_archive_missing_member(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    write_tar_gz(served / "cifar-10-python.tar.gz", {"cifar-10-batches-py/data_batch_1": b"x"})
    with pytest.raises(DataFormatError, match="lacks .*test_batch"):
        prepare_served("cifar10", tmp_path / "out", served, tmp_path / "dl")
    assert_nothing_trusted(tmp_path / "out", tmp_path / "dl")


# ------------------------------------------------------------------------------------------
# Broken downloads leave nothing a later run would accept
# ------------------------------------------------------------------------------------------


@pytest.fixture
def idx_served(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    make_idx_set(served, np.random.default_rng(4))
    return served


def test_cut_connection_is_reported_as_truncated(tmp_path, idx_served):
    good = md5s(idx_served)
    fname = "train-images-idx3-ubyte.gz"
    with LoopbackServer(idx_served, cut_transfers={fname: 1000}) as srv:
        with pytest.raises(DownloadError, match="truncated") as err:
            prepare_dataset(
                "mnist",
                tmp_path / "out",
                download_dir=tmp_path / "dl",
                mirror=srv.base_url,
                checksums=good,
            )
    assert fname in str(err.value) and "1000" in str(err.value)
    assert_nothing_trusted(tmp_path / "out", tmp_path / "dl")


def test_cut_file_fails_checksum(tmp_path, idx_served):
    good = md5s(idx_served)  # checksums of the complete files
    fname = "t10k-images-idx3-ubyte.gz"
    data = (idx_served / fname).read_bytes()
    (idx_served / fname).write_bytes(data[: len(data) // 2])
    with serve_directory(idx_served) as base:
        with pytest.raises(DownloadError, match="checksum mismatch") as err:
            prepare_dataset(
                "mnist",
                tmp_path / "out",
                download_dir=tmp_path / "dl",
                mirror=base,
                checksums=good,
            )
    assert fname in str(err.value) and good[fname] in str(err.value)
    assert not (tmp_path / "dl" / "mnist" / fname).exists()
    assert not (tmp_path / "out" / "meta.json").exists()
    assert not [p for p in (tmp_path / "dl").rglob("*.part")]


def test_flipped_bytes_fail_checksum(tmp_path, idx_served):
    good = md5s(idx_served)
    fname = "train-labels-idx1-ubyte.gz"
    data = bytearray((idx_served / fname).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (idx_served / fname).write_bytes(bytes(data))
    with serve_directory(idx_served) as base:
        with pytest.raises(DownloadError, match=f"{fname}: checksum mismatch"):
            prepare_dataset(
                "fashionmnist",
                tmp_path / "out",
                download_dir=tmp_path / "dl",
                mirror=base,
                checksums=good,
            )
    assert not (tmp_path / "dl" / "fashionmnist" / fname).exists()
    assert not (tmp_path / "out" / "meta.json").exists()


def test_default_checksums_are_torchvisions(tmp_path, idx_served):
    """Without a checksums override, generated files fail torchvision's md5 of the real ones."""
    with serve_directory(idx_served) as base:
        with pytest.raises(DownloadError, match="f68b3c2dcbeaaa9fbdd348bbdeb94873"):
            prepare_dataset(
                "mnist",
                tmp_path / "out",
                download_dir=tmp_path / "dl",
                mirror=base,
            )
    assert_nothing_trusted(tmp_path / "out", tmp_path / "dl")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: b"this is plain text, not gzip" + data, "not a gzip file"),
        (lambda data: data[: len(data) - 40], "gzip stream is truncated"),
    ],
)
def test_bad_gzip_with_matching_checksum_is_discarded(tmp_path, idx_served, damage, message):
    """A file that matches its checksum but is not valid gzip fails to parse and is deleted."""
    fname = "train-labels-idx1-ubyte.gz"
    path = idx_served / fname
    path.write_bytes(damage(path.read_bytes()))
    with serve_directory(idx_served) as base:
        with pytest.raises(DataFormatError, match=message) as err:
            prepare_dataset(
                "mnist",
                tmp_path / "out",
                download_dir=tmp_path / "dl",
                mirror=base,
                checksums=md5s(idx_served),
            )
    assert fname in str(err.value)
    assert not (tmp_path / "dl" / "mnist" / fname).exists()
    assert not (tmp_path / "out" / "meta.json").exists()


def test_not_a_tar_gz(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "cifar-10-python.tar.gz").write_bytes(gzip.compress(b"not a tar archive" * 100))
    with pytest.raises(DataFormatError, match="cifar-10-python.tar.gz"):
        prepare_served("cifar10", tmp_path / "out", served, tmp_path / "dl")
    assert_nothing_trusted(tmp_path / "out", tmp_path / "dl")


def test_missing_file_on_server(tmp_path, idx_served):
    checks = md5s(idx_served)
    (idx_served / "t10k-labels-idx1-ubyte.gz").unlink()
    with serve_directory(idx_served) as base:
        with pytest.raises(DownloadError, match="t10k-labels-idx1-ubyte.gz.*HTTP 404"):
            prepare_dataset(
                "mnist",
                tmp_path / "out",
                download_dir=tmp_path / "dl",
                mirror=base,
                checksums=checks,
            )
    assert not (tmp_path / "out" / "meta.json").exists()


def test_corrupted_cached_raw_file_is_downloaded_again(tmp_path, idx_served):
    checks = md5s(idx_served)
    dl = tmp_path / "dl"
    with LoopbackServer(idx_served) as srv:
        prepare_dataset(
            "mnist",
            tmp_path / "a",
            download_dir=dl,
            mirror=srv.base_url,
            checksums=checks,
        )
        cached = dl / "mnist" / "train-labels-idx1-ubyte.gz"
        cached.write_bytes(b"garbage")
        n_before = len(srv.requests)
        prepare_dataset(
            "mnist",
            tmp_path / "b",
            download_dir=dl,
            mirror=srv.base_url,
            checksums=checks,
        )
        assert srv.requests[n_before:] == ["/train-labels-idx1-ubyte.gz"]
    assert cached.read_bytes() == (idx_served / cached.name).read_bytes()
    np.testing.assert_array_equal(
        load_dataset(tmp_path / "a").y_train, load_dataset(tmp_path / "b").y_train
    )


def test_copy_of_served_tree_is_unchanged(tmp_path, idx_served):
    """The server only reads: the served files are byte-identical after a download."""
    before = md5s(idx_served)
    snapshot = tmp_path / "snap"
    shutil.copytree(idx_served, snapshot)
    with serve_directory(idx_served) as base:
        prepare_dataset(
            "mnist",
            tmp_path / "out",
            download_dir=tmp_path / "dl",
            mirror=base,
            checksums=before,
        )
    assert md5s(idx_served) == before == md5s(snapshot)
