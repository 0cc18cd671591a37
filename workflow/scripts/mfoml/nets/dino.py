"""DINO: self-distillation with no labels (Caron et al. 2021; ``METHODS.md`` section 12).

A student network and a momentum teacher (the EMA machinery of BYOL,
:mod:`mfoml.nets.ssl_base`) see augmented views of the same images; the student is trained to
give the teacher's output distribution over ``K = out_dim`` prototypes. There are no negatives
and no predictor: collapse is prevented by **centering** and **sharpening** the teacher.

Heads
    The encoder (backbone + projection head, :class:`~mfoml.nets.ssl_model.SSLNet`) maps a
    view to ``z`` ``(N, D)`` (DINO's bottleneck); the prototype layer (:class:`PrototypeLayer`,
    DINO's weight-normalised last layer with its norm fixed to 1) gives the scores
    ``g = normalize(z) normalize(V)^T`` ``(N, K)``, cosines to ``K`` prototypes ``V (K, D)``.
    The teacher is a frozen copy of encoder and prototype layer, updated after every step by
    ``xi <- tau xi + (1 - tau) theta`` with ``tau`` raised from ``tau`` to 1 on a cosine over
    training (``cosine_tau``).
Loss (:func:`dino_loss`)
    teacher ``P_t = softmax((g_t - c) / T_t)`` (centred by ``c``, sharpened by ``T_t``; no
    gradient), student ``P_s = softmax(g_s / T_s)``; with the teacher on the two global views
    ``i in {1, 2}`` and the student on all ``V = 2 + local`` views,
    ``L = (1 / n_pairs) sum_{i} sum_{v != i} mean_n H(P_t^(i)_n, P_s^(v)_n)``,
    ``H(a, b) = -sum_k a_k log b_k``: the cross-view pairs only (``n_pairs = 2 (V - 1)``; 2 with
    two views). As the reference ``DINOLoss``.
Center (:func:`update_center`)
    after every loss, ``c <- m c + (1 - m) mean_n g_t`` over the teacher's scores of both global
    views (``m = center_momentum``; ``c`` starts at 0, so ``m = 1`` switches centering off).
Teacher temperature (:func:`teacher_temperature`)
    epoch ``e`` (from 0) of a warm-up of ``W`` epochs: the reference's
    ``linspace(T_start, T_t, W)[e]`` = ``T_start + (T_t - T_start) e / (W - 1)`` (``T_start``
    when ``W = 1``), then ``T_t``. ``T_t = T_s`` switches sharpening off.
Multi-crop
    ``local_crops.number`` further crops of area fraction ``local_crops.scale``, seen by the
    student only (:func:`mfoml.nets.augment.multi_crop_views`; images only, resized to the
    global size, so every backbone takes them). Signals have no crop: two views.

Terms logged per step: ``teacher_temp``, ``tau``, ``teacher_entropy`` (mean entropy of ``P_t``
in nats: ``log K`` when uniform, 0 when one-hot, the two collapses), ``embedding_std`` of ``z``.
Not carried over from the reference: freezing the last layer in the first epoch, the gradient
clipping per parameter and the ViT backbones (the pipeline's backbones are used).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mfoml.nets.ssl_base import (
    Encoder,
    SSLObjective,
    ema_update,
    embedding_std,
    make_teacher,
    momentum,
)

__all__ = [
    "DINO",
    "DINO_DEFAULTS",
    "PrototypeLayer",
    "dino_loss",
    "teacher_temperature",
    "update_center",
]

#: DINO's hyper-parameters (``losses.<name>`` keys) and their defaults (the paper's, except
#: ``out_dim``: 65536 there, 4096 here for the small backbones).
DINO_DEFAULTS: dict[str, Any] = {
    "out_dim": 4096,
    "student_temp": 0.1,
    "teacher_temp": 0.04,
    "teacher_temp_start": None,
    "teacher_temp_warmup_epochs": 0,
    "center_momentum": 0.9,
    "tau": 0.996,
    "cosine_tau": True,
    "local_crops": {"number": 0, "scale": [0.05, 0.4]},
}


def dino_loss(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    center: torch.Tensor,
    *,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    """DINO's cross-entropy over the cross-view pairs (module docstring).

    ``student``: ``V`` score tensors ``(N, K)``, the global views first; ``teacher``: the
    teacher's scores ``(N, K)`` on the first ``len(teacher)`` (global) views, detached;
    ``center``: ``(K,)`` or ``(1, K)``. Returns a scalar.
    """
    if len(teacher) < 1 or len(student) < 2 or len(teacher) > len(student):
        raise ValueError(
            f"dino_loss: needs >= 2 student views and 1..{len(student)} teacher views, got "
            f"{len(student)} and {len(teacher)}"
        )
    shape = student[0].shape
    if any(t.shape != shape for t in (*student, *teacher)) or len(shape) != 2:
        raise ValueError("dino_loss: every view's scores must have the same shape (N, K)")
    if not student_temp > 0 or not teacher_temp > 0:
        raise ValueError(f"dino_loss: temperatures must be > 0, got {student_temp}, {teacher_temp}")
    probs = [F.softmax((t.detach() - center) / teacher_temp, dim=-1) for t in teacher]
    logp = [F.log_softmax(s / student_temp, dim=-1) for s in student]
    total = student[0].new_zeros(())
    pairs = 0
    for i, q in enumerate(probs):
        for v, lp in enumerate(logp):
            if v == i:
                continue
            total = total + (-q * lp).sum(dim=-1).mean()
            pairs += 1
    return total / pairs


@torch.no_grad()
def update_center(center: torch.Tensor, teacher: torch.Tensor, center_momentum: float) -> None:
    """In place: ``center <- m center + (1 - m) mean over rows of teacher`` (``(M, K)``)."""
    batch = teacher.detach().float().mean(dim=0, keepdim=True)
    center.mul_(center_momentum).add_(batch.reshape(center.shape), alpha=1.0 - center_momentum)


def teacher_temperature(epoch: int, final: float, start: float | None, warmup_epochs: int) -> float:
    """The teacher temperature of epoch ``epoch`` (from 0; module docstring)."""
    start = final if start is None else float(start)
    w = int(warmup_epochs)
    if epoch >= w:
        return float(final)
    if w == 1:
        return start
    return start + (float(final) - start) * int(epoch) / (w - 1)


class PrototypeLayer(nn.Module):
    """``g = normalize(z) normalize(V)^T``: DINO's weight-normalised last layer (no bias, norm
    fixed to 1) after the L2-normalised bottleneck. ``z (N, in_dim) -> (N, out_dim)``, cosines
    in ``[-1, 1]``. ``V`` starts truncated normal with std 0.02, as in the reference."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if int(in_dim) < 1 or int(out_dim) < 1:
            raise ValueError(f"losses.out_dim and the embedding width must be >= 1: {out_dim}")
        self.weight = nn.Parameter(torch.empty(int(out_dim), int(in_dim)))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # in float32 also under autocast: the scores are divided by temperatures down to 0.04
        with torch.autocast(device_type=z.device.type, enabled=False):
            return F.linear(F.normalize(z.float(), dim=1), F.normalize(self.weight.float(), dim=1))


