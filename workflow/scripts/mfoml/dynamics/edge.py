"""The sharpness tracked while a run trains (``train.sharpness_every``): the edge-of-stability
study (Cohen et al. 2021).

Every ``sharpness_every`` epochs (and after the last) :class:`SharpnessTracker` measures the top
Hessian eigenvalue of the training loss (:func:`mfoml.dynamics.sharpness.sharpness`, Lanczos,
``sharpness_iters`` iterations, no trace) and returns the ``metrics.csv`` columns
``sharpness`` (NaN at the other epochs) and ``stability_threshold``, the largest sharpness at
which the optimizer's iteration on a quadratic stays stable at that epoch's learning rate
(``stability_threshold_factor(...) / lr``, :func:`stability_threshold_factor`):

- plain gradient descent (SGD without momentum): ``2 / lr``;
- heavy-ball momentum ``beta``: ``2 (1 + beta) / lr``; Nesterov momentum:
  ``(2 + 2 beta) / ((1 + 2 beta) lr)``;
- Adam and AdamW: NaN (their preconditioned step has no such threshold).

On what: a full-batch run (``train.full_batch``) on its whole training set with BatchNorm in
training mode (the loss gradient descent actually descends, one batch); otherwise on a
stratified subset of ``train.sharpness_samples`` training samples (``None``: all) with
BatchNorm in eval mode, in batches of 512. The labels are the ones trained on.

Only runs that track the sharpness import this module (and rerun for it and for
:mod:`mfoml.dynamics.sharpness`; ``train_code`` in workflow/rules/common.smk).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import nn

from mfoml.data.subsample import stratified_subsample
from mfoml.dynamics.sharpness import sharpness

__all__ = ["SharpnessTracker", "stability_threshold_factor"]

log = logging.getLogger(__name__)


def stability_threshold_factor(
    optimizer: str, momentum: float = 0.0, nesterov: bool = False
) -> float:
    """``lr`` times the stability threshold of ``optimizer`` (the threshold is this / ``lr``).

    ``2 + 2 momentum`` for ``"sgd"`` (2 without momentum), ``(2 + 2 momentum) / (1 + 2
    momentum)`` with ``nesterov``; NaN for any other optimizer (``"adam"``, ``"adamw"``).
    """
    if optimizer != "sgd":
        return math.nan
    beta = float(momentum)
    return (2 + 2 * beta) / (1 + 2 * beta) if nesterov else 2 + 2 * beta


class SharpnessTracker:
    """``epoch_callback`` of :func:`mfoml.nets.training.train` giving the sharpness columns.

    Parameters
    ----------
    x, y : the training inputs ``(N, *input_shape)`` and the labels trained on ``(N,)`` int64.
    every : measure at the epochs divisible by ``every`` and at the last epoch ``epochs``.
    epochs : the run's number of epochs.
    threshold_factor : :func:`stability_threshold_factor` of the run's optimizer.
    full_batch : measure on all of ``x`` with BatchNorm in training mode, one batch; else on a
        stratified subset of ``samples`` (``None``: all) in eval mode, batches of 512.
    samples : see ``full_batch``.
    n_iter : Lanczos iterations.
    seed : of the start vector (:func:`~mfoml.dynamics.sharpness.sharpness`).
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        every: int,
        epochs: int,
        threshold_factor: float,
        full_batch: bool = False,
        samples: int | None = None,
        n_iter: int = 20,
        seed: int = 0,
    ) -> None:
        if full_batch:  # the loss gradient descent descends: one batch, BatchNorm in training mode
            self.x, self.y, self.batch_size, self.mode = x, y, None, "train"
        else:
            keep = stratified_subsample(y, samples, seed=0)
            self.x, self.y, self.batch_size, self.mode = x[keep], y[keep], 512, "eval"
        self.every, self.epochs, self.n_iter, self.seed = int(every), int(epochs), int(n_iter), seed
        self.threshold_factor = float(threshold_factor)
        log.info(
            "sharpness every %d epochs on %d samples (BatchNorm in %s mode)",
            self.every,
            len(self.y),
            self.mode,
        )

    @classmethod
    def for_run(cls, cfg: Mapping[str, Any], x: np.ndarray, y: np.ndarray) -> SharpnessTracker:
        """The tracker of a run's parameter slice (``train`` section and ``seed``)."""
        t = cfg["train"]
        return cls(
            x,
            y,
            every=int(t["sharpness_every"]),
            epochs=int(t["epochs"]),
            threshold_factor=stability_threshold_factor(
                t["optimizer"], float(t["momentum"]), bool(t["nesterov"])
            ),
            full_batch=bool(t.get("full_batch", False)),
            samples=t.get("sharpness_samples"),
            n_iter=int(t.get("sharpness_iters", 20)),
            seed=int(cfg["seed"]),
        )

    def __call__(self, model: nn.Module, row: Mapping[str, Any]) -> dict[str, float]:
        """``{"sharpness", "stability_threshold"}`` after the epoch ``row["epoch"]`` (learning
        rate ``row["lr"]``); ``sharpness`` is NaN at an epoch without a measurement."""
        sharp = math.nan
        if row["epoch"] % self.every == 0 or row["epoch"] == self.epochs:
            res = sharpness(
                model,
                self.x,
                self.y,
                subset_size=None,
                n_iter=self.n_iter,
                trace_samples=0,
                batch_size=self.batch_size,
                mode=self.mode,
                seed=self.seed,
            )
            sharp = res["top_eigenvalue"]
        return {"sharpness": sharp, "stability_threshold": self.threshold_factor / row["lr"]}
