"""Gradient norm of the full parameter vector, summarised over an epoch's steps.

``||g||_2 = sqrt(sum_p ||grad_p||_F^2)`` over all parameters that have a gradient, computed by
``torch.nn.utils.get_total_norm`` (one fused reduction). Under mixed precision the gradients
must be unscaled first (``GradScaler.unscale_``); :class:`GradNormMeter` records one value per
optimiser step and reports the mean and the maximum over the epoch (``inf``/NaN steps, which a
``GradScaler`` skips, are counted separately, not averaged in).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

__all__ = ["GradNormMeter", "total_grad_norm"]


def total_grad_norm(parameters: Iterable[torch.nn.Parameter]) -> float:
    """L2 norm of the concatenated gradients (parameters without a gradient are skipped)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.nn.utils.get_total_norm(grads, norm_type=2.0))


class GradNormMeter:
    """Mean and max of the per-step gradient norm over an epoch.

    ``update(norm)`` after each backward pass; ``summary()`` returns ``{"grad_norm_mean",
    "grad_norm_max", "grad_norm_nonfinite"}`` (NaN mean/max without a finite step) and
    ``reset()`` starts the next epoch.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the recorded steps."""
        self._sum = 0.0
        self._max = -math.inf
        self._n = 0
        self._nonfinite = 0

    def update(self, norm: float) -> None:
        """Record one step's gradient norm."""
        norm = float(norm)
        if not math.isfinite(norm):
            self._nonfinite += 1
            return
        self._sum += norm
        self._max = max(self._max, norm)
        self._n += 1

    def summary(self) -> dict[str, float | int]:
        """``grad_norm_mean``, ``grad_norm_max`` over the finite steps, ``grad_norm_nonfinite``."""
        if self._n == 0:
            return {
                "grad_norm_mean": math.nan,
                "grad_norm_max": math.nan,
                "grad_norm_nonfinite": self._nonfinite,
            }
        return {
            "grad_norm_mean": self._sum / self._n,
            "grad_norm_max": self._max,
            "grad_norm_nonfinite": self._nonfinite,
        }
