"""Training hyper-parameters (:class:`TrainConfig`), the :class:`ExtraLoss` protocol, and the
optimizer and learning-rate schedule they configure (used by :func:`mfoml.nets.training.train`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from mfoml.nets.optim import make_adamw, warmup_linear

__all__ = ["ExtraLoss", "TrainConfig", "make_optimizer", "make_scheduler"]


@runtime_checkable
class ExtraLoss(Protocol):
    """An extra loss term computed from intermediate features of the training forward pass.

    Attributes
    ----------
    layers : probe-layer names whose outputs the loss needs; :func:`train` requests them with
        ``model.forward_features(x, loss.layers)`` in the same pass that gives the logits.

    ``__call__(features, labels)`` receives ``{name: Tensor (B, *layer_shape)}`` (with autograd
    graph) and the batch labels ``(B,)`` int64, and returns a scalar Tensor that is added to
    the mean cross-entropy.

    Optionally the object may define ``on_epoch_start(model, x_train, y_train, device)``; it is
    then called at the start of every epoch (before the first batch) with the model, the
    training arrays (numpy) and the ``torch.device`` (e.g. to recompute whole-training-set class
    means for non-batched SVSL). It is not part of the structural type because it is optional.
    """

    layers: list[str]

    def __call__(self, features: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor: ...


@dataclasses.dataclass
class TrainConfig:
    """Training hyper-parameters.

    Attributes
    ----------
    epochs : number of epochs (>= 0).
    batch_size : mini-batch size.
    optimizer : ``"adam"``, ``"sgd"`` or ``"adamw"`` (decoupled weight decay on the weight
        matrices only, :mod:`mfoml.nets.optim`; for transformers).
    lr : initial learning rate.
    momentum : SGD momentum (ignored by Adam).
    nesterov : SGD Nesterov momentum.
    weight_decay : L2 weight decay (both optimizers; Adam's coupled form).
    schedule : ``"none"``, ``"step"`` (multiply by ``gamma`` every ``step_size`` epochs) or
        ``"multistep"`` (multiply by ``gamma`` at each epoch in ``milestones``), stepped once
        per epoch; or ``"warmup_linear"`` (linear warm-up over ``warmup_fraction`` of all
        optimizer steps, then linear decay to zero at the last step; stepped after every
        batch; :func:`mfoml.nets.optim.warmup_linear`).
    step_size, gamma, milestones, warmup_fraction : schedule parameters.
    grad_clip : clip the global gradient norm to this value before each step (``None``: no
        clipping).
    seed : seed of the shuffling generator and of the global torch RNG.
    checkpoint_epochs : epochs after which a checkpoint is written (``0`` = before training);
        ``None`` means ``[epochs]``.
    device : ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    mixed_precision : use float16 autocast + GradScaler on CUDA (never on CPU).
    eval_batch_size : batch size of the evaluation passes.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "none"
    step_size: int = 30
    gamma: float = 0.1
    milestones: list[int] = dataclasses.field(default_factory=list)
    seed: int = 0
    checkpoint_epochs: list[int] | None = None
    device: str = "auto"
    mixed_precision: bool = True
    eval_batch_size: int = 1024
    warmup_fraction: float = 0.1
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending key when a value is impossible."""

        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"TrainConfig.{key}: {why} (got {getattr(self, key)!r})")

        for key, kind in _FIELD_TYPES.items():
            val = getattr(self, key)
            if kind == "int" and (isinstance(val, bool) or not isinstance(val, (int, np.integer))):
                raise bad(key, "must be an integer")
            if kind == "float" and (
                isinstance(val, bool) or not isinstance(val, (int, float, np.integer, np.floating))
            ):
                raise bad(key, "must be a number")
            if kind == "bool" and not isinstance(val, (bool, np.bool_)):
                raise bad(key, "must be true or false")
            if kind == "str" and not isinstance(val, str):
                raise bad(key, "must be a string")
            if kind == "ints" and val is not None:
                if not isinstance(val, (list, tuple)) or any(
                    isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in val
                ):
                    raise bad(key, "must be a list of integers")
        if int(self.epochs) < 0:
            raise bad("epochs", "must be >= 0")
        if int(self.batch_size) < 2:
            raise bad("batch_size", "must be >= 2 (BatchNorm needs two samples)")
        if self.optimizer not in ("adam", "sgd", "adamw"):
            raise bad("optimizer", "must be 'adam', 'sgd' or 'adamw'")
        if not (float(self.lr) > 0 and math.isfinite(float(self.lr))):
            raise bad("lr", "must be a finite number > 0")
        if not 0 <= float(self.momentum) < 1:
            raise bad("momentum", "must be in [0, 1)")
        if float(self.weight_decay) < 0:
            raise bad("weight_decay", "must be >= 0")
        if self.schedule not in ("none", "step", "multistep", "warmup_linear"):
            raise bad("schedule", "must be 'none', 'step', 'multistep' or 'warmup_linear'")
        if not 0 <= float(self.warmup_fraction) <= 1:
            raise bad("warmup_fraction", "must be in [0, 1]")
        if self.grad_clip is not None and (
            isinstance(self.grad_clip, bool) or not float(self.grad_clip) > 0
        ):
            raise bad("grad_clip", "must be a number > 0 or None")
        if int(self.step_size) < 1:
            raise bad("step_size", "must be >= 1")
        if not 0 < float(self.gamma) <= 1:
            raise bad("gamma", "must be in (0, 1]")
        if any(int(m) < 1 for m in self.milestones) or list(self.milestones) != sorted(
            self.milestones
        ):
            raise bad("milestones", "must be increasing epochs >= 1")
        if self.checkpoint_epochs is not None and any(
            not 0 <= int(e) <= int(self.epochs) for e in self.checkpoint_epochs
        ):
            raise bad("checkpoint_epochs", f"each epoch must be in [0, epochs={self.epochs}]")
        if int(self.eval_batch_size) < 1:
            raise bad("eval_batch_size", "must be >= 1")
        if not (self.device == "auto" or re.match(r"^(cpu|cuda(:\d+)?)$", self.device)):
            raise bad("device", "must be 'auto', 'cpu', 'cuda' or 'cuda:N'")

    @property
    def save_epochs(self) -> list[int]:
        """Sorted, de-duplicated checkpoint epochs (``[epochs]`` when not configured)."""
        eps = [self.epochs] if self.checkpoint_epochs is None else self.checkpoint_epochs
        return sorted({int(e) for e in eps})

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict of the fields (JSON-able, stored in checkpoints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; an unknown key is a ``ValueError`` naming the key."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"TrainConfig: unknown key(s) {unknown}; known: {sorted(names)}")
        return cls(**dict(d))


_FIELD_TYPES = {
    "epochs": "int",
    "batch_size": "int",
    "optimizer": "str",
    "lr": "float",
    "momentum": "float",
    "nesterov": "bool",
    "weight_decay": "float",
    "schedule": "str",
    "step_size": "int",
    "gamma": "float",
    "milestones": "ints",
    "seed": "int",
    "checkpoint_epochs": "ints",
    "device": "str",
    "mixed_precision": "bool",
    "eval_batch_size": "int",
    "warmup_fraction": "float",
}


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` (``adam``, ``sgd`` or ``adamw``) over the model's
    parameters (``adamw``: the trainable ones, in :func:`mfoml.nets.optim.adamw_param_groups`)."""
    if cfg.optimizer == "adamw":
        return make_adamw(model, cfg.lr, cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int = 1) -> Any:
    """The learning-rate schedule ``cfg.schedule`` of ``opt``: stepped once per epoch, except
    ``warmup_linear`` (after every batch; ``steps_per_epoch`` batches per epoch)."""
    if cfg.schedule == "warmup_linear":
        total = max(1, int(steps_per_epoch) * int(cfg.epochs))
        return warmup_linear(opt, total, round(float(cfg.warmup_fraction) * total))
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=list(cfg.milestones), gamma=cfg.gamma
        )
    return None