def _local_crops(spec: Mapping[str, Any] | None) -> tuple[int, tuple[float, float]]:
    given = dict(spec or {})
    unknown = sorted(set(given) - {"number", "scale"})
    if unknown:
        raise ValueError(f"losses.local_crops: unknown key(s) {unknown}; known: number, scale")
    merged = {**DINO_DEFAULTS["local_crops"], **given}
    number, scale = merged["number"], merged["scale"]
    if int(number) != number or int(number) < 0:
        raise ValueError(f"losses.local_crops.number must be an integer >= 0, got {number}")
    if not isinstance(scale, list | tuple) or len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"losses.local_crops.scale must be [lo, hi] in (0, 1], got {scale!r}")
    return int(number), (float(scale[0]), float(scale[1]))


class DINO(SSLObjective):
    """DINO (module docstring). ``embed_dim``: the encoder's output width ``D``.

    Call :meth:`attach` with the student encoder before training (or before loading a state
    dict): it makes the teacher (encoder and prototype layer, frozen deep copies). The teacher
    runs in the objective's training mode without gradient, as BYOL's.
    """

    name = "dino"

    def __init__(
        self,
        embed_dim: int,
        out_dim: int = 4096,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        teacher_temp_start: float | None = None,
        teacher_temp_warmup_epochs: int = 0,
        center_momentum: float = 0.9,
        tau: float = 0.996,
        cosine_tau: bool = True,
        local_crops: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        temps = {"student_temp": student_temp, "teacher_temp": teacher_temp}
        if teacher_temp_start is not None:
            temps["teacher_temp_start"] = teacher_temp_start
        for key, val in temps.items():
            if not float(val) > 0:
                raise ValueError(f"losses.{key} must be > 0, got {val}")
        if int(teacher_temp_warmup_epochs) < 0:
            raise ValueError(
                f"losses.teacher_temp_warmup_epochs must be >= 0, got {teacher_temp_warmup_epochs}"
            )
        for key, val in (("center_momentum", center_momentum), ("tau", tau)):
            if not 0 <= float(val) <= 1:
                raise ValueError(f"losses.{key} must be in [0, 1], got {val}")
        self.student_temp, self.teacher_temp_final = float(student_temp), float(teacher_temp)
        self.teacher_temp_start = None if teacher_temp_start is None else float(teacher_temp_start)
        self.warmup_epochs = int(teacher_temp_warmup_epochs)
        self.center_momentum = float(center_momentum)
        self.tau_base, self.cosine_tau = float(tau), bool(cosine_tau)
        self.local_crops, self.local_crop_scale = _local_crops(local_crops)
        self.prototypes = PrototypeLayer(embed_dim, out_dim)
        self.register_buffer("center", torch.zeros(1, int(out_dim)))
        self.teacher: nn.Module | None = None
        self.teacher_prototypes: nn.Module | None = None
        self.tau = self.tau_base
        self.teacher_temp = teacher_temperature(
            0, self.teacher_temp_final, self.teacher_temp_start, self.warmup_epochs
        )

    def attach(self, encoder: nn.Module) -> DINO:
        self.teacher = make_teacher(encoder)
        self.teacher_prototypes = make_teacher(self.prototypes)
        return self

    def _teachers(self) -> tuple[nn.Module, nn.Module]:
        if self.teacher is None or self.teacher_prototypes is None:
            raise RuntimeError("DINO: call attach(encoder) before training")
        return self.teacher, self.teacher_prototypes

    def views_description(self) -> str:
        """What the objective sees, for the training log."""
        if self.local_crops == 0:
            return "two global views (no multi-crop)"
        return (
            f"two global views + {self.local_crops} local crops of area fraction "
            f"{list(self.local_crop_scale)} (student only)"
        )

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.teacher_temp = teacher_temperature(
            epoch, self.teacher_temp_final, self.teacher_temp_start, self.warmup_epochs
        )

    def forward(  # type: ignore[override]
        self, encoder: Encoder, v1: torch.Tensor, v2: torch.Tensor, *local: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        teacher, teacher_prototypes = self._teachers()
        if len(local) != self.local_crops:
            raise ValueError(f"DINO: expected {self.local_crops} local crops, got {len(local)}")
        n = v1.shape[0]
        # one forward pass per crop size, as the reference's MultiCropWrapper
        z = encoder(torch.cat([v1, v2])).float()  # (2N, D)
        scores = self.prototypes(z).chunk(2)
        if local:
            scores += self.prototypes(encoder(torch.cat(local)).float()).chunk(len(local))
        with torch.no_grad():
            t = teacher_prototypes(teacher(torch.cat([v1, v2])).float())  # (2N, K)
        loss = dino_loss(
            scores,
            t.chunk(2),
            self.center,
            student_temp=self.student_temp,
            teacher_temp=self.teacher_temp,
        )
        with torch.no_grad():
            p_t = F.softmax((t - self.center) / self.teacher_temp, dim=-1)
            entropy = float(-(p_t * torch.log(p_t.clamp_min(1e-30))).sum(dim=-1).mean())
        update_center(self.center, t, self.center_momentum)
        terms = {
            "teacher_temp": self.teacher_temp,
            "tau": self.tau,
            "teacher_entropy": entropy,
            "embedding_std": embedding_std(z[:n]),
        }
        return loss, terms

    @torch.no_grad()
    def after_step(self, encoder: nn.Module, progress: float) -> None:
        teacher, teacher_prototypes = self._teachers()
        tau = momentum(self.tau_base, progress, self.cosine_tau)
        ema_update(teacher, encoder, tau)
        ema_update(teacher_prototypes, self.prototypes, tau)
        self.tau = tau
