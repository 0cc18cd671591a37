"""Parsers of the raw file formats the vision sources download.

- IDX gzip files (MNIST, FashionMNIST): :func:`read_idx_gz`.
- The CIFAR-10/100 "python version" tar.gz of pickled batches: :func:`read_cifar_archive`
  (a restricted unpickler that builds only plain containers and numpy arrays).

Every parser raises :class:`DataFormatError` naming the file and what is wrong;
:func:`parse_or_discard` deletes a raw file that fails to parse, so that a later run downloads
it again instead of trusting it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DataFormatError", "parse_or_discard", "read_cifar_archive", "read_idx_gz"]


class DataFormatError(ValueError):
    """A raw file is not in the format it should be (bad gzip, bad IDX header, bad pickle...)."""


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
    path: str | os.PathLike[str], variant: str, *, coarse: bool = False
) -> tuple[Any, ...]:
    """Read the CIFAR-10 or CIFAR-100 "python version" tar.gz.

    CIFAR-10: ``cifar-10-batches-py/data_batch_1..5``, ``test_batch`` (keys ``data`` uint8
    ``(n, 3072)`` as R, G, B planes of 32x32 row-major, ``labels``) and ``batches.meta``
    (``label_names``). CIFAR-100: ``cifar-100-python/train``, ``test`` (``fine_labels``, and
    ``coarse_labels``, the 20 superclasses) and ``meta`` (``fine_label_names``,
    ``coarse_label_names``).

    Parameters
    ----------
    path : the archive.
    variant : ``"cifar10"`` or ``"cifar100"``.
    coarse : CIFAR-100 only: also return the coarse labels (from the same parse).

    Returns
    -------
    ``(x_train, y_train, x_test, y_test, class_names)`` with images uint8 ``(N, 3, 32, 32)``
    and labels int64 ``(N,)`` (CIFAR-100: the fine labels); with ``coarse`` a sixth element
    ``(y_train_coarse, y_test_coarse, coarse_class_names)``.
    """
    path = Path(path)
    if coarse and variant != "cifar100":
        raise ValueError(f"coarse labels exist for cifar100 only, not {variant!r}")
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

    coarse_key = "coarse_labels"

    def read_split(names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        xs, ys, cs = [], [], []
        for n in names:
            where = f"{path}:{folder}/{n}"
            batch = _unpickle_batch(members[f"{folder}/{n}"], where)
            x, y = _batch_arrays(batch, label_key, where)
            xs.append(x)
            ys.append(y)
            if coarse:
                cs.append(_batch_arrays(batch, coarse_key, where)[1])
        c = np.concatenate(cs) if coarse else None
        return np.concatenate(xs).reshape(-1, 3, 32, 32), np.concatenate(ys), c

    x_train, y_train, c_train = read_split(train)
    x_test, y_test, c_test = read_split(test)
    where = f"{path}:{folder}/{meta_name}"
    meta = _unpickle_batch(members[f"{folder}/{meta_name}"], where)

    def names_of(key: str, y_tr: np.ndarray, y_te: np.ndarray) -> list[str]:
        if key not in meta:
            raise DataFormatError(f"{where}: key {key!r} missing (keys: {sorted(meta)})")
        names = [str(n) for n in meta[key]]
        for split, y in (("train", y_tr), ("test", y_te)):
            if y.size and (y.min() < 0 or y.max() >= len(names)):
                raise DataFormatError(
                    f"{path}: {split} labels outside [0, {len(names)}) "
                    f"(min {y.min()}, max {y.max()})"
                )
        return names

    class_names = names_of(names_key, y_train, y_test)
    if not coarse:
        return x_train, y_train, x_test, y_test, class_names
    assert c_train is not None and c_test is not None
    coarse_names = names_of("coarse_label_names", c_train, c_test)
    return x_train, y_train, x_test, y_test, class_names, (c_train, c_test, coarse_names)


def parse_or_discard(path: Path, parse: Callable[[], Any]) -> Any:
    """Run ``parse``; on a format error delete the raw file so no later run trusts it."""
    try:
        return parse()
    except DataFormatError:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise
