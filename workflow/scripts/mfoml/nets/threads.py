"""Intra-op torch threads of a training job (issue 27): how many of the job's threads pay.

A job's ``threads`` (``resources.<rule>.threads``, what the scheduler reserves) is the most it
may use. A second intra-op (OpenMP) thread only pays when the forward work of a batch is large:
below that the per-operator fork/join dominates, and when another process holds a core every
operator waits for the thread that is not running (``OMP_WAIT_POLICY=PASSIVE``, set by the
Snakefile, only stops the spinning). Measured with ``benchmarks/bench_train.py`` on the shared
2-core machine (another process using ~1 core during "idle"; wall of 2 threads / wall of 1
thread per epoch, Adam, batch 100, ``OMP_WAIT_POLICY=PASSIVE``):

==========================  ====================  ======  ======
model                       GMAC forward / batch  idle    busy
==========================  ====================  ======  ======
mlp (depth 4, width 100)    0.004                 3.9x    1.13x
conv1d (the reference's)    0.039                 1.9x    4.1x
conv (depth 3, width 32)    0.16                  1.06x   3.9x
conv width 64               0.63                  1.26x   1.81x
resnet18 8x8 input          3.5                   0.64x   1.56x
resnet18 12x12              9.3                   0.58x   1.03x
resnet18 16x16              13.9                  0.57x   1.06x
==========================  ====================  ======  ======

So each thread beyond the first needs about :data:`MACS_PER_EXTRA_THREAD` (8 GMAC) of forward
work per batch to stay within 1.3x of one thread under contention. The choice depends on the
model and the batch only, never on the machine's load: the same config and seed give the same
thread count, hence the same numbers.

:func:`forward_macs` counts a model's multiply-accumulates per sample (``nn.Linear`` and
``nn.Conv1d/2d/3d`` only: attention products, normalisations and activations are left out, so it
is a lower bound for a transformer); :func:`training_threads` is the policy (config
``train.torch_threads``: ``auto`` or an integer); :func:`set_training_threads` applies it
(``torch.set_num_threads``) after the model is built and before training, in the rules
``train``, ``train_ssl`` and ``pretrain`` (an MLM stage: always ``auto``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from mfoml.nets.probed import resolve_device

__all__ = [
    "MACS_PER_EXTRA_THREAD",
    "example_input",
    "forward_macs",
    "set_training_threads",
    "training_threads",
]

log = logging.getLogger(__name__)

#: forward multiply-accumulates per batch that each intra-op thread beyond the first needs
#: (benchmarks/bench_train.py; see the module docstring)
MACS_PER_EXTRA_THREAD = 8e9

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def forward_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one sample's forward pass through ``model``.

    Counted with forward hooks: an ``nn.Linear`` adds ``output numel x in_features``, an
    ``nn.Conv1d/2d/3d`` ``output numel x in_channels / groups x prod(kernel_size)``; every call
    of a module counts. The pass runs under ``torch.no_grad()`` in eval mode; afterwards every
    module's training flag, torch's RNG state (CPU and initialized CUDA devices) are restored
    and the hooks removed, so a later training step sees the model as it was (eval mode: no
    BatchNorm statistics updated, no dropout drawn).

    Parameters
    ----------
    model : the network (on any device; ``example`` is moved to its parameters' device).
    example : ``(n, *input_shape)`` an input batch of the model's dtype (float32, or int64
        token ids); ``n >= 1`` samples, the count is per sample (total / n).

    Returns
    -------
    The MACs per sample (int).
    """
    if example.dim() < 1 or example.shape[0] < 1:
        raise ValueError(f"forward_macs: example needs a batch dimension >= 1, got {example.shape}")
    total = 0

    def count(module: nn.Module, args: Any, output: Any) -> None:
        nonlocal total
        out = output if torch.is_tensor(output) else output[0]
        if isinstance(module, nn.Linear):
            total += out.numel() * module.in_features
        else:
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            total += out.numel() * per_output

    modes = [(m, m.training) for m in model.modules()]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, (nn.Linear, *_CONVS))
    ]
    param = next(model.parameters(), None)
    x = example if param is None else example.to(param.device)
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes:
            module.training = training
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    return total // int(example.shape[0])


