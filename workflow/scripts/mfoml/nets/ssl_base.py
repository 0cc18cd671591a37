"""What the self-supervised objectives share: the base class, the collapse monitor and the
momentum teacher (BYOL's, reused by DINO).

:class:`SSLObjective` is an ``nn.Module`` called as ``objective(encoder, v1, v2, *local) ->
(loss, terms)``: ``encoder`` maps a batch of views ``(N, *input_shape)`` to embeddings ``(N,
D)``; ``v1, v2`` are the two global views of the batch and ``local`` the further (local) crops
that an objective with :attr:`SSLObjective.local_crops` ``> 0`` asks the training loop for
(DINO's multi-crop; the others take exactly two views). ``terms`` are detached floats for the
metrics table. Hooks called by :func:`mfoml.nets.ssl_training.train_ssl`:
:meth:`SSLObjective.start_epoch` before every epoch, :meth:`SSLObjective.after_step` after every
optimiser step.

The momentum teacher (Grill et al. 2020; Caron et al. 2021): :func:`make_teacher` is a frozen
deep copy of a module, :func:`ema_update` moves it towards the student, ``xi <- tau xi + (1 -
tau) theta`` for every parameter (buffers, BatchNorm's running statistics, are copied), and
:func:`momentum` is the rate at training progress ``k/K`` in ``[0, 1]``: ``tau = 1 - (1 -
tau_base) (cos(pi k / K) + 1) / 2`` (from ``tau_base`` at the start to 1 at the end) with the
cosine schedule, ``tau_base`` without.

This module is split from :mod:`mfoml.nets.ssl` so that :mod:`mfoml.nets.dino` can build on it
while :mod:`mfoml.nets.ssl` builds every objective (no import cycle).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SSLObjective",
    "check_pair",
    "ema_update",
    "embedding_std",
    "make_teacher",
    "momentum",
]

Encoder = Callable[[torch.Tensor], torch.Tensor]


def check_pair(z1: torch.Tensor, z2: torch.Tensor, what: str, min_n: int = 1) -> None:
    """``ValueError`` unless ``z1`` and ``z2`` are both ``(N, D)`` with ``N >= min_n``."""
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"{what}: z1 and z2 must have the same shape (N, D), got {tuple(z1.shape)} and "
            f"{tuple(z2.shape)}"
        )
    if z1.shape[0] < min_n:
        raise ValueError(f"{what}: needs at least {min_n} samples, got N={z1.shape[0]}")


@torch.no_grad()
def embedding_std(z: torch.Tensor) -> float:
    """``sqrt(D) * mean_j std_i(normalize(z)_ij)``: ~1 for spread embeddings, 0 when collapsed.

    ``z``: ``(N, D)``; the standard deviation is over the ``N`` samples (unbiased).
    """
    zn = F.normalize(z.detach().float(), dim=1)
    return float(zn.std(dim=0).mean() * math.sqrt(z.shape[1])) if z.shape[0] > 1 else math.nan


def make_teacher(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters get no gradient (``requires_grad=False``)."""
    teacher = copy.deepcopy(module)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def momentum(tau_base: float, progress: float, cosine: bool = True) -> float:
    """The EMA rate at training progress ``progress`` in ``[0, 1]`` (clipped; module doc)."""
    progress = min(max(float(progress), 0.0), 1.0)
    if not cosine:
        return float(tau_base)
    return 1.0 - (1.0 - float(tau_base)) * (math.cos(math.pi * progress) + 1.0) / 2.0


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, tau: float) -> None:
    """``xi <- tau xi + (1 - tau) theta`` for every parameter pair; buffers copied."""
    for pt, ps in zip(teacher.parameters(), student.parameters(), strict=True):
        pt.mul_(tau).add_(ps.detach(), alpha=1.0 - tau)
    for bt, bs in zip(teacher.buffers(), student.buffers(), strict=True):
        bt.copy_(bs)


class SSLObjective(nn.Module):
    """Base class: ``forward(encoder, v1, v2) -> (loss, terms)`` (module docstring).

    ``spec`` is ``{type, **hyper-parameters}`` when built by
    :func:`mfoml.nets.ssl.build_objective`. ``local_crops`` (number) and ``local_crop_scale``
    (area fraction range) say which further views the objective takes (0: two views).
    """

    name = "ssl"
    spec: dict = {}
    local_crops: int = 0
    local_crop_scale: tuple[float, float] = (0.05, 0.4)

    def attach(self, encoder: nn.Module) -> SSLObjective:
        """Prepare state that depends on the encoder (a momentum teacher); returns ``self``."""
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the objective itself that the optimiser must update."""
        return (p for p in self.parameters() if p.requires_grad)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called before every epoch; ``epoch`` counts from 0, ``epochs`` is their number."""

    def after_step(self, encoder: nn.Module, progress: float) -> None:
        """Called after every optimiser step; ``progress`` in ``[0, 1]`` (steps done / total)."""

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def forward(  # type: ignore[override]
        self, encoder: Encoder, v1: torch.Tensor, v2: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        z1, z2 = encoder(v1).float(), encoder(v2).float()
        loss, terms = self.pair_loss(z1, z2)
        terms = {k: float(v) for k, v in terms.items()}
        terms["embedding_std"] = embedding_std(z1)
        return loss, terms
