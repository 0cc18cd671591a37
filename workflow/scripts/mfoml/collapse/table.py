"""Per-layer table of NCC and neural-collapse metrics over an activation dump.

:func:`layer_table` gives one row per layer of a dump written by
:func:`mfoml.nets.activations.dump_activations` (see ``docs/architecture.md``); it needs only
the :class:`ActivationDumpLike` protocol, so the collapse layer does not import the networks.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from mfoml.collapse.measures import collapse_metrics
from mfoml.collapse.streaming import (
    Features,
    NonFiniteFeaturesError,
    Scan,
    as_label_array,
    check_chunk_size,
    is_torch,
    iter_feature_chunks,
)

__all__ = ["ActivationDumpLike", "LAYER_STATUSES", "dump_source", "layer_table"]

#: Values of the ``status`` column of :func:`layer_table` (see there).
LAYER_STATUSES = ("ok", "one_class", "constant_layer", "class_means_degenerate")

log = logging.getLogger(__name__)


class ActivationDumpLike(Protocol):
    """What :func:`layer_table` needs from an activation dump (``mfoml.nets.activations``)."""

    layers: list[str]
    labels: np.ndarray
    predictions: np.ndarray
    manifest: dict[str, Any]

    def layer(self, name: str) -> np.ndarray:  # (N, D) float16 memmap
        ...

    def iter_chunks(self, name: str, chunk_size: int) -> Iterator[np.ndarray]:  # float32
        ...


# --------------------------------------------------------------------------------------------
# Per-layer table over an activation dump
# --------------------------------------------------------------------------------------------


def dump_source(dump: ActivationDumpLike, name: str) -> Features:
    """Rows of layer ``name``: the memmap when the dump offers one, else its chunk iterator."""
    if hasattr(dump, "layer"):
        return dump.layer(name)
    return lambda cs: dump.iter_chunks(name, cs)


def _is_constant(features: Features, chunk_size: int) -> bool:
    """Every row of ``features`` equals the first one (one streaming pass)."""
    first = None
    for _, chunk in iter_feature_chunks(features, chunk_size):
        block = np.asarray(chunk)
        if first is None:
            first = block[:1]
        if not np.array_equal(block, np.broadcast_to(first, block.shape)):
            return False
    return True


def _layer_status(met: dict[str, Any], features: Features, chunk_size: int) -> str:
    """Why NC1/NC2 of a layer are undefined (``"ok"`` when they are defined)."""
    if met["n_classes_present"] < 2:
        return "one_class"
    if np.isfinite(met["nc1"]) and np.isfinite(met["nc2_equinorm"]):
        return "ok"
    return "constant_layer" if _is_constant(features, chunk_size) else "class_means_degenerate"


def _manifest_layers(dump: ActivationDumpLike) -> dict[str, dict[str, Any]]:
    manifest = getattr(dump, "manifest", None) or {}
    return {entry["name"]: entry for entry in manifest.get("layers", []) if "name" in entry}


def _layer_dim(dump: ActivationDumpLike, name: str) -> int:
    entry = _manifest_layers(dump).get(name)
    if entry is not None and "dim" in entry:
        return int(entry["dim"])
    if hasattr(dump, "layer"):
        return int(dump.layer(name).shape[1])
    return int(next(iter(dump.iter_chunks(name, 1))).shape[1])


def layer_table(
    train_dump: ActivationDumpLike,
    test_dump: ActivationDumpLike | None = None,
    *,
    classifier_weight: Any = None,
    penultimate_layer: str | None = None,
    n_classes: int | None = None,
    layers: Sequence[str] | None = None,
    chunk_size: int = 4096,
) -> pd.DataFrame:
    """NCC and neural-collapse metrics for every layer of an activation dump.

    Class means come from the train dump with the true labels (the dump's ``true_labels`` when
    it has them, as the train split of a label-noise run does, else its ``labels``; NC1 and the
    NCC accuracy use the same labels); the NCC mismatch compares the NCC decision with the
    network's predictions stored in each dump (test uses the train means).

    Parameters
    ----------
    train_dump, test_dump : activation dumps (``mfoml.nets.activations.open_activations``) of the
        same model and epoch; ``test_dump`` must have the same layers and dimensions.
    classifier_weight : (C, D_penultimate) last-layer weight, for NC3.
    penultimate_layer : name of the penultimate layer (NC3, NC4). Default: the layer just
        before ``"logits"`` when the dump has one, else, with ``classifier_weight``, the last
        layer whose dimension equals ``W.shape[1]``.
    n_classes : number of classes. Default: ``classifier_weight.shape[0]``, else the dimension
        of the ``"logits"`` layer, else ``max(labels, predictions) + 1``.
    layers : subset of layers (default: all, in probe order).
    chunk_size : rows per chunk (bounds the memory).

    Returns
    -------
    pandas.DataFrame, one row per layer in probe order, columns ``layer, layer_index, dim,
    reduction (JSON text or None), n_train, n_test, n_classes, n_classes_present, ncc_mismatch_train,
    ncc_mismatch_test, ncc_accuracy_train, ncc_accuracy_test, nc1, nc2_equinorm,
    nc2_equiangularity, nc2_mean_angle_dev, nc2_max_angle_dev, nc3, nc4, is_penultimate,
    status``. ``status`` says why NC1/NC2 are NaN, as the probe's status does for alpha:
    ``ok``; ``one_class`` (fewer than two classes in the train dump); ``constant_layer`` (every
    sample has the same representation, e.g. dead ReLUs: NCC then picks the lowest class for
    every sample); ``class_means_degenerate`` (the layer varies but the class means coincide,
    or one equals the global mean).
    ``nc3`` and ``nc4`` (= the train NCC mismatch, Papyan's definition) are filled on the
    penultimate row only and NaN elsewhere (``nc3`` also NaN, with a log line, when the dump
    stores a pooled version of the penultimate layer, since ``W`` does not act on it);
    ``*_test`` are NaN without a test dump.

    Raises
    ------
    NonFiniteFeaturesError : a layer contains NaN/inf (the message names the layer and split).
    ValueError : inconsistent dumps, classes or classifier shape.
    """
    chunk_size = check_chunk_size(chunk_size)
    names = list(train_dump.layers if layers is None else layers)
    unknown = [n for n in names if n not in train_dump.layers]
    if unknown:
        raise ValueError(f"layers {unknown} are not in the train dump (has {train_dump.layers})")
    if test_dump is not None:
        missing = [n for n in names if n not in test_dump.layers]
        if missing:
            raise ValueError(f"layers {missing} are missing from the test dump")
    # true labels (METHODS section 7): a label-noise run's train dump stores the noisy labels it
    # was trained on in ``labels`` and the true ones in ``true_labels``
    y_train = as_label_array(getattr(train_dump, "true_labels", train_dump.labels), "train labels")
    p_train = as_label_array(train_dump.predictions, "train predictions")
    w = classifier_weight
    if w is not None:
        w = w.detach().cpu().numpy() if is_torch(w) else np.asarray(w)
        w = np.asarray(w, dtype=np.float64)
        if w.ndim != 2:
            raise ValueError(f"classifier_weight must have shape (C, D), got {w.shape}")
    dims = {name: _layer_dim(train_dump, name) for name in train_dump.layers}
    if n_classes is None:
        if w is not None:
            n_classes = int(w.shape[0])
        elif "logits" in dims:
            n_classes = dims["logits"]
        else:
            arrays = [y_train, p_train]
            if test_dump is not None:
                arrays += [
                    np.asarray(getattr(test_dump, "true_labels", test_dump.labels)),
                    np.asarray(test_dump.predictions),
                ]
            n_classes = int(max(int(np.max(a)) for a in arrays if len(a))) + 1
    if w is not None and w.shape[0] != n_classes:
        raise ValueError(f"classifier_weight has {w.shape[0]} rows but n_classes is {n_classes}")
    all_layers = list(train_dump.layers)
    if penultimate_layer is None:
        if "logits" in all_layers and all_layers.index("logits") > 0:
            penultimate_layer = all_layers[all_layers.index("logits") - 1]
        elif w is not None:
            match = [n for n in all_layers if dims[n] == w.shape[1] and n != "logits"]
            if not match:
                raise ValueError(
                    f"no layer of the dump has the classifier's input dimension {w.shape[1]} "
                    f"(dims: {dims}); pass penultimate_layer or drop classifier_weight"
                )
            penultimate_layer = match[-1]
    elif penultimate_layer not in all_layers:
        raise ValueError(f"penultimate_layer {penultimate_layer!r} is not in the dump")
    man = _manifest_layers(train_dump)
    w_pen = w
    if w is not None and dims[penultimate_layer] != w.shape[1]:
        reduction = man.get(penultimate_layer, {}).get("reduction") or {}
        if int(reduction.get("original_dim", -1)) != w.shape[1]:
            raise ValueError(
                f"classifier_weight expects {w.shape[1]} features but penultimate layer "
                f"{penultimate_layer!r} has dimension {dims[penultimate_layer]} in the dump"
            )
        w_pen = None  # the dump stores a pooled version: W does not act on it
        log.info(
            "penultimate layer %r was reduced (%s, %d -> %d features) in the dump: NC3 is not "
            "computable (NaN)",
            penultimate_layer,
            reduction.get("method"),
            w.shape[1],
            dims[penultimate_layer],
        )
    rows = []
    t_all = time.perf_counter()
    for pos, name in enumerate(names):
        t0 = time.perf_counter()
        is_pen = name == penultimate_layer
        try:
            split = "train"
            src = dump_source(train_dump, name)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                met = collapse_metrics(
                    src,
                    y_train,
                    n_classes,
                    predictions=p_train,
                    classifier_weight=w_pen if is_pen else None,
                    penultimate=is_pen,
                    chunk_size=chunk_size,
                )
            for wrn in caught:
                log.warning("layer %r: %s", name, wrn.message)
            row_test = {"n": 0, "ncc_mismatch": float("nan"), "ncc_accuracy": float("nan")}
            if test_dump is not None:
                split = "test"
                if _layer_dim(test_dump, name) != dims[name]:
                    raise ValueError(
                        f"layer {name!r} has dimension {_layer_dim(test_dump, name)} in the "
                        f"test dump but {dims[name]} in the train dump"
                    )
                scan = Scan(met["means"].means_, None, None, n_classes)
                res = scan.run(
                    dump_source(test_dump, name),
                    chunk_size,
                    labels=as_label_array(
                        getattr(test_dump, "true_labels", test_dump.labels), "test labels"
                    ),
                    predictions=as_label_array(test_dump.predictions, "test predictions"),
                )
                row_test = {
                    "n": res["n"],
                    "ncc_mismatch": res["n_mismatch"] / res["n"] if res["n"] else float("nan"),
                    "ncc_accuracy": res["n_correct"] / res["n"] if res["n"] else float("nan"),
                }
        except NonFiniteFeaturesError as exc:
            raise NonFiniteFeaturesError(f"layer {name!r} ({split} split): {exc}") from exc
        except ValueError as exc:
            raise ValueError(f"layer {name!r} ({split} split): {exc}") from exc
        entry = man.get(name, {})
        rows.append(
            {
                "layer": name,
                "layer_index": int(entry.get("index", all_layers.index(name))),
                "dim": dims[name],
                "reduction": (
                    None
                    if entry.get("reduction") is None
                    else json.dumps(entry["reduction"], sort_keys=True)
                ),
                "n_train": met["n_samples"],
                "n_test": row_test["n"],
                "n_classes": n_classes,
                "n_classes_present": met["n_classes_present"],
                "ncc_mismatch_train": met["ncc_mismatch"],
                "ncc_mismatch_test": row_test["ncc_mismatch"],
                "ncc_accuracy_train": met["ncc_accuracy"],
                "ncc_accuracy_test": row_test["ncc_accuracy"],
                "nc1": met["nc1"],
                "nc2_equinorm": met["nc2_equinorm"],
                "nc2_equiangularity": met["nc2_equiangularity"],
                "nc2_mean_angle_dev": met["nc2_mean_angle_dev"],
                "nc2_max_angle_dev": met["nc2_max_angle_dev"],
                "nc3": met["nc3"],
                "nc4": met["nc4"],
                "is_penultimate": is_pen,
                "status": _layer_status(met, dump_source(train_dump, name), chunk_size),
            }
        )
        if rows[-1]["status"] != "ok":
            log.warning("layer %r: status %s (NC1/NC2 undefined)", name, rows[-1]["status"])
        log.info(
            "layer %d/%d %r (D=%d): mismatch train=%.4f test=%.4f nc1=%.4g (%.1fs)",
            pos + 1,
            len(names),
            name,
            dims[name],
            met["ncc_mismatch"],
            row_test["ncc_mismatch"],
            met["nc1"],
            time.perf_counter() - t0,
        )
    log.info("%d layers in %.1fs", len(names), time.perf_counter() - t_all)
    return pd.DataFrame(rows)
