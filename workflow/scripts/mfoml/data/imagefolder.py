"""The ``imagefolder`` source: a folder of images in torchvision's ImageFolder layout.

``path/train/<class>/<image>`` and, optionally, ``path/test/<class>/<image>`` (classes are the
sorted sub-folder names of ``train/``, as ``torchvision.datasets.ImageFolder`` finds them;
images are the files ending in one of :data:`mfoml.data.files.IMAGE_EXTENSIONS`, searched
recursively in each class folder). Without a ``test/`` folder, ``test_fraction`` (default 0.2)
of the training images is held out, stratified and seeded. A test class that is not a training
class is an error.

Images are read with torchvision's Pillow loader (``torchvision.datasets.folder.pil_loader``:
RGB, so PNG, JPEG and the rest give 3 channels), resized to ``image_size`` (an int or
``[H, W]``; bilinear, antialiased) when it is set, otherwise all images must share one size,
converted to one BT.601 luma channel with ``grayscale`` (:func:`mfoml.data.sources.to_grayscale`),
and stored as float32 ``(N, C, H, W)`` in [0, 1] (pixel / 255) like the other image sets.
``meta["normalization"]`` holds the per-channel mean and standard deviation of the *training*
split (``{"mean": [C], "std": [C], "split": "train"}``): recorded for the user's own models
(e.g. a pretrained torchvision network's input normalization); the pipeline's networks read
the [0, 1] values as they read every other image set. A file that Pillow cannot read fails the
job naming the file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mfoml.data.files import DEFAULT_TEST_FRACTION, FileSourceError, image_files, resolve_path
from mfoml.data.store import FORMAT_VERSION, SourceInfo, register_source, write_normalized
from mfoml.data.subsample import per_class_subset

__all__ = ["image_size_of", "list_images", "prepare_imagefolder", "read_image"]

log = logging.getLogger(__name__)


def list_images(
    root: Path, classes: list[str] | None = None
) -> tuple[list[Path], np.ndarray, list[str]]:
    """The images of an ImageFolder split ``root`` (``root/<class>/...``): files, int64 labels
    ``(N,)`` and the class names (``classes`` when given, else the sorted sub-folders)."""
    if classes is None:
        classes = sorted(
            d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
    files: list[Path] = []
    labels: list[int] = []
    for k, cls in enumerate(classes):
        found = image_files(root / cls) if (root / cls).is_dir() else []
        files += found
        labels += [k] * len(found)
    return files, np.asarray(labels, dtype=np.int64), classes


def image_size_of(size: Any) -> tuple[int, int] | None:
    """``image_size`` as ``(H, W)`` (an int is square), or ``None``."""
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def read_image(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image as uint8 ``(3, H, W)`` (RGB, resized to ``size`` = ``(H, W)`` when given).

    Raises :class:`FileSourceError` naming the file when Pillow cannot read it.
    """
    from PIL import Image
    from torchvision.datasets.folder import pil_loader

    try:
        img = pil_loader(str(path))
    except Exception as exc:  # noqa: BLE001  (PIL raises many types)
        raise FileSourceError(f"{path}: not a readable image ({exc})") from exc
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def _stack(files: list[Path], size: tuple[int, int] | None, root: Path) -> np.ndarray:
    """uint8 ``(N, 3, H, W)`` of ``files``; images of different sizes without ``size`` are an
    error naming the two files and asking for ``image_size``."""
    out: np.ndarray | None = None
    for i, f in enumerate(files):
        a = read_image(f, size)
        if out is None:
            out = np.empty((len(files), *a.shape), dtype=np.uint8)
        elif a.shape != out.shape[1:]:
            raise FileSourceError(
                f"{f}: image of {a.shape[1]}x{a.shape[2]} pixels, but {files[0]} has "
                f"{out.shape[2]}x{out.shape[3]}; images in {root} differ in size: set "
                "image_size in the data set's variant"
            )
        out[i] = a
    assert out is not None
    return out


