"""The self-supervised training job (rule ``train_ssl``, workflow/scripts/train_ssl.py): one run
of loss type simclr, vicreg, barlow, byol or dino.

:func:`ssl_run` loads nothing itself: from the data set and the fold assignment (none for a
``full`` run, :mod:`mfoml.nets.trainjob`) it takes the inputs of the k-1 training folds, without
their labels, and builds the SSL encoder (the configured backbone without its head, plus the
loss's projection head; :mod:`mfoml.nets.ssl_model`), the objective (:mod:`mfoml.nets.ssl`) and
the augmentation of the data set's kind (the ``ssl.augment`` section, :mod:`mfoml.nets.augment`:
every mini-batch gives two augmented views). :func:`mfoml.nets.ssl_training.train_ssl` minimises
the objective, writing the checkpoints at the configured epochs and ``metrics.csv`` (the SSL
loss and its terms per epoch). Then, as the supervised rule ``train`` does, ``split.npz``
(train/held-out indices and their labels, for the activation dumps) and ``run.json``
(:func:`ssl_run_info`: the run's settings, probe layers, the representation layer).
Self-supervised training does not resume: a partial directory left by a killed job goes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from mfoml.nets.augment import Augmenter, make_augmenter
from mfoml.nets.ssl import build_objective, objective_spec
from mfoml.nets.ssl_base import SSLObjective
from mfoml.nets.ssl_model import SSLNet, build_ssl_model
from mfoml.nets.threads import set_training_threads
from mfoml.nets.trainjob import RunSplit, run_split

if TYPE_CHECKING:
    from mfoml.data.store import Dataset

__all__ = ["SSLRun", "ssl_run", "ssl_run_info", "ssl_threads", "ssl_workers"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SSLRun:
    """What :func:`mfoml.nets.ssl_training.train_ssl` trains.

    Attributes
    ----------
    split : the run's rows (the labels only for the dumps).
    x_train : ``(n, *input_shape)`` float32 training inputs.
    model, objective, augmenter : the encoder, its objective, the view maker.
    kind : the data set's kind (``image``, ``signal``...).
    """

    split: RunSplit
    x_train: np.ndarray
    model: SSLNet
    objective: SSLObjective
    augmenter: Augmenter
    kind: str


def ssl_run(
    ds: Dataset, cfg: Mapping[str, Any], folds_path: str | os.PathLike[str] | None
) -> SSLRun:
    """The self-supervised run ``cfg`` on the data set ``ds``.

    Raises
    ------
    ValueError when ``cfg["ssl_augment"]`` has no augmentation for the data set's kind.
    """
    run_id, kind = cfg["run"], ds.meta.get("kind")
    if kind not in cfg["ssl_augment"]:
        raise ValueError(
            f"run {run_id}: data set {cfg['dataset']!r} is of kind {kind!r}; self-supervised "
            f"training has augmentations for {sorted(cfg['ssl_augment'])} only"
        )
    split = run_split(ds, cfg, folds_path)
    x_train = np.asarray(ds.x_train[split.train_idx], dtype=np.float32)
    spec = dict(cfg["model"])
    backbone = {
        "arch": spec.pop("arch"),
        "input_shape": list(ds.meta["input_shape"]),
        "n_classes": 1,  # the head is dropped
        "activation": cfg["activation"],
        **spec,
    }
    loss = cfg["loss"]
    model = build_ssl_model(backbone, loss.get("projector"), seed=int(cfg["seed"]))
    objective = build_objective(objective_spec(loss), model.out_dim, model, seed=int(cfg["seed"]))
    augmenter = make_augmenter(kind, cfg["ssl_augment"][kind])
    log.info(
        "%s on %d unlabelled samples; probe layers %s (representation %s); augment %s: %s",
        objective_spec(loss),
        len(x_train),
        model.probe_layers,
        model.representation_layer,
        kind,
        augmenter.params,
    )
    return SSLRun(split, x_train, model, objective, augmenter, str(kind))


def ssl_workers(kind: str, threads: int) -> int:
    """Processes making the views: the per-sample image pipeline is CPU bound, so an image run
    uses the job's other threads (``threads - 1``); the batched 1-D views need none (0)."""
    return max(0, int(threads) - 1) if kind == "image" else 0


def ssl_threads(run: SSLRun, cfg: Mapping[str, Any], threads: int) -> int:
    """Set the run's intra-op torch threads from the job's ``threads`` and
    ``train.torch_threads`` (:func:`mfoml.nets.threads.set_training_threads`; ``auto`` counts
    the encoder's forward work of two views of a ``train.batch_size`` batch); returns them."""
    return set_training_threads(
        run.model,
        run.x_train,
        int(cfg["train"]["batch_size"]),
        threads,
        cfg["train"].get("torch_threads", "auto"),
        device=cfg["device"],
        views=2,
    )


def ssl_run_info(cfg: Mapping[str, Any], ds: Dataset, model: SSLNet) -> dict[str, Any]:
    """``run.json`` of a self-supervised run: its parameter slice, then ``self_supervised,
    n_classes, label_sets, input_shape, probe_layers, backbone_layers, penultimate_layer`` and
    ``representation_layer`` (the same layer), ``frozen_stages`` (none), ``n_relabelled`` (0)."""
    return {
        **cfg,
        "self_supervised": True,
        "n_classes": int(ds.meta["n_classes"]),
        "label_sets": ds.label_set_classes(),
        "input_shape": list(ds.meta["input_shape"]),
        "probe_layers": list(model.probe_layers),
        "backbone_layers": model.backbone_layers,
        "penultimate_layer": model.representation_layer,
        "representation_layer": model.representation_layer,
        "frozen_stages": [],
        "n_relabelled": 0,
    }
