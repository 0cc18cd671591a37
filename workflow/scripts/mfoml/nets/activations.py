"""Ordered per-layer activation dumps as memory-mappable float16 arrays.

:func:`dump_activations` runs the model once over a split, in order (no shuffling), in eval
mode, and writes into ``out_dir``:

``{layer}.npy``
    float16 ``(N, D_layer)``: the layer's output flattened per sample (C-order), possibly
    reduced (below). Created with ``np.lib.format.open_memmap`` and filled batch by batch.
``labels.npy``, ``predictions.npy``
    int64 ``(N,)``: the given labels and ``argmax`` of the logits, in the same order.
``labels_true.npy``
    int64 ``(N,)``, only when ``true_labels`` is given: the true labels of a split whose
    ``labels`` are noisy (the training split of a label-noise run); NCC means use them.
``labels_{set}.npy``
    int64 ``(N,)``, only when ``label_sets`` is given: further label sets of the same samples
    (e.g. CIFAR-100's ``coarse`` superclasses beside the ``fine`` labels), listed in the
    manifest's ``label_sets``; ``label_set`` names the primary labels.
``classifier_weight.npy``
    float32 ``(n_classes, D_penultimate)``: the final linear classifier (NC3 and NCC jobs read
    it from the dump, so they need neither the checkpoint nor torch). Absent for a network
    without a classifier (``model.has_classifier`` false: a self-supervised encoder), whose
    ``predictions.npy`` then holds -1, whose manifest says ``predictions: false`` and has
    ``n_classes`` and ``cross_entropy`` null.
``manifest.json``
    ``{layers: [{name, index, shape, dim, reduction}], n_samples, split, epoch, checkpoint,
    max_features, dtype, true_labels, penultimate_layer, n_classes, cross_entropy, label_set,
    label_sets, predictions}``:
    ``cross_entropy`` is the mean cross-entropy of the (float32) logits against ``labels`` in
    the same eval-mode pass, i.e. the loss that belongs with the accuracy of ``predictions``
    (``null`` when a label is not a class of the logits); ``index`` is the position in
    ``model.probe_layers``, ``shape`` the
    original per-sample shape, ``dim`` the stored width, ``reduction`` ``null`` or a dict
    (below).

Reduction of layers wider than ``max_features``
-----------------------------------------------
* ``(C, H, W)`` maps: adaptive average pooling (``F.adaptive_avg_pool2d``) to ``(h, w) =
  (min(H, s), min(W, s))`` with ``s`` the largest integer such that ``C * h * w <=
  max_features``; recorded as ``{"method": "adaptive_avg_pool2d", "output_size": [h, w],
  "original_dim": C*H*W}``.
* ``(C, L)`` maps: ``F.adaptive_avg_pool1d`` to ``l = min(L, max_features // C)``; recorded
  likewise with ``"adaptive_avg_pool1d"``.
* A map whose channel count alone exceeds the cap, and a non-spatial vector ``(D,)`` wider than
  the cap, cannot be pooled: ``ValueError`` naming the layer (raise the cap or drop the layer).

Memory: one batch of every requested layer plus the memory-mapped outputs; nothing grows with N.
NaN or inf in a layer (or a value overflowing float16) is a ``FloatingPointError`` naming the
layer. The dump is written into a temporary directory next to ``out_dir`` and renamed at the
end: a failed dump leaves no ``out_dir`` (and no temporary directory). Reading a dump needs no
torch: :mod:`mfoml.nets.dumps` (re-exported here).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mfoml.io import current_umask, replace_dir
from mfoml.nets.dumps import ActivationDump, open_activations
from mfoml.nets.models import ProbedModel, resolve_device
from mfoml.nets.probed import select_probe_layers

log = logging.getLogger(__name__)

__all__ = ["ActivationDump", "dump_activations", "open_activations", "plan_reduction"]

_FP16_MAX = float(np.finfo(np.float16).max)


def plan_reduction(name: str, shape: Sequence[int], max_features: int | None) -> dict | None:
    """The reduction applied to a layer of per-sample ``shape`` under the cap ``max_features``.

    Returns ``None`` (stored as is) or a dict ``{method, output_size, original_dim}`` (see the
    module docstring). Raises ``ValueError`` naming the layer when it cannot be reduced.
    """
    dim = math.prod(shape)
    if max_features is None or dim <= max_features:
        return None
    if len(shape) == 3:
        c, h, w = shape
        if c > max_features:
            raise ValueError(
                f"layer {name!r}: {c} channels exceed max_features={max_features}; "
                "cannot reduce by spatial pooling"
            )
        s = 1
        while s < max(h, w) and c * min(h, s + 1) * min(w, s + 1) <= max_features:
            s += 1
        return {
            "method": "adaptive_avg_pool2d",
            "output_size": [min(h, s), min(w, s)],
            "original_dim": dim,
        }
    if len(shape) == 2:
        c, length = shape
        if c > max_features:
            raise ValueError(
                f"layer {name!r}: {c} channels exceed max_features={max_features}; "
                "cannot reduce by pooling the length"
            )
        return {
            "method": "adaptive_avg_pool1d",
            "output_size": [min(length, max_features // c)],
            "original_dim": dim,
        }
    raise ValueError(
        f"layer {name!r}: a non-spatial layer of shape {tuple(shape)} ({dim} features) exceeds "
        f"max_features={max_features}; raise max_features or leave the layer out"
    )


def _reduce(t: torch.Tensor, reduction: dict | None) -> torch.Tensor:
    if reduction is None:
        return t.reshape(len(t), -1)
    if reduction["method"] == "adaptive_avg_pool2d":
        return F.adaptive_avg_pool2d(t, tuple(reduction["output_size"])).reshape(len(t), -1)
    return F.adaptive_avg_pool1d(t, reduction["output_size"][0]).reshape(len(t), -1)


def _stored_dim(shape: Sequence[int], reduction: dict | None) -> int:
    if reduction is None:
        return math.prod(shape)
    return int(shape[0]) * math.prod(reduction["output_size"])


def dump_activations(
    model: ProbedModel,
    x: Any,
    y: Any,
    out_dir: str | Path,
    *,
    layers: Sequence[str] | None = None,
    max_features: int | None = None,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    split: str = "train",
    epoch: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    overwrite: bool = True,
    true_labels: Any = None,
    label_set: str = "class",
    label_sets: Mapping[str, Any] | None = None,
) -> dict:
    """Dump the per-layer representations of ``x`` (one ordered pass, eval mode).

    Parameters
    ----------
    model : :class:`~mfoml.nets.models.ProbedModel`; moved to ``device`` (it stays there), its
        training flag is restored afterwards.
    x : array ``(N, *input_shape)`` (cast to float32 batch by batch, integer token ids to
        int64; a memmap is fine).
    y : int labels ``(N,)``.
    out_dir : destination directory (must not be inside a directory being renamed).
    layers : probe-layer names (``None``: all of ``model.probe_layers``), stored in model order.
    max_features : cap on the stored width per layer (``None``: no reduction).
    batch_size : samples per forward pass.
    device : ``"auto"`` (CUDA when available), ``"cpu"``, ...
    split, epoch, checkpoint : recorded in the manifest.
    overwrite : replace an existing ``out_dir`` (after the new dump is complete); otherwise an
        existing ``out_dir`` is a ``FileExistsError``.
    true_labels : int labels ``(N,)``, the true classes when ``y`` holds noisy labels (written
        as ``labels_true.npy``; ``ActivationDump.true_labels`` falls back to ``labels``).
    label_set : name of the label set of ``y`` (recorded in the manifest).
    label_sets : further label sets ``{name: int labels (N,)}`` of the same samples (written
        as ``labels_{name}.npy``).

    Returns
    -------
    dict, the manifest (also written as ``manifest.json``).
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (overwrite=False)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_features is not None and int(max_features) < 1:
        raise ValueError(f"max_features must be >= 1, got {max_features}")
    known = model.probe_layers
    wanted = select_probe_layers(known, layers)
    wanted = [la for la in known if la in set(wanted)]  # model order, no duplicates
    n = len(x)
    y_arr = np.asarray(y)
    if y_arr.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {y_arr.shape}")
    if n == 0:
        raise ValueError("cannot dump activations of an empty split")
    if not np.issubdtype(y_arr.dtype, np.integer):
        raise ValueError(f"y must hold integer class labels, got dtype {y_arr.dtype}")
    y_true = None
    if true_labels is not None:
        y_true = np.asarray(true_labels)
        if y_true.shape != (n,):
            raise ValueError(f"true_labels must have shape ({n},), got {y_true.shape}")
        if not np.issubdtype(y_true.dtype, np.integer):
            raise ValueError(f"true_labels must be integer labels, got dtype {y_true.dtype}")
    extra: dict[str, np.ndarray] = {}
    for set_name, arr in (label_sets or {}).items():
        a = np.asarray(arr)
        if not re.fullmatch(r"[A-Za-z0-9_]+", str(set_name)) or set_name == label_set:
            raise ValueError(
                f"label set name {set_name!r}: letters, digits, _ only, not {label_set!r}"
            )
        if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(
                f"label set {set_name!r} must be integer labels ({n},), got {a.dtype} {a.shape}"
            )
        extra[str(set_name)] = a.astype(np.int64)
    has_classifier = bool(getattr(model, "has_classifier", True))
    dev = resolve_device(device)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private; give it the usual mode
    was_training = model.training
    arrays: dict[str, np.memmap] = {}
    try:
        model.to(dev)
        model.eval()
        labels = np.lib.format.open_memmap(
            tmp / "labels.npy", mode="w+", dtype=np.int64, shape=(n,)
        )
        preds = np.lib.format.open_memmap(
            tmp / "predictions.npy", mode="w+", dtype=np.int64, shape=(n,)
        )
        entries: list[dict[str, Any]] = []
        ce_sum, n_classes = 0.0, None
        labels_fit = True
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                stop = min(n, start + batch_size)
                dtype = np.int64 if np.issubdtype(x.dtype, np.integer) else np.float32
                xb = torch.from_numpy(np.ascontiguousarray(x[start:stop], dtype=dtype)).to(dev)
                logits, feats = model.forward_features(xb, wanted)
                if not arrays:  # first batch: shapes, reductions, output files
                    for name in wanted:
                        shape = [int(s) for s in feats[name].shape[1:]]
                        red = plan_reduction(name, shape, max_features)
                        dim = _stored_dim(shape, red)
                        arrays[name] = np.lib.format.open_memmap(
                            tmp / f"{name}.npy", mode="w+", dtype=np.float16, shape=(n, dim)
                        )
                        entries.append(
                            {
                                "name": name,
                                "index": known.index(name),
                                "shape": shape,
                                "dim": dim,
                                "reduction": red,
                            }
                        )
                for entry in entries:
                    name = entry["name"]
                    t = feats[name].float()
                    if not bool(torch.isfinite(t).all()):
                        raise FloatingPointError(
                            f"layer {name!r}: NaN or inf in the activations of samples "
                            f"{start}..{stop - 1}"
                        )
                    flat = _reduce(t, entry["reduction"])
                    if float(flat.abs().max()) > _FP16_MAX:
                        raise FloatingPointError(
                            f"layer {name!r}: values beyond the float16 range (|v| > {_FP16_MAX}) "
                            f"in samples {start}..{stop - 1}"
                        )
                    arrays[name][start:stop] = flat.to(torch.float16).cpu().numpy()
                logits = logits.float()
                if not bool(torch.isfinite(logits).all()):
                    raise FloatingPointError(
                        f"layer 'logits': NaN or inf in samples {start}..{stop - 1}"
                    )
                labels[start:stop] = y_arr[start:stop]
                if not has_classifier:  # predicts nothing: -1, no cross-entropy
                    preds[start:stop] = -1
                    labels_fit = False
                    log.info("activations %s: %d/%d samples", split, stop, n)
                    continue
                preds[start:stop] = logits.argmax(1).cpu().numpy()
                n_classes = int(logits.shape[1])
                yb = y_arr[start:stop]
                labels_fit = labels_fit and int(yb.min()) >= 0 and int(yb.max()) < n_classes
                if labels_fit:
                    target = torch.from_numpy(np.asarray(yb, dtype=np.int64)).to(logits.device)
                    ce_sum += float(F.cross_entropy(logits, target, reduction="sum"))
                log.info("activations %s: %d/%d samples", split, stop, n)
        if y_true is not None:  # plain write: the whole directory is temporary
            np.save(tmp / "labels_true.npy", y_true.astype(np.int64))
        for set_name, arr in extra.items():
            np.save(tmp / f"labels_{set_name}.npy", arr)
        # the final linear classifier, so that NCC / NC3 jobs need no checkpoint (nor torch)
        if has_classifier:
            weight = model.classifier_weight().float().cpu().numpy()
            np.save(tmp / "classifier_weight.npy", weight)
        for arr in (*arrays.values(), labels, preds):
            arr.flush()
        del labels, preds
        arrays.clear()
        manifest = {
            "layers": entries,
            "n_samples": int(n),
            "split": split,
            "epoch": None if epoch is None else int(epoch),
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "max_features": None if max_features is None else int(max_features),
            "dtype": "float16",
            "true_labels": y_true is not None,
            "penultimate_layer": model.penultimate_layer,
            "n_classes": int(model.spec["n_classes"]) if has_classifier else None,
            "cross_entropy": ce_sum / n if labels_fit else None,
            "label_set": str(label_set),
            "label_sets": sorted(extra),
            "predictions": has_classifier,
        }
        # plain write: the whole directory is temporary until the rename below
        (tmp / "manifest.json").write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        replace_dir(tmp, out)
    except BaseException:
        arrays.clear()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        model.train(was_training)
    return manifest