def training_threads(
    requested: int, macs_per_batch: float, setting: str | int = "auto"
) -> tuple[int, str]:
    """The intra-op threads a training job uses, and why (a line for the job's log).

    Parameters
    ----------
    requested : the job's threads (at least 1 is used).
    macs_per_batch : forward multiply-accumulates of one training batch
        (:func:`forward_macs` x batch size); unused for an integer ``setting``.
    setting : ``"auto"``: ``min(requested, 1 + floor(macs_per_batch /
        MACS_PER_EXTRA_THREAD))``; a positive integer: exactly ``min(setting, requested)``.

    Returns
    -------
    ``(threads, reason)``.
    """
    requested = max(1, int(requested))
    if isinstance(setting, bool) or not (setting == "auto" or isinstance(setting, int)):
        raise ValueError(f"train.torch_threads: 'auto' or a positive integer, got {setting!r}")
    if setting != "auto":
        if setting < 1:
            raise ValueError(f"train.torch_threads: must be >= 1, got {setting}")
        used = min(int(setting), requested)
        return used, (
            f"torch threads: {used} (train.torch_threads {setting}, the job's threads {requested})"
        )
    if not macs_per_batch >= 0:
        raise ValueError(f"macs_per_batch must be >= 0, got {macs_per_batch}")
    used = min(requested, 1 + math.floor(macs_per_batch / MACS_PER_EXTRA_THREAD))
    return used, (
        f"torch threads: {used} of the job's {requested} (train.torch_threads auto: "
        f"{macs_per_batch / 1e9:.3g} GMAC forward per batch; each thread beyond the first "
        f"needs {MACS_PER_EXTRA_THREAD / 1e9:g} GMAC, mfoml.nets.threads)"
    )


def example_input(x_rows: np.ndarray) -> torch.Tensor:
    """One sample of zeros shaped like the rows ``x_rows`` ``(n, *input_shape)``: int64 token
    ids for integer rows (a text run), float32 otherwise."""
    dtype = torch.int64 if np.issubdtype(x_rows.dtype, np.integer) else torch.float32
    return torch.zeros((1, *x_rows.shape[1:]), dtype=dtype)


def set_training_threads(
    model: nn.Module,
    x_rows: np.ndarray,
    batch_size: int,
    requested: int,
    setting: str | int = "auto",
    *,
    device: str = "cpu",
    views: int = 1,
) -> int:
    """Apply :func:`training_threads` to the job (``torch.set_num_threads``) and log why.

    The MACs are counted only where they decide: ``auto`` with ``requested > 1`` on the CPU
    (:func:`forward_macs` of :func:`example_input`; one thread needs no forward pass). A run on
    a CUDA device keeps the job's threads under ``auto`` (the forward work is not on them).

    Parameters
    ----------
    model : the run's network, built (its weights as training starts).
    x_rows : ``(n, *input_shape)`` the training inputs (shape and dtype used, not the values).
    batch_size : samples per training batch (a full-batch run: the training-set size).
    requested : the job's threads.
    setting : ``train.torch_threads`` (``"auto"`` or a positive integer).
    device : the run's device (``auto``, ``cpu``, ``cuda``...).
    views : forward passes per sample and step (self-supervised runs: 2 views).

    Returns
    -------
    The threads set.
    """
    requested = max(1, int(requested))
    if requested == 1:
        used, reason = 1, "torch threads: 1 (the job's threads)"
    elif setting != "auto":
        used, reason = training_threads(requested, 0.0, setting)
    elif resolve_device(device).type != "cpu":
        used, reason = requested, f"torch threads: {requested} (the job's; training on {device})"
    else:
        macs = forward_macs(model, example_input(x_rows)) * int(batch_size) * int(views)
        used, reason = training_threads(requested, macs, setting)
    torch.set_num_threads(used)
    log.info("%s", reason)
    return used
