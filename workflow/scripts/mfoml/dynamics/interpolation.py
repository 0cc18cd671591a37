"""Linear interpolation between two networks of the same architecture.

``theta(t) = (1 - t) theta_1 + t theta_2`` for every floating-point parameter and buffer, for
``t`` in a grid (default ``-1 .. 2``, so that both end points and the extrapolation on each
side are seen: the course homework's flatness study between a small-batch and a large-batch
solution, Keskar et al. 2017). The BatchNorm running statistics of the interpolated network
are *not* interpolated but recomputed at each ``t`` from the training data
(:func:`recompute_batchnorm`), since the statistics of a mixture of weights are not the mixture
of the statistics. Loss and accuracy on the training and test data are evaluated at each ``t``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mfoml.dynamics._common import as_tensors, batches, evaluate, fixed_subset, model_device

__all__ = [
    "default_ts",
    "interpolate_states",
    "interpolation_curve",
    "labeled_curve",
    "recompute_batchnorm",
]

log = logging.getLogger(__name__)


def default_ts(t_min: float = -1.0, t_max: float = 2.0, n_points: int = 31) -> np.ndarray:
    """``n_points`` equally spaced values in ``[t_min, t_max]`` (0 and 1 included by default)."""
    if n_points < 2 or not t_max > t_min:
        raise ValueError(f"need t_max > t_min and n_points >= 2, got {t_min}, {t_max}, {n_points}")
    return np.linspace(float(t_min), float(t_max), int(n_points))


def interpolate_states(
    state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor], t: float
) -> dict[str, torch.Tensor]:
    """``(1 - t) a + t b`` for floating tensors; other tensors (counters) are taken from ``a``.

    Raises ``ValueError`` naming the first key whose presence or shape differs.
    """
    if set(state_a) != set(state_b):
        diff = sorted(set(state_a) ^ set(state_b))
        raise ValueError(f"the two states have different keys, e.g. {diff[:3]}")
    out = {}
    for k, va in state_a.items():
        vb = state_b[k]
        if va.shape != vb.shape:
            raise ValueError(f"state key {k!r}: shapes {tuple(va.shape)} and {tuple(vb.shape)}")
        if va.dtype.is_floating_point:
            out[k] = (1.0 - t) * va + t * vb.to(va.dtype)
        else:
            out[k] = va.clone()
    return out


def _bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, x: Any, *, batch_size: int | None = 1024) -> int:
    """Reset and recompute every BatchNorm layer's running statistics on ``x``.

    Each BatchNorm layer gets ``momentum=None`` (a cumulative average) for the pass, so that the
    running mean is the mean over all of ``x`` (batches of equal size; exact for the mean) and
    the running variance the average of the per-batch unbiased variances (the exact unbiased
    variance when ``x`` is one batch, ``batch_size=None``). Forward in training mode; the
    training flag and the momenta are restored.

    Returns
    -------
    The number of BatchNorm layers recomputed (0: nothing to do, no pass is run).
    """
    layers = _bn_layers(model)
    if not layers:
        return 0
    xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x, dtype=np.float32))
    dev = model_device(model)
    was = model.training
    momenta = [m.momentum for m in layers]
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        n = len(xt)
        slices = batches(n, batch_size)
        if len(slices) > 1 and slices[-1].stop - slices[-1].start == 1:
            slices = slices[:-1]  # BatchNorm cannot normalise one sample in training mode
        for s in slices:
            model(xt[s].to(dev))
    finally:
        for m, mom in zip(layers, momenta, strict=True):
            m.momentum = mom
        model.train(was)
    return len(layers)


def interpolation_curve(
    model_a: nn.Module,
    model_b: nn.Module,
    train: tuple[Any, Any],
    test: tuple[Any, Any] | None = None,
    *,
    ts: Sequence[float] | None = None,
    bn_samples: int | None = 2048,
    bn_batch_size: int | None = None,
    eval_samples: int | None = None,
    eval_batch_size: int = 1024,
    seed: int = 0,
) -> Any:
    """Loss and accuracy along ``theta(t) = (1 - t) theta_a + t theta_b``.

    Parameters
    ----------
    model_a, model_b : networks of the same architecture (``state_dict`` keys and shapes).
    train : ``(x, y)`` training data: BatchNorm statistics (a seeded subset of ``bn_samples``
        rows) and the train loss / accuracy (a seeded subset of ``eval_samples`` rows).
    test : ``(x, y)`` test data or ``None`` (NaN columns).
    ts : values of ``t`` (default :func:`default_ts`).
    bn_samples : rows used to recompute the BatchNorm statistics (``None``: all).
    bn_batch_size : batch size of that pass (``None``: one batch, exact statistics).
    eval_samples : rows of each split evaluated (``None``: all).
    eval_batch_size : batch size of the evaluation.
    seed : seed of the subsets.

    Returns
    -------
    pandas.DataFrame with columns ``t, train_loss, train_acc, test_loss, test_acc`` (mean
    cross-entropy in nats, accuracy in [0, 1]).
    """
    import pandas as pd

    ts = default_ts() if ts is None else [float(t) for t in ts]
    state_a = {k: v.detach().cpu() for k, v in model_a.state_dict().items()}
    state_b = {k: v.detach().cpu() for k, v in model_b.state_dict().items()}
    net = copy.deepcopy(model_a)
    xtr, ytr = as_tensors(*train, what="interpolation train")
    bn_idx = torch.from_numpy(fixed_subset(len(ytr), bn_samples, seed))
    ev_idx = torch.from_numpy(fixed_subset(len(ytr), eval_samples, seed + 1))
    test_sets = None
    if test is not None and test[0] is not None:
        xte, yte = as_tensors(*test, what="interpolation test")
        te_idx = torch.from_numpy(fixed_subset(len(yte), eval_samples, seed + 2))
        test_sets = (xte[te_idx], yte[te_idx])
    rows = []
    for t in ts:
        net.load_state_dict(interpolate_states(state_a, state_b, t))
        recompute_batchnorm(net, xtr[bn_idx], batch_size=bn_batch_size)
        tl, ta = evaluate(net, xtr[ev_idx], ytr[ev_idx], batch_size=eval_batch_size)
        if test_sets is not None:
            vl, va = evaluate(net, *test_sets, batch_size=eval_batch_size)
        else:
            vl = va = float("nan")
        rows.append({"t": t, "train_loss": tl, "train_acc": ta, "test_loss": vl, "test_acc": va})
    return pd.DataFrame(rows, columns=["t", "train_loss", "train_acc", "test_loss", "test_acc"])


def labeled_curve(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Mapping[str, tuple[Any, Any]],
    cfg: Mapping[str, Any],
    a: tuple[str, int],
    b: tuple[str, int],
) -> Any:
    """:func:`interpolation_curve` with the settings of a dynamics rule, labeled by its ends.

    Parameters
    ----------
    model_a, model_b : the networks at ``t = 0`` and ``t = 1``.
    data : ``{"train": (x, y), "test": (x, y)}`` (``mfoml.dynamics.rundata.run_splits``).
    cfg : the rule's parameter slice: ``t_min``, ``t_max``, ``n_points`` (the grid of ``t``,
        :func:`default_ts`), ``bn_samples``, ``eval_samples`` and optionally ``seed`` (0).
    a, b : ``(run id, checkpoint epoch)`` of each end.

    Returns
    -------
    pandas.DataFrame: columns ``run_a, epoch_a, run_b, epoch_b`` (the same on every row), then
    those of :func:`interpolation_curve`, one row per ``t``. The train loss at ``t = 0, 0.5, 1``
    (the nearest grid points) is logged.
    """
    curve = interpolation_curve(
        model_a,
        model_b,
        data["train"],
        data["test"],
        ts=default_ts(cfg["t_min"], cfg["t_max"], int(cfg["n_points"])),
        bn_samples=cfg["bn_samples"],
        eval_samples=cfg["eval_samples"],
        seed=int(cfg.get("seed", 0)),
    )
    ends = (("run_a", a[0]), ("epoch_a", int(a[1])), ("run_b", b[0]), ("epoch_b", int(b[1])))
    for i, (col, val) in enumerate(ends):
        curve.insert(i, col, val)
    log.info(
        "%s@%s -> %s@%s: train loss at t=0 %.4f, t=0.5 %.4f, t=1 %.4f",
        *a,
        *b,
        *[float(curve.loc[(curve["t"] - t).abs().idxmin(), "train_loss"]) for t in (0, 0.5, 1)],
    )
    return curve