def prepare_imagefolder(
    name: str,
    out_dir: str | os.PathLike[str],
    *,
    files: dict[str, Any],
    grayscale: bool = False,
    per_class_cap: int | None = None,
    seed: int = 0,
    **_: Any,
) -> dict[str, Any]:
    """Write the ImageFolder ``files["path"]`` (module docstring) into ``out_dir``; return the
    meta. ``files`` also takes ``image_size`` and ``test_fraction``."""
    from mfoml.data.files import holdout_split
    from mfoml.data.sources import to_grayscale

    root = resolve_path(files["path"])
    size = image_size_of(files.get("image_size"))
    tr_files, y_tr, classes = list_images(root / "train")
    if len(classes) < 2:
        raise FileSourceError(f"{root / 'train'}: fewer than 2 class folders")
    test_dir = root / "test"
    if test_dir.is_dir():
        foreign = sorted(
            d.name
            for d in test_dir.iterdir()
            if d.is_dir() and not d.name.startswith(".") and d.name not in classes
        )
        if foreign:
            raise FileSourceError(
                f"{test_dir}: class folders {foreign} are not in {root / 'train'}"
            )
        te_files, y_te, _ = list_images(test_dir, classes)
        frac = None
    else:
        frac = float(files.get("test_fraction") or DEFAULT_TEST_FRACTION)
        tr, te = holdout_split(y_tr, fraction=frac, seed=seed)
        te_files, y_te = [tr_files[i] for i in te], y_tr[te]
        tr_files, y_tr = [tr_files[i] for i in tr], y_tr[tr]
    source_index = None
    if per_class_cap is not None:
        source_index = per_class_subset(y_tr, int(per_class_cap), seed)
        tr_files, y_tr = [tr_files[i] for i in source_index], y_tr[source_index]
    x_tr = _stack(tr_files, size, root)
    size = size or (int(x_tr.shape[2]), int(x_tr.shape[3]))
    x_te = _stack(te_files, size, root) if te_files else None
    scale = np.float32(255.0)
    xf_tr = x_tr.astype(np.float32) / scale
    xf_te = None if x_te is None else x_te.astype(np.float32) / scale
    if grayscale:
        xf_tr = to_grayscale(xf_tr)
        xf_te = None if xf_te is None else to_grayscale(xf_te)
    mean = xf_tr.mean(axis=(0, 2, 3), dtype=np.float64)
    std = xf_tr.std(axis=(0, 2, 3), dtype=np.float64)
    arrays: dict[str, np.ndarray | None] = {
        "x_train.npy": np.ascontiguousarray(xf_tr),
        "y_train.npy": y_tr,
        "x_test.npy": None if xf_te is None else np.ascontiguousarray(xf_te),
        "y_test.npy": None if xf_te is None else y_te,
        "train_source_index.npy": source_index,
    }
    meta = {
        "name": name,
        "source": f"imagefolder:{root}",
        "task": "classification",
        "kind": "image",
        "n_classes": len(classes),
        "class_names": classes,
        "feature_names": None,
        "input_shape": [int(s) for s in xf_tr.shape[1:]],
        "n_train": int(len(y_tr)),
        "n_test": 0 if xf_te is None else int(len(y_te)),
        "normalization": {"mean": mean.tolist(), "std": std.tolist(), "split": "train"},
        "options": {
            "path": files.get("path"),
            "image_size": files.get("image_size"),
            "test_fraction": frac,
            "grayscale": bool(grayscale),
            "per_class_cap": per_class_cap,
            "seed": seed,
        },
        "format_version": FORMAT_VERSION,
    }
    log.info(
        "%s: %s, %d classes, %d train / %d test images of %s",
        name,
        root,
        len(classes),
        meta["n_train"],
        meta["n_test"],
        meta["input_shape"],
    )
    return write_normalized(Path(out_dir), arrays, meta)


register_source(SourceInfo(name="imagefolder", prepare=prepare_imagefolder, kind="image"))
