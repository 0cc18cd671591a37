"""Which samples the ``activations`` rule dumps, and the dumps of every checkpoint.

Splits are named for what they are (:func:`plan_splits`):

- ``train``: always the run's own training samples (its k-1 training folds, or the whole
  training split for a ``full`` run) with the labels it was trained on (relabelled under label
  noise; the true labels go to ``labels_true.npy`` for the NCC class means);
- ``heldout``: its held-out fold (skipped, and recorded so in ``sources.json``, for a ``full``
  run, which has none);
- ``test``: the official test split (the held-out fold when the data set has none); with an
  ``analysis_dataset``, that data set's test split;
- ``analysis`` (only with an ``analysis_dataset`` other than the training data set, e.g. the
  full CIFAR100 for a model trained on a 50-per-class subset): the analysis data set's training
  split with its true labels. Most of these samples were never trained on, so they are not
  called ``train``.

Every label set of the data set goes into the dumps (``labels_{set}.npy`` beside ``labels.npy``)
(:func:`dump_checkpoints`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mfoml.data.store import Dataset
from mfoml.data.subsample import stratified_subsample
from mfoml.nets.activations import dump_activations
from mfoml.nets.checkpoints import load_checkpoint

__all__ = ["DumpSplit", "dump_checkpoints", "plan_splits", "subsample_splits"]

log = logging.getLogger(__name__)

#: A table's network input from its raw rows (``mfoml.tabular.netinput.fold_encoder``).
Encoder = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class DumpSplit:
    """The samples of one dumped split.

    Attributes
    ----------
    data : the data set they come from.
    which : its array, ``"x_train"`` or ``"x_test"``.
    indices : (n,) int rows of that array.
    labels : (n,) int the labels stored in the dump (as trained, for ``train``).
    true_labels : (n,) int the true labels where ``labels`` are noisy, else ``None``.
    """

    data: Dataset
    which: str
    indices: np.ndarray
    labels: np.ndarray
    true_labels: np.ndarray | None = None


def plan_splits(
    names: Sequence[str],
    ds: Dataset,
    ana: Dataset,
    split: Mapping[str, np.ndarray],
    *,
    dataset: str,
    analysis_dataset: str,
    run: str,
) -> tuple[dict[str, DumpSplit], dict[str, dict[str, Any]]]:
    """The splits of a run's dumps (see the module docstring) and where their samples come from.

    Parameters
    ----------
    names : the configured splits (``activations.splits``).
    ds : the run's training data set; ``ana`` the analysis data set (``ds`` itself when they
        are the same).
    split : the train job's ``split.npz`` (``train_idx, heldout_idx, y_train, y_train_clean``).
    dataset, analysis_dataset : their ids; ``run`` the run id (for errors).

    Returns
    -------
    ``(splits, sources)``: ``{name: DumpSplit}`` in dump order, and ``{name: description}`` for
    ``sources.json`` (also for a skipped split).

    Raises
    ------
    ValueError
        An analysis data set without a test split where ``test`` is asked for.
    """
    other = analysis_dataset != dataset
    splits: dict[str, DumpSplit] = {}
    sources: dict[str, dict[str, Any]] = {}
    train_idx, heldout_idx = split["train_idx"], split["heldout_idx"]
    own = {"dataset": dataset}
    for name in names:
        if name == "train":
            splits[name] = DumpSplit(
                ds, "x_train", train_idx, split["y_train"], split["y_train_clean"]
            )
            sources[name] = {
                **own,
                "data": "train",
                "indices": "the run's training samples",
                "labels": "as trained (true labels in labels_true.npy)",
            }
        elif name == "heldout" and len(heldout_idx) == 0:
            log.info("no held-out fold (the run trained on the whole training split): not dumped")
            sources[name] = {
                **own,
                "skipped": "no held-out fold: trained on the whole training split",
            }
        elif name == "heldout" or (ana.x_test is None and not other):
            splits[name] = DumpSplit(
                ds, "x_train", heldout_idx, np.asarray(ds.y_train)[heldout_idx]
            )
            sources[name] = {**own, "data": "train", "indices": "held-out fold", "labels": "true"}
        elif ana.x_test is None:
            raise ValueError(f"run {run}: analysis data set {analysis_dataset!r} has no test split")
        else:
            y_test = np.asarray(ana.y_test)
            splits[name] = DumpSplit(ana, "x_test", np.arange(len(ana.y_test)), y_test)
            sources[name] = {
                "dataset": analysis_dataset,
                "data": "test",
                "indices": "all",
                "labels": "true",
            }
    if other:
        y_ana = np.asarray(ana.y_train)
        splits["analysis"] = DumpSplit(ana, "x_train", np.arange(len(y_ana)), y_ana)
        sources["analysis"] = {
            "dataset": analysis_dataset,
            "data": "train",
            "indices": "all (mostly samples the run never trained on)",
            "labels": "true",
        }
    return splits, sources


def subsample_splits(
    splits: Mapping[str, DumpSplit],
    sources: dict[str, dict[str, Any]],
    max_samples: int | None,
) -> dict[str, DumpSplit]:
    """Each split reduced to a stratified subsample of at most ``max_samples`` samples
    (:func:`mfoml.data.subsample.stratified_subsample`, seed 0); ``n_samples`` is recorded in
    ``sources`` (updated in place)."""
    out = {}
    for name, s in splits.items():
        keep = stratified_subsample(np.asarray(s.labels), max_samples, seed=0)
        true = None if s.true_labels is None else np.asarray(s.true_labels)[keep]
        out[name] = replace(
            s,
            indices=np.asarray(s.indices)[keep],
            labels=np.asarray(s.labels)[keep],
            true_labels=true,
        )
        sources[name]["n_samples"] = int(len(keep))
    return out


def dump_checkpoints(
    checkpoints: Mapping[int, Path],
    splits: Mapping[str, DumpSplit],
    out: Path,
    cfg: Mapping[str, Any],
    *,
    encoder: Encoder | None = None,
) -> None:
    """Dump every split for every checkpoint into ``out/{epoch}/{split}/``.

    Parameters
    ----------
    checkpoints : epoch -> checkpoint file (``mfoml.nets.checkpoints.list_checkpoints``).
    splits : :func:`subsample_splits` output.
    out : the output directory.
    cfg : the ``activations`` settings (``max_features, batch_size, device``).
    encoder : the network input of a table's rows (``mfoml.tabular.netinput.fold_encoder``;
        ``None`` for every other data set). Token ids (text sets) stay integers, other inputs
        are float32.
    """
    for epoch, path in checkpoints.items():
        model, _ = load_checkpoint(path)
        for name, s in splits.items():
            x = getattr(s.data, s.which)
            dtype = np.int64 if np.issubdtype(x.dtype, np.integer) else np.float32
            x_sel = np.asarray(x[s.indices], dtype=dtype)
            if encoder is not None:
                x_sel = encoder(x_sel)
            # further label sets of the same samples (e.g. CIFAR-100's coarse labels)
            extra = {
                label_set: np.asarray(pair[0 if s.which == "x_train" else 1])[s.indices]
                for label_set, pair in getattr(s.data, "extra_labels", {}).items()
            }
            manifest = dump_activations(
                model,
                x_sel,
                np.asarray(s.labels, dtype=np.int64),
                out / str(epoch) / name,
                max_features=cfg["max_features"],
                batch_size=int(cfg["batch_size"]),
                device=cfg["device"],
                split=name,
                epoch=epoch,
                checkpoint=path,
                true_labels=None
                if s.true_labels is None
                else np.asarray(s.true_labels, dtype=np.int64),
                label_set=getattr(s.data, "label_set", "class"),
                label_sets=extra,
            )
            log.info(
                "epoch %d split %s: %d samples, %d layers",
                epoch,
                name,
                manifest["n_samples"],
                len(manifest["layers"]),
            )
