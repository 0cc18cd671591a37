"""The built-in data set ``stl10``: STL-10 (Coates, Ng and Lee, 2011), labelled part.

Downloaded as the official binary tarball ``stl10_binary.tar.gz`` (torchvision's URL and md5,
through :func:`mfoml.data.download.fetch`: ``data.mirror`` and ``checksums`` apply as for
CIFAR), kept in ``download_dir/stl10/`` and parsed with :func:`read_stl10_archive`: the members
``stl10_binary/{train,test}_X.bin`` (uint8, each image 3 x 96 x 96 stored column-major, i.e.
channel, then column, then row) and ``{train,test}_y.bin`` (uint8 labels 1..10), plus
``class_names.txt`` when present. The unlabelled split (``unlabeled_X.bin``, 100000 images) is
not read. Stored as ``(N, 3, 96, 96)`` float32 in [0, 1] with labels 0..9: 5000 training
images (500 per class) and 8000 test images. ``grayscale`` and ``per_class_cap`` as for the
other image sets (:func:`mfoml.data.sources.prepare_builtin`).
"""

from __future__ import annotations

import logging
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mfoml.data.download import expected_checksum, fetch
from mfoml.data.formats import DataFormatError, parse_or_discard
from mfoml.data.store import FORMAT_VERSION, SourceInfo, register_source, write_normalized
from mfoml.data.subsample import per_class_subset

__all__ = ["CLASS_NAMES", "prepare_stl10", "read_stl10_archive"]

log = logging.getLogger(__name__)

URL = "http://ai.stanford.edu/~acoates/stl10/"
FILENAME = "stl10_binary.tar.gz"
MD5 = "91f7769df0f17e558f3565bffb0c7dfb"  # torchvision.datasets.STL10.tgz_md5
CLASS_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
SIDE = 96
_MEMBERS = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")


def read_stl10_archive(
    path: str | os.PathLike[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Parse ``stl10_binary.tar.gz``: ``x_train`` uint8 ``(N, 3, 96, 96)``, ``y_train`` int64
    ``(N,)`` in 0..9, ``x_test``, ``y_test``, class names. Members are found by base name.

    Raises :class:`DataFormatError` naming the archive: not a tar.gz, a member missing, a size
    that is not a whole number of images, label counts that differ from image counts, labels
    outside 1..10.
    """
    path = Path(path)
    raw: dict[str, bytes] = {}
    names = None
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and (base in _MEMBERS or base == "class_names.txt"):
                    fh = tar.extractfile(member)
                    assert fh is not None
                    raw[base] = fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataFormatError(f"{path}: not a readable tar.gz archive ({exc})") from exc
    missing = [m for m in _MEMBERS if m not in raw]
    if missing:
        raise DataFormatError(f"{path}: members {missing} missing from the archive")
    if "class_names.txt" in raw:
        names = [s.strip() for s in raw["class_names.txt"].decode().splitlines() if s.strip()]
    out = []
    for split in ("train", "test"):
        xb, yb = raw[f"{split}_X.bin"], raw[f"{split}_y.bin"]
        per = 3 * SIDE * SIDE
        if len(xb) % per:
            raise DataFormatError(
                f"{path}: {split}_X.bin has {len(xb)} bytes, not a multiple of {per} (3x96x96)"
            )
        x = np.frombuffer(xb, dtype=np.uint8).reshape(-1, 3, SIDE, SIDE)
        x = np.ascontiguousarray(x.transpose(0, 1, 3, 2))  # column-major -> (C, H, W)
        y = np.frombuffer(yb, dtype=np.uint8).astype(np.int64)
        if len(y) != len(x):
            raise DataFormatError(f"{path}: {split}_y.bin has {len(y)} labels for {len(x)} images")
        if len(y) and (y.min() < 1 or y.max() > 10):
            raise DataFormatError(f"{path}: {split}_y.bin has labels outside 1..10")
        out += [x, y - 1]
    if names is None or len(names) != 10:
        names = list(CLASS_NAMES)
    return out[0], out[1], out[2], out[3], names


def prepare_stl10(
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
    **_: Any,
) -> dict[str, Any]:
    """Download, verify and parse STL-10 into ``out_dir`` (options as
    :func:`mfoml.data.sources.prepare_builtin`); return the meta."""
    from mfoml.data.sources import to_grayscale

    out = Path(out_dir)
    base = Path(download_dir) if download_dir is not None else out.parent / "_downloads"
    dest = base / "stl10"
    dest.mkdir(parents=True, exist_ok=True)
    expected = expected_checksum(FILENAME, MD5, checksums)
    path, url = fetch(FILENAME, [mirror] if mirror else [URL], dest, expected, timeout=timeout)
    log.info("%s: parsing", FILENAME)
    x_tr8, y_tr, x_te8, y_te, names = parse_or_discard(path, lambda: read_stl10_archive(path))
    source_index = None
    if per_class_cap is not None:
        source_index = per_class_subset(y_tr, int(per_class_cap), seed)
        x_tr8, y_tr = x_tr8[source_index], y_tr[source_index]
    scale = np.float32(255.0)
    x_tr, x_te = x_tr8.astype(np.float32) / scale, x_te8.astype(np.float32) / scale
    if grayscale:
        x_tr, x_te = to_grayscale(x_tr), to_grayscale(x_te)
    meta = {
        "name": name,
        "source": url,
        "task": "classification",
        "kind": "image",
        "n_classes": 10,
        "class_names": names,
        "feature_names": None,
        "input_shape": [int(s) for s in x_tr.shape[1:]],
        "n_train": int(len(y_tr)),
        "n_test": int(len(y_te)),
        "options": {"grayscale": bool(grayscale), "per_class_cap": per_class_cap, "seed": seed},
        "raw_files": [{"file": FILENAME, "url": url, "checksum": expected}],
        "format_version": FORMAT_VERSION,
    }
    arrays: dict[str, np.ndarray | None] = {
        "x_train.npy": np.ascontiguousarray(x_tr),
        "y_train.npy": y_tr,
        "x_test.npy": np.ascontiguousarray(x_te),
        "y_test.npy": y_te,
        "train_source_index.npy": source_index,
    }
    return write_normalized(out, arrays, meta)


register_source(
    SourceInfo(
        name="stl10",
        prepare=prepare_stl10,
        task="classification",
        kind="image",
        class_counts=(500,) * 10,
        n_train=5000,
    )
)
