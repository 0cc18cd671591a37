"""Embedded and downloadable data sets in one normalized on-disk format.

Normalized format (``resources/data/{dataset}/``, see ``docs/architecture.md``)
-------------------------------------------------------------------------------
``x_train.npy``   float32 ``(N, *input_shape)``
``y_train.npy``   int64 ``(N,)`` class labels in ``[0, n_classes)`` (classification) or float64
                  ``(N,)`` targets (regression)
``x_test.npy``, ``y_test.npy``   the same for the official test split, only when the set has one
``train_source_index.npy``       int64 ``(N,)``: only with ``per_class_cap``; for every stored
                  training sample, its row in the original (uncapped) training split
``meta.json``     written **last**: ``name, source, task, n_classes, input_shape, n_train, n_test,
                  checksums {file: sha256}, options {grayscale, per_class_cap, seed}`` plus
                  ``kind`` (``"image"``, ``"signal"`` or ``"tabular"``), ``class_names``,
                  ``feature_names`` (tabular), ``raw_files`` (downloads: file, url, checksum) and
                  ``format_version``.

``n_classes`` is ``null`` and ``n_test`` is ``0`` where they do not apply. A directory without
``meta.json`` or whose files do not match its checksums is never trusted by :func:`load_dataset`.

Per data set
------------
``mnist1d``        MNIST-1D from the ``mnist1d`` package, ``make_dataset`` with default arguments
                   (seed 42): 4000 train / 1000 test, 10 classes. A 1-D signal stored
                   channel-first as ``(N, 1, 40)`` (``input_shape [1, 40]``), the layout a
                   ``Conv1d`` expects; an MLP flattens it. The values are the package's own
                   (standardized over the 5000 samples by the package).
``digits``         scikit-learn digits: 1797 8x8 images, ``(N, 1, 8, 8)`` scaled from 0..16 to
                   [0, 1]; no official test split (``x_test`` is ``None``; the folds supply the
                   held-out data).
``wine``, ``breast_cancer``, ``iris``   scikit-learn tabular classification sets, raw
                   (unstandardized) features ``(N, D)`` float32, no test split.
``diabetes``       scikit-learn diabetes regression, raw (``scaled=False``) features ``(442, 10)``,
                   float64 targets, no test split. Feature scaling belongs to the model pipeline,
                   fitted on training folds only.
``mnist``, ``fashionmnist``   the four IDX gzip files, from torchvision's mirrors and with
                   torchvision's md5 checksums; ``(N, 1, 28, 28)`` in [0, 1] (pixel / 255).
``cifar10``, ``cifar100``   the "python version" tar.gz (pickled batches), torchvision's URL and
                   md5; ``(N, 3, 32, 32)`` in [0, 1]; CIFAR-100 uses the 100 fine labels.
``openml-<name-or-id>``   dispatched to :func:`mfoml.openml.prepare_openml`.

Downloads
---------
Raw files go to ``download_dir/<name>/`` (default: ``<out_dir>/../_downloads/<name>/``). Each
file is streamed into a temporary file next to its destination while its checksum is computed,
checked against the announced ``Content-Length`` (a cut connection is reported as truncated) and
against the expected checksum, and only then renamed into place; on any failure the temporary
file is removed. A raw file that then fails to parse is deleted as well, so a later run
downloads it again instead of trusting it. ``mirror`` replaces the base URL (the same file names
are fetched from it); ``checksums`` replaces the expected checksums per file name (md5 or
sha256 hex digests, told apart by length), e.g. for a mirror serving other files. Checksums are
always verified. Progress (bytes done / total) goes to ``log`` (default: stderr).

Options
-------
``grayscale``      RGB images become one channel with the ITU-R BT.601 luma weights
                   ``Y = 0.299 R + 0.587 G + 0.114 B`` applied to the stored [0, 1] values (no
                   gamma linearization, as PIL's ``convert("L")``); a no-op for one-channel
                   images; an error for non-image sets.
``per_class_cap``  keep at most ``n`` training samples per class, drawn uniformly without
                   replacement with ``numpy.random.default_rng(seed)`` (classes in increasing
                   label order), kept in their original order; classes with fewer samples are
                   kept whole. The test split is not touched. Classification only.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import io
import os
import pickle
import random
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfoml.io import atomic_path, atomic_save_npy, atomic_write_json, read_json

__all__ = [
    "DATASETS",
    "EMBEDDED",
    "DOWNLOADED",
    "OPENML_PREFIX",
    "Dataset",
    "DownloadError",
    "DataFormatError",
    "IntegrityError",
    "prepare_dataset",
    "load_dataset",
    "download_file",
    "file_checksum",
    "read_idx_gz",
    "read_cifar_archive",
    "to_grayscale",
    "per_class_subset",
]

EMBEDDED: tuple[str, ...] = ("mnist1d", "digits", "wine", "breast_cancer", "iris", "diabetes")
DOWNLOADED: tuple[str, ...] = ("mnist", "fashionmnist", "cifar10", "cifar100")
DATASETS: tuple[str, ...] = EMBEDDED + DOWNLOADED
OPENML_PREFIX = "openml-"
FORMAT_VERSION = 1

# ITU-R BT.601 luma weights for R, G, B.
LUMA_BT601 = (0.299, 0.587, 0.114)

Log = Callable[[str], None]


class DownloadError(RuntimeError):
    """A download failed: unreachable, truncated, or with a wrong checksum."""


class DataFormatError(ValueError):
    """A raw file is not in the format it should be (bad gzip, bad IDX header, bad pickle...)."""


class IntegrityError(RuntimeError):
    """A normalized data set directory does not match its ``meta.json``."""


@dataclass
class Dataset:
    """A loaded normalized data set.

    Attributes
    ----------
    x_train : float32 ``(N, *input_shape)``.
    y_train : int64 ``(N,)`` (classification) or float64 ``(N,)`` (regression).
    x_test, y_test : the same for the official test split, or ``None``.
    meta : the content of ``meta.json``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def n_classes(self) -> int | None:
        n = self.meta.get("n_classes")
        return None if n is None else int(n)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.meta["input_shape"])

    @property
    def has_test(self) -> bool:
        return self.x_test is not None


@dataclass
class _Raw:
    """A data set as read from its source, before options are applied."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    task: str
    kind: str
    source: Any
    n_classes: int | None
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    raw_files: list[dict[str, str]] | None = None


def _stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Checksums and downloads
# ----------------------------------------------------------------------------------------------


def _algorithm_for(digest: str) -> str:
    lengths = {32: "md5", 64: "sha256"}
    try:
        return lengths[len(digest)]
    except KeyError:
        raise ValueError(
            f"checksum {digest!r}: expected an md5 (32 hex digits) or sha256 (64 hex digits)"
        ) from None


def file_checksum(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file's content (read in 1 MiB chunks).

    Parameters
    ----------
    path : the file.
    algorithm : any :mod:`hashlib` name, e.g. ``"sha256"`` or ``"md5"``.
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fmt_mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    expected: str,
    *,
    timeout: float = 60.0,
    log: Log | None = None,
) -> Path:
    """Download ``url`` to ``dest`` and verify its checksum; reuse a valid existing ``dest``.

    The body is streamed into a temporary file next to ``dest`` (hashing it on the way), and
    renamed onto ``dest`` only when the number of bytes matches the announced
    ``Content-Length`` and the checksum matches ``expected``. On failure nothing is left at
    ``dest`` (a previous file there is removed if it did not match) and :class:`DownloadError`
    names the file, the URL and what is wrong.

    Parameters
    ----------
    url : the source URL.
    dest : the destination file.
    expected : md5 (32 hex digits) or sha256 (64 hex digits) of the file.
    timeout : socket timeout in seconds.
    log : progress sink (default: stderr); bytes done / total are reported about every 10 %.

    Returns
    -------
    The path of the verified file.
    """
    log = log or _stderr_log
    dest = Path(dest)
    expected = expected.lower()
    algorithm = _algorithm_for(expected)
    if dest.is_file():
        if file_checksum(dest, algorithm) == expected:
            log(f"{dest.name}: already downloaded, {algorithm} verified")
            return dest
        log(f"{dest.name}: existing file has a wrong {algorithm}, downloading it again")
        dest.unlink()

    h = hashlib.new(algorithm)
    received = 0
    total: int | None = None
    with atomic_path(dest, suffix=".part") as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
                length = resp.headers.get("Content-Length")
                total = int(length) if length is not None else None
                log(
                    f"{dest.name}: downloading {url}"
                    + (f" ({_fmt_mb(total)})" if total is not None else "")
                )
                next_report = 0.1
                last_time = time.monotonic()
                while True:
                    chunk = resp.read(1 << 16)
                    if not chunk:
                        break
                    out.write(chunk)
                    h.update(chunk)
                    received += len(chunk)
                    now = time.monotonic()
                    if total:
                        frac = received / total
                        if frac >= next_report or now - last_time > 10:
                            log(
                                f"{dest.name}: {_fmt_mb(received)} / {_fmt_mb(total)} "
                                f"({100 * frac:.0f}%)"
                            )
                            next_report = frac + 0.1
                            last_time = now
                    elif now - last_time > 10:
                        log(f"{dest.name}: {_fmt_mb(received)}")
                        last_time = now
        except urllib.error.HTTPError as exc:
            raise DownloadError(
                f"{dest.name}: download from {url} failed: HTTP {exc.code} {exc.reason}"
            ) from exc
        except urllib.error.URLError as exc:
            raise DownloadError(f"{dest.name}: download from {url} failed: {exc.reason}") from exc
        except (OSError, ValueError, http.client.HTTPException) as exc:  # cut, reset, timeout
            raise DownloadError(
                f"{dest.name}: download from {url} was truncated or interrupted after "
                f"{received} bytes" + (f" of {total}" if total is not None else "") + f": {exc!r}"
            ) from exc
        if total is not None and received != total:
            raise DownloadError(
                f"{dest.name}: download from {url} is truncated: received {received} bytes of "
                f"the {total} announced"
            )
        got = h.hexdigest()
        if got != expected:
            raise DownloadError(
                f"{dest.name}: checksum mismatch for the file downloaded from {url}: expected "
                f"{algorithm} {expected}, got {got} ({received} bytes); the file is corrupted "
                "or not the expected one"
            )
    log(f"{dest.name}: {_fmt_mb(received)} downloaded, {algorithm} verified")
    return dest


# ----------------------------------------------------------------------------------------------
# Parsers of the real formats
# ----------------------------------------------------------------------------------------------

# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/).
_IDX_TYPES = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def _gunzip(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except gzip.BadGzipFile as exc:
        raise DataFormatError(f"{path}: not a gzip file ({exc})") from exc
    except EOFError as exc:
        raise DataFormatError(f"{path}: gzip stream is truncated ({exc})") from exc
    except zlib.error as exc:
        raise DataFormatError(f"{path}: corrupted gzip data ({exc})") from exc


def read_idx_gz(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a gzip-compressed IDX file (the MNIST / FashionMNIST format).

    Header: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions, then one big-endian uint32 per
    dimension; then the data, big-endian, row-major.

    Returns
    -------
    The array, with the file's shape, in native byte order.

    Raises
    ------
    DataFormatError naming the file: not gzip, truncated gzip, bad magic number, or a data size
    that does not match the dimensions.
    """
    path = Path(path)
    data = _gunzip(path)
    if len(data) < 4:
        raise DataFormatError(f"{path}: IDX header truncated ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DataFormatError(
            f"{path}: bad IDX magic number {data[:4].hex()} (expected 0000<type><ndim>)"
        )
    ndim = data[3]
    if ndim == 0:
        raise DataFormatError(f"{path}: IDX file declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{path}: IDX header truncated ({len(data)} bytes, need {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        raise DataFormatError(
            f"{path}: IDX data size mismatch: dimensions {shape} of {dtype} need {expected} "
            f"bytes, found {found}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batches: only plain containers and numpy arrays may be built."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden global {module}.{name} in a CIFAR batch")


def _unpickle_batch(raw: bytes, where: str) -> dict[str, Any]:
    try:
        obj = _CifarUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as exc:
        raise DataFormatError(f"{where}: not a valid CIFAR pickle ({exc!r})") from exc
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _batch_arrays(batch: dict[str, Any], label_key: str, where: str) -> tuple[np.ndarray, ...]:
    for key in ("data", label_key):
        if key not in batch:
            raise DataFormatError(f"{where}: key {key!r} missing (keys: {sorted(batch)})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataFormatError(
            f"{where}: 'data' must be uint8 (n, 3072), found {data.dtype} {data.shape}"
        )
    if labels.shape != (data.shape[0],):
        raise DataFormatError(
            f"{where}: {data.shape[0]} images but {labels.shape[0]} labels in {label_key!r}"
        )
    return data, labels


def read_cifar_archive(
    path: str | os.PathLike[str], variant: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read the CIFAR-10 or CIFAR-100 "python version" tar.gz.

    CIFAR-10: ``cifar-10-batches-py/data_batch_1..5``, ``test_batch`` (keys ``data`` uint8
    ``(n, 3072)`` as R, G, B planes of 32x32 row-major, ``labels``) and ``batches.meta``
    (``label_names``). CIFAR-100: ``cifar-100-python/train``, ``test`` (``fine_labels``) and
    ``meta`` (``fine_label_names``).

    Parameters
    ----------
    path : the archive.
    variant : ``"cifar10"`` or ``"cifar100"``.

    Returns
    -------
    ``(x_train, y_train, x_test, y_test, class_names)`` with images uint8 ``(N, 3, 32, 32)``
    and labels int64 ``(N,)``.
    """
    path = Path(path)
    if variant == "cifar10":
        folder, train, test = (
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            ["test_batch"],
        )
        meta_name, names_key, label_key = "batches.meta", "label_names", "labels"
    elif variant == "cifar100":
        folder, train, test = "cifar-100-python", ["train"], ["test"]
        meta_name, names_key, label_key = "meta", "fine_label_names", "fine_labels"
    else:
        raise ValueError(f"unknown CIFAR variant {variant!r} (cifar10 or cifar100)")

    members: dict[str, bytes] = {}
    wanted = {f"{folder}/{n}" for n in [*train, *test, meta_name]}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name in wanted and member.isfile():
                    fh = tar.extractfile(member)
                    if fh is None:
                        raise DataFormatError(f"{path}: cannot read member {name}")
                    members[name] = fh.read()
    except tarfile.ReadError as exc:
        raise DataFormatError(f"{path}: not a readable tar.gz archive ({exc})") from exc
    except gzip.BadGzipFile as exc:
        raise DataFormatError(f"{path}: not a gzip file ({exc})") from exc
    except (EOFError, zlib.error) as exc:
        raise DataFormatError(f"{path}: archive is truncated or corrupted ({exc})") from exc
    missing = sorted(wanted - set(members))
    if missing:
        raise DataFormatError(f"{path}: archive lacks {', '.join(missing)}")

    def read_split(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for n in names:
            where = f"{path}:{folder}/{n}"
            x, y = _batch_arrays(_unpickle_batch(members[f"{folder}/{n}"], where), label_key, where)
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs).reshape(-1, 3, 32, 32), np.concatenate(ys)

    x_train, y_train = read_split(train)
    x_test, y_test = read_split(test)
    where = f"{path}:{folder}/{meta_name}"
    meta = _unpickle_batch(members[f"{folder}/{meta_name}"], where)
    if names_key not in meta:
        raise DataFormatError(f"{where}: key {names_key!r} missing (keys: {sorted(meta)})")
    class_names = [str(n) for n in meta[names_key]]
    for split, y in (("train", y_train), ("test", y_test)):
        if y.size and (y.min() < 0 or y.max() >= len(class_names)):
            raise DataFormatError(
                f"{path}: {split} labels outside [0, {len(class_names)}) "
                f"(min {y.min()}, max {y.max()})"
            )
    return x_train, y_train, x_test, y_test, class_names


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------


def _load_mnist1d() -> _Raw:
    from importlib.metadata import version

    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    # make_dataset reseeds the global `random` and `numpy.random` generators: restore them.
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    try:
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
    return _Raw(
        x_train=np.asarray(data["x"], dtype=np.float32)[:, None, :],
        y_train=np.asarray(data["y"], dtype=np.int64),
        x_test=np.asarray(data["x_test"], dtype=np.float32)[:, None, :],
        y_test=np.asarray(data["y_test"], dtype=np.int64),
        task="classification",
        kind="signal",
        source=(
            f"mnist1d {version('mnist1d')}: mnist1d.data.make_dataset(get_dataset_args()), "
            f"default arguments, seed {args.seed}"
        ),
        n_classes=10,
        class_names=[str(i) for i in range(10)],
    )


def _load_sklearn(name: str) -> _Raw:
    import sklearn
    from sklearn import datasets as skd

    loaders = {
        "digits": skd.load_digits,
        "wine": skd.load_wine,
        "breast_cancer": skd.load_breast_cancer,
        "iris": skd.load_iris,
        "diabetes": lambda: skd.load_diabetes(scaled=False),
    }
    bunch = loaders[name]()
    source = f"scikit-learn {sklearn.__version__}: sklearn.datasets.load_{name}()"
    if name == "diabetes":
        return _Raw(
            x_train=np.asarray(bunch.data, dtype=np.float32),
            y_train=np.asarray(bunch.target, dtype=np.float64),
            x_test=None,
            y_test=None,
            task="regression",
            kind="tabular",
            source=source.replace("()", "(scaled=False)"),
            n_classes=None,
            feature_names=[str(f) for f in bunch.feature_names],
        )
    y = np.asarray(bunch.target, dtype=np.int64)
    class_names = [str(c) for c in bunch.target_names]
    if name == "digits":
        x = (np.asarray(bunch.images, dtype=np.float64) / 16.0).astype(np.float32)[:, None]
        return _Raw(x, y, None, None, "classification", "image", source, 10, class_names)
    return _Raw(
        x_train=np.asarray(bunch.data, dtype=np.float32),
        y_train=y,
        x_test=None,
        y_test=None,
        task="classification",
        kind="tabular",
        source=source,
        n_classes=len(class_names),
        class_names=class_names,
        feature_names=[str(f) for f in bunch.feature_names],
    )


def _expected_checksum(fname: str, default: str, checksums: Mapping[str, str] | None) -> str:
    if checksums and fname in checksums:
        return checksums[fname]
    return default


def _fetch(
    fname: str,
    bases: list[str],
    dest_dir: Path,
    expected: str,
    *,
    timeout: float,
    log: Log,
) -> tuple[Path, str]:
    """Try each base URL in turn; return the verified file and the URL it came from."""
    errors = []
    for base in bases:
        url = base.rstrip("/") + "/" + fname
        try:
            return download_file(url, dest_dir / fname, expected, timeout=timeout, log=log), url
        except DownloadError as exc:
            errors.append(str(exc))
            if len(bases) > 1:
                log(f"{fname}: {exc}; trying the next mirror")
    raise DownloadError("; ".join(errors))


def _parse_or_discard(path: Path, parse: Callable[[], Any]) -> Any:
    """Run ``parse``; on a format error delete the raw file so no later run trusts it."""
    try:
        return parse()
    except DataFormatError:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise


def _load_idx_set(
    name: str,
    dest_dir: Path,
    mirror: str | None,
    checksums: Mapping[str, str] | None,
    timeout: float,
    log: Log,
) -> _Raw:
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashionmnist": tvd.FashionMNIST}[name]
    bases = [mirror] if mirror else list(cls.mirrors)
    arrays: dict[str, np.ndarray] = {}
    raw_files = []
    for fname, md5 in cls.resources:
        expected = _expected_checksum(fname, md5, checksums)
        path, url = _fetch(fname, bases, dest_dir, expected, timeout=timeout, log=log)
        raw_files.append({"file": fname, "url": url, "checksum": expected})
        arrays[fname] = _parse_or_discard(path, lambda p=path: read_idx_gz(p))

    def images(fname: str) -> np.ndarray:
        a = arrays[fname]
        if a.ndim != 3 or a.dtype != np.uint8:
            raise DataFormatError(
                f"{dest_dir / fname}: expected uint8 images (N, H, W), found {a.dtype} {a.shape}"
            )
        return (a.astype(np.float32) / np.float32(255.0))[:, None]

    def labels(fname: str, n: int) -> np.ndarray:
        a = arrays[fname]
        if a.ndim != 1 or a.shape[0] != n:
            raise DataFormatError(
                f"{dest_dir / fname}: expected {n} labels (N,), found shape {a.shape}"
            )
        if a.size and (a.min() < 0 or a.max() >= len(cls.classes)):
            raise DataFormatError(f"{dest_dir / fname}: labels outside [0, {len(cls.classes)})")
        return a.astype(np.int64)

    (tr_x, _), (tr_y, _), (te_x, _), (te_y, _) = cls.resources
    x_train, x_test = images(tr_x), images(te_x)
    return _Raw(
        x_train=x_train,
        y_train=labels(tr_y, len(x_train)),
        x_test=x_test,
        y_test=labels(te_y, len(x_test)),
        task="classification",
        kind="image",
        source=[f["url"] for f in raw_files],
        n_classes=len(cls.classes),
        class_names=list(cls.classes),
        raw_files=raw_files,
    )


def _load_cifar(
    name: str,
    dest_dir: Path,
    mirror: str | None,
    checksums: Mapping[str, str] | None,
    timeout: float,
    log: Log,
) -> _Raw:
    import torchvision.datasets as tvd

    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]
    fname = cls.filename
    default_base = cls.url[: -len(fname)]
    bases = [mirror] if mirror else [default_base]
    expected = _expected_checksum(fname, cls.tgz_md5, checksums)
    path, url = _fetch(fname, bases, dest_dir, expected, timeout=timeout, log=log)
    log(f"{fname}: parsing")
    x_train, y_train, x_test, y_test, class_names = _parse_or_discard(
        path, lambda: read_cifar_archive(path, name)
    )
    scale = np.float32(255.0)
    return _Raw(
        x_train=x_train.astype(np.float32) / scale,
        y_train=y_train,
        x_test=x_test.astype(np.float32) / scale,
        y_test=y_test,
        task="classification",
        kind="image",
        source=url,
        n_classes=len(class_names),
        class_names=class_names,
        raw_files=[{"file": fname, "url": url, "checksum": expected}],
    )


# ----------------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------------


def to_grayscale(x: np.ndarray) -> np.ndarray:
    """Convert RGB images to one luma channel (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B).

    Parameters
    ----------
    x : ``(N, 3, H, W)`` images in [0, 1] (one-channel ``(N, 1, H, W)`` is returned unchanged).

    Returns
    -------
    float32 ``(N, 1, H, W)`` in [0, 1].
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"grayscale: expected images (N, 3, H, W) or (N, 1, H, W), got {x.shape}")
    if x.shape[1] == 1:
        return x.astype(np.float32, copy=False)
    w = np.asarray(LUMA_BT601, dtype=np.float32)
    return np.einsum("nchw,c->nhw", x.astype(np.float32, copy=False), w)[:, None].astype(np.float32)


def per_class_subset(y: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Indices of a seeded random subset with at most ``cap`` samples per class.

    Parameters
    ----------
    y : int ``(N,)`` labels.
    cap : maximum number of samples kept per class (>= 1).
    seed : seed of ``numpy.random.default_rng``; classes are drawn in increasing label order.

    Returns
    -------
    int64 ``(M,)`` sorted indices into ``y``.
    """
    if isinstance(cap, bool) or not isinstance(cap, int | np.integer) or cap < 1:
        raise ValueError(f"per_class_cap must be a positive integer, got {cap!r}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if idx.size > cap:
            idx = rng.choice(idx, size=int(cap), replace=False)
        keep.append(idx)
    return np.sort(np.concatenate(keep)).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------


def _unknown(name: str) -> ValueError:
    return ValueError(
        f"unknown data set {name!r}; known: {', '.join(DATASETS)}, or '{OPENML_PREFIX}<name-or-id>'"
    )


def prepare_dataset(
    name: str,
    out_dir: str | os.PathLike[str],
    *,
    download_dir: str | os.PathLike[str] | None = None,
    mirror: str | None = None,
    grayscale: bool = False,
    per_class_cap: int | None = None,
    seed: int = 0,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    log: Log | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """Generate or download data set ``name`` and write it to ``out_dir`` in normalized format.

    Parameters
    ----------
    name : one of :data:`DATASETS`, or ``"openml-<name-or-id>"`` (handled by
        :func:`mfoml.openml.prepare_openml`, which receives ``out_dir``, ``seed``, the options
        that are set and ``**kw``).
    out_dir : the normalized directory (``resources/data/{name}``).
    download_dir : raw downloads go to ``download_dir/<name>/``; default
        ``<out_dir>/../_downloads``.
    mirror : base URL replacing the official ones (the same file names are requested).
    grayscale : convert RGB images to one BT.601 luma channel.
    per_class_cap : keep at most this many training samples per class (seeded random subset).
    seed : seed of the ``per_class_cap`` subset.
    checksums : ``{raw file name: md5 or sha256}`` overriding torchvision's md5s.
    timeout : socket timeout of downloads, seconds.
    log : progress sink (default: stderr).

    Returns
    -------
    The metadata written to ``meta.json``.
    """
    log = log or _stderr_log
    if not isinstance(name, str):
        raise _unknown(repr(name))
    if name.startswith(OPENML_PREFIX):
        from mfoml.openml import prepare_openml

        if grayscale:
            raise ValueError(f"{name}: grayscale applies to image data sets only")
        extra: dict[str, Any] = {"seed": seed, **kw}
        if download_dir is not None:
            extra["download_dir"] = download_dir
        if mirror is not None:
            extra["mirror"] = mirror
        if per_class_cap is not None:
            extra["per_class_cap"] = per_class_cap
        return prepare_openml(name, out_dir, **extra)
    if name not in DATASETS:
        raise _unknown(name)
    if kw:
        raise TypeError(f"prepare_dataset({name!r}): unexpected options {sorted(kw)}")

    out_dir = Path(out_dir)
    if name in DOWNLOADED:
        base = Path(download_dir) if download_dir is not None else out_dir.parent / "_downloads"
        dest_dir = base / name
        dest_dir.mkdir(parents=True, exist_ok=True)
        if name in ("mnist", "fashionmnist"):
            raw = _load_idx_set(name, dest_dir, mirror, checksums, timeout, log)
        else:
            raw = _load_cifar(name, dest_dir, mirror, checksums, timeout, log)
    elif name == "mnist1d":
        log("mnist1d: generating with the mnist1d package")
        raw = _load_mnist1d()
    else:
        raw = _load_sklearn(name)

    x_train, y_train, x_test = raw.x_train, raw.y_train, raw.x_test
    if grayscale:
        if raw.kind != "image":
            raise ValueError(f"{name}: grayscale applies to image data sets only ({raw.kind})")
        x_train = to_grayscale(x_train)
        x_test = None if x_test is None else to_grayscale(x_test)
    source_index = None
    if per_class_cap is not None:
        if raw.task != "classification":
            raise ValueError(f"{name}: per_class_cap applies to classification data sets only")
        source_index = per_class_subset(y_train, per_class_cap, seed)
        x_train, y_train = x_train[source_index], y_train[source_index]
        log(f"{name}: per_class_cap={per_class_cap} keeps {len(y_train)} of {len(raw.y_train)}")

    arrays: dict[str, np.ndarray | None] = {
        "x_train.npy": np.ascontiguousarray(x_train, dtype=np.float32),
        "y_train.npy": y_train,
        "x_test.npy": None if x_test is None else np.ascontiguousarray(x_test, dtype=np.float32),
        "y_test.npy": raw.y_test,
        "train_source_index.npy": source_index,
    }
    meta = {
        "name": name,
        "source": raw.source,
        "task": raw.task,
        "kind": raw.kind,
        "n_classes": raw.n_classes,
        "class_names": raw.class_names,
        "feature_names": raw.feature_names,
        "input_shape": list(x_train.shape[1:]),
        "n_train": int(len(y_train)),
        "n_test": 0 if raw.y_test is None else int(len(raw.y_test)),
        "options": {"grayscale": bool(grayscale), "per_class_cap": per_class_cap, "seed": seed},
        "raw_files": raw.raw_files,
        "format_version": FORMAT_VERSION,
    }
    return write_normalized(out_dir, arrays, meta, log=log)


def write_normalized(
    out_dir: str | os.PathLike[str],
    arrays: Mapping[str, np.ndarray | None],
    meta: dict[str, Any],
    *,
    log: Log | None = None,
) -> dict[str, Any]:
    """Write arrays and then ``meta.json`` (with sha256 checksums) into ``out_dir``.

    An existing ``meta.json`` is removed first, so the directory is untrusted while it is being
    rewritten; files mapped to ``None`` are removed if present; every file is written atomically
    and ``meta.json`` last. Also usable by other data sources (e.g. :mod:`mfoml.openml`).

    Parameters
    ----------
    out_dir : the normalized directory.
    arrays : ``{file name: array or None}``.
    meta : metadata; ``checksums`` is filled in here.

    Returns
    -------
    The metadata written.
    """
    log = log or _stderr_log
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out_dir / "meta.json").unlink()
    checksums = {}
    for fname, arr in arrays.items():
        path = out_dir / fname
        if arr is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        atomic_save_npy(path, arr)
        checksums[fname] = file_checksum(path, "sha256")
    meta = {**meta, "checksums": checksums}
    atomic_write_json(out_dir / "meta.json", meta)
    log(f"{meta.get('name', out_dir.name)}: wrote {out_dir} ({', '.join(checksums)})")
    return meta


_REQUIRED_META = ("name", "task", "n_classes", "input_shape", "n_train", "n_test", "checksums")


def load_dataset(
    path: str | os.PathLike[str], verify: bool = True, *, mmap_mode: str | None = None
) -> Dataset:
    """Load a normalized data set directory written by :func:`prepare_dataset`.

    Parameters
    ----------
    path : the directory.
    verify : check every file's sha256 against ``meta.json`` (reads the files once more).
    mmap_mode : passed to :func:`numpy.load` (e.g. ``"r"``) for large sets.

    Raises
    ------
    FileNotFoundError : the directory has no ``meta.json`` (never completed) or lacks a file.
    IntegrityError : malformed ``meta.json``, a checksum mismatch, or arrays whose shapes
        disagree with the metadata.
    """
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path}: missing; the data set in {path} was never completed or is being "
            "rewritten (run prepare_dataset again)"
        )
    try:
        meta = read_json(meta_path)
    except ValueError as exc:
        raise IntegrityError(str(exc)) from exc
    missing_keys = [k for k in _REQUIRED_META if not isinstance(meta, dict) or k not in meta]
    if missing_keys:
        raise IntegrityError(f"{meta_path}: missing keys {missing_keys}")
    checksums = meta["checksums"]
    for required in ("x_train.npy", "y_train.npy"):
        if required not in checksums:
            raise IntegrityError(f"{meta_path}: no checksum recorded for {required}")
    for fname, digest in checksums.items():
        fpath = path / fname
        if not fpath.is_file():
            raise FileNotFoundError(f"{fpath}: missing (listed in {meta_path})")
        if verify:
            got = file_checksum(fpath, "sha256")
            if got != digest:
                raise IntegrityError(
                    f"{fpath}: sha256 mismatch: meta.json records {digest}, file has {got}; "
                    "the file was modified or is incomplete (run prepare_dataset again)"
                )

    def load(fname: str) -> np.ndarray | None:
        if fname not in checksums:
            return None
        try:
            return np.load(path / fname, mmap_mode=mmap_mode, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise IntegrityError(f"{path / fname}: not a readable .npy file ({exc})") from exc

    x_train, y_train = load("x_train.npy"), load("y_train.npy")
    x_test, y_test = load("x_test.npy"), load("y_test.npy")
    assert x_train is not None and y_train is not None
    shape = tuple(meta["input_shape"])
    for split, x, y, n in (
        ("train", x_train, y_train, meta["n_train"]),
        ("test", x_test, y_test, meta["n_test"]),
    ):
        if (x is None) != (y is None):
            raise IntegrityError(f"{path}: x_{split}.npy and y_{split}.npy must both be present")
        if x is None or y is None:
            if split == "test" and n:
                raise IntegrityError(f"{meta_path}: n_test={n} but no test arrays")
            continue
        if x.shape != (n, *shape) or y.shape != (n,):
            raise IntegrityError(
                f"{path}: {split} arrays have shapes {x.shape}, {y.shape}; meta.json says "
                f"{(n, *shape)} and ({n},)"
            )
    return Dataset(x_train, y_train, x_test, y_test, meta)
