"""Input sensitivity: the size of the gradient of the loss with respect to the input.

For each sample, ``g_i = d CE(f(x_i), y_i) / d x_i`` (a tensor of the input's shape), and the
sensitivity is the mean over samples of its Frobenius norm ``||g_i||_F`` (the course
homework's measure, compared across batch sizes: flat minima give smaller values). The model is
evaluated in eval mode, so that the samples of a batch do not interact (BatchNorm uses its
running statistics) and the gradient of the summed loss of a batch gives every per-sample
gradient at once. The training flag is restored; the parameters' gradients are not touched.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mfoml.dynamics._common import as_tensors, batches, model_device

__all__ = ["input_gradient_norms", "input_sensitivity"]


def input_gradient_norms(model: nn.Module, x: Any, y: Any, *, batch_size: int = 512) -> np.ndarray:
    """Per-sample ``||d loss_i / d x_i||_F``.

    Parameters
    ----------
    model : maps ``(B, *input_shape)`` to logits ``(B, C)``; evaluated in eval mode.
    x : ``(N, *input_shape)`` inputs (numpy: cast to float32; torch: dtype kept).
    y : ``(N,)`` integer labels.
    batch_size : samples per pass.

    Returns
    -------
    float64 ``(N,)`` gradient norms, in loss units per input unit.
    """
    xt, yt = as_tensors(x, y, "input_sensitivity")
    dev = model_device(model)
    was = model.training
    model.eval()
    out = np.empty(len(yt))
    try:
        for s in batches(len(yt), batch_size):
            xb = xt[s].to(dev).detach().requires_grad_(True)
            loss = F.cross_entropy(model(xb), yt[s].to(dev), reduction="sum")
            (g,) = torch.autograd.grad(loss, xb)
            out[s] = g.reshape(len(g), -1).norm(dim=1).double().cpu().numpy()
    finally:
        model.train(was)
    return out


def input_sensitivity(
    model: nn.Module, x: Any, y: Any, *, batch_size: int = 512
) -> dict[str, float]:
    """Mean and standard deviation of :func:`input_gradient_norms` over the samples.

    Returns
    -------
    dict ``sensitivity`` (mean ``||g_i||_F``), ``sensitivity_std``, ``n_samples``.
    """
    g = input_gradient_norms(model, x, y, batch_size=batch_size)
    if g.size == 0:
        return {"sensitivity": math.nan, "sensitivity_std": math.nan, "n_samples": 0}
    return {
        "sensitivity": float(g.mean()),
        "sensitivity_std": float(g.std(ddof=1)) if g.size > 1 else math.nan,
        "n_samples": int(g.size),
    }
