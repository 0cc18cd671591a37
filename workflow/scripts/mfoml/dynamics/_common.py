"""Small helpers shared by the dynamics modules (torch only, no other mfoml import).

The dynamics modules take any ``torch.nn.Module`` mapping a batch ``(B, *input_shape)`` to
logits ``(B, C)`` and numpy or torch data, so that they sit beside (not above) the networks
package.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free model)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def as_tensors(x: Any, y: Any, what: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` as float ``(N, ...)`` and ``y`` as int64 ``(N,)`` tensors (numpy ``x``: float32)."""
    if isinstance(x, torch.Tensor):  # tensors keep their float dtype (e.g. float64 tests)
        xt = x if x.dtype.is_floating_point else x.float()
    else:  # numpy: float32, the dtype of the pipeline's networks
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = y if isinstance(y, torch.Tensor) else torch.from_numpy(np.asarray(y))
    if yt.dim() != 1 or xt.shape[0] != yt.shape[0]:
        raise ValueError(f"{what}: x {tuple(xt.shape)} and y {tuple(yt.shape)} do not match")
    if yt.dtype.is_floating_point or yt.dtype == torch.bool:
        raise ValueError(f"{what}: y must hold integer class labels, got {yt.dtype}")
    return xt, yt.to(torch.int64)


def batches(n: int, batch_size: int | None) -> list[slice]:
    """Consecutive slices of ``range(n)``; ``None`` or ``>= n``: one batch."""
    if batch_size is None or batch_size >= n:
        return [slice(0, n)]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [slice(a, min(n, a + batch_size)) for a in range(0, n, batch_size)]


@torch.no_grad()
def evaluate(
    model: nn.Module, x: Any, y: Any, *, batch_size: int = 1024, device: Any = None
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in eval mode (the training flag is restored)."""
    dev = model_device(model) if device is None else resolve_device(device)
    xt, yt = as_tensors(x, y, "evaluate")
    n = len(yt)
    if n == 0:
        return float("nan"), float("nan")
    was = model.training
    model.eval()
    loss = 0.0
    correct = 0
    try:
        for s in batches(n, batch_size):
            xb, yb = xt[s].to(dev), yt[s].to(dev)
            logits = model(xb).float()
            loss += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    finally:
        model.train(was)
    return loss / n, correct / n


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Restore the model's buffers (BatchNorm running statistics) and training flag on exit."""
    saved = {name: buf.detach().clone() for name, buf in model.named_buffers()}
    was = model.training
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buf in model.named_buffers():
                if name in saved:
                    buf.copy_(saved[name])
        model.train(was)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters with ``requires_grad`` (the ones whose Hessian or gradient is meant)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameter")
    return params


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one 1-D vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vec: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a 1-D vector into tensors shaped like ``like``."""
    out, a = [], 0
    for t in like:
        k = t.numel()
        out.append(vec[a : a + k].view_as(t))
        a += k
    if a != vec.numel():
        raise ValueError(f"vector has {vec.numel()} entries, the tensors {a}")
    return out


def fixed_subset(n: int, size: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset of ``range(n)`` of ``size`` rows (all when None/>=n)."""
    if size is None or size >= n:
        return np.arange(n)
    if size < 1:
        raise ValueError(f"subset size must be >= 1, got {size}")
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
