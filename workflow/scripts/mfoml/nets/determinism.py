"""Deterministic torch algorithms for one training call, switched on and then restored.

The training loops (supervised, self-supervised, masked-language-model pretraining) all run with
``torch.use_deterministic_algorithms(True, warn_only=True)`` (a kernel without a deterministic
version warns instead of failing) and, on GPUs, cuDNN in deterministic mode without
benchmarking; the caller's settings are put back afterwards. This module is that one piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DeterminismState", "enable_determinism", "restore_determinism"]


@dataclass(frozen=True)
class DeterminismState:
    """The flags before :func:`enable_determinism`, for :func:`restore_determinism`."""

    algorithms: bool
    warn_only: bool
    cudnn: tuple[bool, bool] | None  # (benchmark, deterministic), None when left alone


def enable_determinism(cudnn: bool = True) -> DeterminismState:
    """Switch on deterministic algorithms (``warn_only``: a kernel without a deterministic
    version warns instead of failing) and, with ``cudnn``, cuDNN's deterministic mode without
    benchmarking. Returns the previous state."""
    state = DeterminismState(
        algorithms=torch.are_deterministic_algorithms_enabled(),
        warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn=(
            (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) if cudnn else None
        ),
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    if cudnn:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    return state


def restore_determinism(state: DeterminismState) -> None:
    """Put back the flags saved by :func:`enable_determinism`."""
    torch.use_deterministic_algorithms(state.algorithms, warn_only=state.warn_only)
    if state.cudnn is not None:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = state.cudnn
