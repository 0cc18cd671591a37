"""The embedded and vision data sources, registered in the store's source registry.

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
                   md5; ``(N, 3, 32, 32)`` in [0, 1]; CIFAR-100 uses the 100 fine labels
                   (label set ``fine``) and keeps the 20 coarse ones as a second label set
                   (``y_train_coarse.npy``, ``y_test_coarse.npy``, label set ``coarse``).

(``openml-<name-or-id>`` is the source :mod:`mfoml.data.openml`.)

Downloads
---------
Raw files go to ``download_dir/<name>/`` (default: ``<out_dir>/../_downloads/<name>/``) through
:func:`mfoml.data.download.download_file` (streamed into a temporary file, checked against the
announced length and the expected checksum, then renamed into place). A raw file that then fails
to parse is deleted as well, so a later run downloads it again instead of trusting it.
``mirror`` replaces the base URL (the same file names are fetched from it); ``checksums``
replaces the expected checksums per file name (md5 or sha256 hex digests, told apart by length),
e.g. for a mirror serving other files. Checksums are always verified.

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

import logging
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfoml.data.download import expected_checksum, fetch
from mfoml.data.formats import DataFormatError, parse_or_discard, read_cifar_archive, read_idx_gz
from mfoml.data.store import FORMAT_VERSION, SourceInfo, register_source, write_normalized
from mfoml.data.subsample import per_class_subset

__all__ = ["DATASETS", "DOWNLOADED", "EMBEDDED", "prepare_builtin", "to_grayscale"]

log = logging.getLogger(__name__)

EMBEDDED: tuple[str, ...] = ("mnist1d", "digits", "wine", "breast_cancer", "iris", "diabetes")
DOWNLOADED: tuple[str, ...] = ("mnist", "fashionmnist", "cifar10", "cifar100")
DATASETS: tuple[str, ...] = EMBEDDED + DOWNLOADED

# ITU-R BT.601 luma weights for R, G, B.
LUMA_BT601 = (0.299, 0.587, 0.114)


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
    #: name of the primary label set (``y_train``/``y_test``), e.g. ``"fine"`` for CIFAR-100
    label_set: str | None = None
    #: further label sets of the same samples: ``{name: (y_train, y_test, class_names)}``
    extra_labels: dict[str, tuple[np.ndarray, np.ndarray | None, list[str]]] | None = None


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


def _load_idx_set(
    name: str,
    dest_dir: Path,
    mirror: str | None,
    checksums: Mapping[str, str] | None,
    timeout: float,
) -> _Raw:
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashionmnist": tvd.FashionMNIST}[name]
    bases = [mirror] if mirror else list(cls.mirrors)
    arrays: dict[str, np.ndarray] = {}
    raw_files = []
    for fname, md5 in cls.resources:
        expected = expected_checksum(fname, md5, checksums)
        path, url = fetch(fname, bases, dest_dir, expected, timeout=timeout)
        raw_files.append({"file": fname, "url": url, "checksum": expected})
        arrays[fname] = parse_or_discard(path, lambda p=path: read_idx_gz(p))

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
) -> _Raw:
    import torchvision.datasets as tvd

    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]
    coarse = name == "cifar100"
    fname = cls.filename
    default_base = cls.url[: -len(fname)]
    bases = [mirror] if mirror else [default_base]
    expected = expected_checksum(fname, cls.tgz_md5, checksums)
    path, url = fetch(fname, bases, dest_dir, expected, timeout=timeout)
    log.info("%s: parsing", fname)
    parsed = parse_or_discard(path, lambda: read_cifar_archive(path, name, coarse=coarse))
    x_train, y_train, x_test, y_test, class_names = parsed[:5]
    extra = {"coarse": parsed[5]} if coarse else None  # CIFAR-100's 20 superclasses
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
        label_set="fine" if coarse else None,
        extra_labels=extra,
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


def prepare_builtin(
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
) -> dict[str, Any]:
    """Generate or download the embedded or vision data set ``name`` into ``out_dir``.

    Parameters
    ----------
    name : one of :data:`DATASETS`.
    out_dir : the normalized directory (``resources/data/{name}``).
    download_dir : raw downloads go to ``download_dir/<name>/``; default
        ``<out_dir>/../_downloads``.
    mirror : base URL replacing the official ones (the same file names are requested).
    grayscale : convert RGB images to one BT.601 luma channel.
    per_class_cap : keep at most this many training samples per class (seeded random subset,
        :func:`mfoml.data.subsample.per_class_subset`).
    seed : seed of the ``per_class_cap`` subset.
    checksums : ``{raw file name: md5 or sha256}`` overriding torchvision's md5s.
    timeout : socket timeout of downloads, seconds.

    Returns
    -------
    The metadata written to ``meta.json``.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown built-in data set {name!r}; known: {', '.join(DATASETS)}")
    out_dir = Path(out_dir)
    if name in DOWNLOADED:
        base = Path(download_dir) if download_dir is not None else out_dir.parent / "_downloads"
        dest_dir = base / name
        dest_dir.mkdir(parents=True, exist_ok=True)
        if name in ("mnist", "fashionmnist"):
            raw = _load_idx_set(name, dest_dir, mirror, checksums, timeout)
        else:
            raw = _load_cifar(name, dest_dir, mirror, checksums, timeout)
    elif name == "mnist1d":
        log.info("mnist1d: generating with the mnist1d package")
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
        log.info(
            "%s: per_class_cap=%s keeps %d of %d",
            name,
            per_class_cap,
            len(y_train),
            len(raw.y_train),
        )

    arrays: dict[str, np.ndarray | None] = {
        "x_train.npy": np.ascontiguousarray(x_train, dtype=np.float32),
        "y_train.npy": y_train,
        "x_test.npy": None if x_test is None else np.ascontiguousarray(x_test, dtype=np.float32),
        "y_test.npy": raw.y_test,
        "train_source_index.npy": source_index,
    }
    label_sets: dict[str, Any] = {}
    for set_name, (ytr_set, yte_set, set_names) in (raw.extra_labels or {}).items():
        files = {"train": f"y_train_{set_name}.npy", "test": f"y_test_{set_name}.npy"}
        arrays[files["train"]] = ytr_set if source_index is None else ytr_set[source_index]
        arrays[files["test"]] = yte_set
        if yte_set is None:
            del files["test"]
        label_sets[set_name] = {
            "n_classes": len(set_names),
            "class_names": set_names,
            "files": files,
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
    if label_sets:
        meta["label_set"] = raw.label_set
        meta["label_sets"] = label_sets
    return write_normalized(out_dir, arrays, meta)


#: Training samples per class of the official training split of each classification set, known
#: without loading the data, so that the configuration can check ``folds.n_splits`` and the
#: sample minimums before any job. Embedded sets: counted from the data (tests/test_datasets.py
#: checks them); MNIST: the published counts of its 60000 training images; FashionMNIST, CIFAR10
#: and CIFAR100 are balanced (6000, 5000 and 500 per class).
CLASS_COUNTS: dict[str, tuple[int, ...]] = {
    "mnist1d": (398, 396, 411, 394, 394, 402, 401, 404, 402, 398),
    "digits": (178, 182, 177, 183, 181, 182, 181, 179, 174, 180),
    "wine": (59, 71, 48),
    "breast_cancer": (212, 357),
    "iris": (50, 50, 50),
    "mnist": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    "fashionmnist": (6000,) * 10,
    "cifar10": (5000,) * 10,
    "cifar100": (500,) * 100,
}
#: Training samples of the official training split.
N_TRAIN = {name: sum(c) for name, c in CLASS_COUNTS.items()} | {"diabetes": 442}

_KIND = {"mnist1d": "signal", "digits": "image", "wine": "tabular", "breast_cancer": "tabular"}
_KIND |= {"iris": "tabular", "diabetes": "tabular"} | {n: "image" for n in DOWNLOADED}
for _name in DATASETS:
    register_source(
        SourceInfo(
            name=_name,
            prepare=prepare_builtin,
            task="regression" if _name == "diabetes" else "classification",
            kind=_KIND[_name],
            class_counts=CLASS_COUNTS.get(_name),
            n_train=N_TRAIN[_name],
        )
    )
