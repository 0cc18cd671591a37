"""Nonlinearities of the networks by name, with the heaviside surrogate gradient.

``relu, gelu, prelu`` (one learned slope per layer instance, init 0.25), ``sigmoid, tanh``, and
``heaviside``: forward ``1[x > 0]`` (values 0/1); backward uses the surrogate gradient of a
steep sigmoid, ``d/dx sigmoid(k x) = k s (1 - s)`` with ``s = sigmoid(k x)`` and slope
``k = heaviside_slope`` (default 4, so the surrogate equals 1 at ``x = 0`` like a
straight-through estimator, and decays away from 0). See :class:`HeavisideSurrogate`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "Heaviside", "HeavisideSurrogate", "make_activation"]

ACTIVATIONS = ("relu", "gelu", "prelu", "sigmoid", "tanh", "heaviside")


class HeavisideSurrogate(torch.autograd.Function):
    """Step function with a sigmoid surrogate gradient.

    Forward: ``y = 1[x > 0]`` (same dtype as ``x``). Backward:
    ``dL/dx = dL/dy * k * s * (1 - s)``, ``s = sigmoid(k * x)``.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, slope: float) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.slope * x)
        return grad_out * ctx.slope * s * (1 - s), None


class Heaviside(nn.Module):
    """``nn.Module`` wrapper of :class:`HeavisideSurrogate` with surrogate slope ``slope``."""

    def __init__(self, slope: float = 4.0) -> None:
        super().__init__()
        if not slope > 0:
            raise ValueError(f"heaviside_slope must be > 0, got {slope}")
        self.slope = float(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return HeavisideSurrogate.apply(x, self.slope)

    def extra_repr(self) -> str:
        return f"slope={self.slope}"


def make_activation(name: str, *, heaviside_slope: float = 4.0) -> nn.Module:
    """Return a new activation module by name (one of :data:`ACTIVATIONS`)."""
    name = str(name).lower()
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU()
    if name == "prelu":
        return nn.PReLU()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    if name == "heaviside":
        return Heaviside(heaviside_slope)
    raise ValueError(f"activation: unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
