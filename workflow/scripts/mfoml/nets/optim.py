"""AdamW with the usual transformer parameter groups, and the warm-up + linear-decay schedule.

``adamw_param_groups``: weight decay on the weight matrices only; biases, LayerNorm
parameters, embeddings (token and position tables) and learned attention temperatures are not
decayed (as BERT's recipe; decaying an embedding pulls rare tokens to zero).

``warmup_linear``: the learning-rate factor per optimizer step ``s`` (0-based) for ``S``
total steps and ``W`` warm-up steps is ``(s + 1) / W`` while ``s < W``, then
``max(0, (S - s) / (S - W))``: it rises linearly to the base rate over the first ``W`` steps and
decays linearly to zero at the last step (HuggingFace's ``get_linear_schedule_with_warmup``,
with the first step at ``1/W`` instead of 0 so that no step is wasted).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["adamw_param_groups", "make_adamw", "warmup_linear", "warmup_linear_factor"]

_NO_DECAY_MODULES = (nn.LayerNorm, nn.Embedding)


def adamw_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two parameter groups: decayed weight matrices, and everything else without decay."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            if isinstance(module, _NO_DECAY_MODULES) or name != "weight" or p.dim() < 2:
                no_decay.append(p)
            else:
                decay.append(p)
    groups = [{"params": decay, "weight_decay": float(weight_decay)}]
    groups.append({"params": no_decay, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def make_adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over :func:`adamw_param_groups`."""
    return torch.optim.AdamW(adamw_param_groups(model, weight_decay), lr=float(lr))


def warmup_linear_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """The learning-rate factor of optimizer step ``step`` (see the module docstring)."""
    total, warm = max(1, int(total_steps)), max(0, int(warmup_steps))
    if step < warm:
        return (step + 1) / warm
    if total <= warm:
        return 1.0
    return max(0.0, (total - step) / (total - warm))


def warmup_linear(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`warmup_linear_factor`; call ``step()`` after each batch."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_linear_factor(s, total_steps, warmup_steps)
    )
