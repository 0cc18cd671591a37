"""Full-batch gradient descent with the sharpness tracked against ``2 / lr``.

The "edge of stability" study (Cohen et al. 2021): plain gradient descent ``theta <- theta -
lr grad L(theta)`` (no momentum, no weight decay) on a fixed training subset, ``L`` the mean
cross-entropy over the whole subset in one forward pass (BatchNorm in training mode normalises
with the subset's statistics, so ``L`` is a deterministic function of ``theta``). Every
``sharpness_every`` steps the top Hessian eigenvalue of that same ``L`` (Lanczos,
:mod:`mfoml.dynamics.sharpness`, ``mode="train"``) is recorded; gradient descent on a quadratic
is stable only while it stays below ``2 / lr``, and Cohen et al. observe that it rises to
about ``2 / lr`` ("progressive sharpening") and hovers there.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mfoml.dynamics._common import as_tensors, model_device, trainable_parameters
from mfoml.dynamics.gradnorm import total_grad_norm
from mfoml.dynamics.sharpness import hessian_vector_product, lanczos_top_eigenvalue

__all__ = ["EOS_COLUMNS", "full_batch_gd"]

log = logging.getLogger(__name__)

EOS_COLUMNS = [
    "step",
    "train_loss",
    "train_acc",
    "grad_norm",
    "sharpness",
    "two_over_lr",
    "lr",
    "seconds",
]


def full_batch_gd(
    model: nn.Module,
    x: Any,
    y: Any,
    *,
    lr: float,
    steps: int,
    sharpness_every: int = 10,
    sharpness_iters: int = 20,
    sharpness_tol: float = 1e-4,
    seed: int = 0,
    log_every: int = 50,
) -> Any:
    """Run full-batch gradient descent in place and return the per-step table.

    Parameters
    ----------
    model : maps ``(B, *input_shape)`` to logits; trained in place (training mode).
    x, y : the training subset (all rows form the one batch).
    lr : step size (> 0).
    steps : number of gradient steps (>= 0).
    sharpness_every : record the sharpness before steps ``0, k, 2k, ...`` and after the last
        step (0: never).
    sharpness_iters, sharpness_tol : Lanczos iterations and relative tolerance per estimate.
    seed : Lanczos start vector seed.
    log_every : a progress line on the module's logger every ``log_every`` steps.

    Returns
    -------
    pandas.DataFrame with :data:`EOS_COLUMNS`: one row per step ``0..steps`` (row ``s`` is the
    state *before* step ``s + 1``; the last row the final state, whose ``grad_norm`` is that of
    the final point), ``sharpness`` NaN where not computed, ``two_over_lr = 2 / lr``.

    Raises
    ------
    FloatingPointError : when the loss becomes NaN or infinite (the table so far is attached
        as the exception's ``table`` attribute).
    """
    import pandas as pd

    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if steps < 0 or sharpness_every < 0:
        raise ValueError(f"steps and sharpness_every must be >= 0, got {steps}, {sharpness_every}")
    params = trainable_parameters(model)
    dev = model_device(model)
    xt, yt = as_tensors(x, y, "full_batch_gd")
    xt, yt = xt.to(dev), yt.to(dev)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for step in range(steps + 1):
        sharp = math.nan
        if sharpness_every and (step % sharpness_every == 0 or step == steps):
            hvp = hessian_vector_product(model, xt, yt, batch_size=None, mode="train")
            sharp = lanczos_top_eigenvalue(
                hvp, n_iter=sharpness_iters, tol=sharpness_tol, seed=seed
            )["eigenvalue"]
        model.train()
        logits = model(xt)
        loss = F.cross_entropy(logits, yt)
        for p in params:
            p.grad = None
        loss.backward()
        row = {
            "step": step,
            "train_loss": float(loss.detach()),
            "train_acc": float((logits.detach().argmax(1) == yt).float().mean()),
            "grad_norm": total_grad_norm(params),
            "sharpness": sharp,
            "two_over_lr": 2.0 / lr,
            "lr": float(lr),
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        if not math.isfinite(row["train_loss"]):
            exc = FloatingPointError(
                f"full-batch gradient descent diverged at step {step} (loss {row['train_loss']})"
            )
            exc.table = pd.DataFrame(rows, columns=EOS_COLUMNS)  # type: ignore[attr-defined]
            raise exc
        if step % max(1, log_every) == 0 or step == steps:
            log.info(
                "step %d/%d loss=%.4f acc=%.3f sharpness=%.3g 2/lr=%.3g",
                step,
                steps,
                row["train_loss"],
                row["train_acc"],
                sharp,
                2.0 / lr,
            )
        if step == steps:
            break
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    p.sub_(lr * p.grad)
    for p in params:
        p.grad = None
    return pd.DataFrame(rows, columns=EOS_COLUMNS)
