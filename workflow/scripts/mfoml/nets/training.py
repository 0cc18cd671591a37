"""Training loop with atomic checkpoints and a per-epoch metrics table.

:func:`train` fits a :class:`~mfoml.nets.models.ProbedModel` with cross-entropy plus an optional
extra loss computed from intermediate features of the *same* forward pass (the
:class:`ExtraLoss` protocol, implemented e.g. by ``mfoml.nets.losses.SVSLLoss``). Inputs are numpy
arrays: ``x`` float32 ``(N, *input_shape)`` (integer arrays, the token ids of text data, are kept
as int64), ``y`` int64 ``(N,)``.

Outputs in ``out_dir``
----------------------
``epoch_{e:04d}.pt``
    for each ``e`` in ``cfg.checkpoint_epochs`` (``0`` = the initialization): a ``torch.save``
    dict with ``model_spec``, ``state_dict``, ``epoch``, ``train_config``, ``metrics`` (the rows
    so far), and the state needed to resume (``optimizer_state``, ``scheduler_state``,
    ``scaler_state``, ``rng_state``, ``shuffle_rng_state``). Written to a temp file and renamed
    (:func:`mfoml.io.atomic_path`), so a killed job leaves either a complete checkpoint or none.
``metrics.csv``
    one row per epoch, rewritten atomically after each epoch: ``epoch, train_loss, train_acc,
    heldout_loss, heldout_acc, test_loss, test_acc, grad_norm_mean, grad_norm_max,
    n_parameters, lr, seconds`` (+ ``{name}_loss/_acc`` for other evaluation sets, +
    ``train_extra_loss`` when an extra loss is used, + ``train_seconds``, the time of the epoch's
    training batches alone, evaluation excluded, + the columns an ``epoch_callback`` returns). ``train_loss`` and ``train_acc`` are the means over the epoch's mini-batches in
    training mode (the cross-entropy alone); the evaluation columns are computed in eval mode
    after the epoch (NaN when that set is not given; ``train_eval_loss``, ``train_eval_acc``:
    the training set itself, with ``eval_train=True``). ``grad_norm_mean``/``grad_norm_max`` are
    the mean and maximum over the epoch's optimiser steps of the L2 norm of the full gradient
    vector (all parameters with a gradient, after unscaling under mixed precision; steps whose
    gradient is not finite, which the ``GradScaler`` skips, are left out). ``n_parameters`` is
    the model's total parameter count. ``lr`` is the learning rate used during the epoch,
    ``seconds`` the epoch's wall time.

Determinism
-----------
On CPU two runs with the same seed, data, config and thread count give bit-identical weights:
the shuffling uses a ``torch.Generator`` seeded with ``cfg.seed``, the global torch RNG is seeded
with ``cfg.seed`` at the start, and ``torch.use_deterministic_algorithms(True, warn_only=True)``
is switched on for the duration of the call (and restored afterwards). The initial weights are
the caller's (use ``build_model(..., seed=...)``). A final mini-batch of one sample is merged
into the previous batch (BatchNorm cannot train on one sample).

Device ``"auto"`` uses CUDA when available, with mixed precision (``torch.autocast`` float16 +
``GradScaler``) unless ``cfg.mixed_precision`` is False; otherwise CPU in float32.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mfoml.io import atomic_path, atomic_write_csv
from mfoml.nets.checkpoints import (
    checkpoint_path,
    clear_outputs,
    find_resumable,
)
from mfoml.nets.determinism import enable_determinism, restore_determinism
from mfoml.nets.models import ProbedModel, resolve_device
from mfoml.nets.trainconfig import ExtraLoss, TrainConfig, make_optimizer, make_scheduler

log = logging.getLogger(__name__)

__all__ = [
    "ExtraLoss",
    "METRIC_COLUMNS",
    "TrainConfig",
    "evaluate",
    "hold_frozen_batchnorm",
    "train",
]

METRIC_COLUMNS = [
    "epoch",
    "train_loss",
    "train_acc",
    "heldout_loss",
    "heldout_acc",
    "test_loss",
    "test_acc",
    "grad_norm_mean",
    "grad_norm_max",
    "n_parameters",
    "lr",
    "seconds",
]


def _as_arrays(x: Any, y: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    xa = np.asarray(x)
    ya = np.asarray(y)
    if xa.ndim < 2:
        raise ValueError(f"{what}: x must have shape (N, *input_shape), got {xa.shape}")
    if ya.shape != (xa.shape[0],):
        raise ValueError(f"{what}: y must have shape ({xa.shape[0]},), got {ya.shape}")
    if not np.issubdtype(ya.dtype, np.integer):
        raise ValueError(f"{what}: y must hold integer class labels, got dtype {ya.dtype}")
    labels = torch.from_numpy(np.ascontiguousarray(ya, dtype=np.int64))
    if np.issubdtype(xa.dtype, np.integer):  # token ids (text): kept as integers
        return torch.from_numpy(np.ascontiguousarray(xa, dtype=np.int64)), labels
    if not np.isfinite(xa).all():
        raise ValueError(f"{what}: x contains NaN or inf")
    return torch.from_numpy(np.ascontiguousarray(xa, dtype=np.float32)), labels


def _batches(n: int, batch_size: int, perm: torch.Tensor | None) -> list[torch.Tensor]:
    idx = torch.arange(n) if perm is None else perm
    chunks = list(torch.split(idx, batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2] = torch.cat([chunks[-2], chunks[-1]])
        chunks.pop()
    return chunks


@torch.no_grad()
def evaluate(
    model: ProbedModel,
    x: Any,
    y: Any,
    *,
    batch_size: int = 1024,
    device: str | torch.device = "auto",
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) on ``(x, y)``.

    ``x`` ``(N, *input_shape)``, ``y`` ``(N,)`` int. The model's training flag is restored.
    """
    dev = resolve_device(device)
    xt, yt = _as_arrays(x, y, "evaluate")
    was_training = model.training
    model.eval()
    total_loss, correct, n = 0.0, 0, len(yt)
    try:
        for i in range(0, n, batch_size):
            xb, yb = xt[i : i + batch_size].to(dev), yt[i : i + batch_size].to(dev)
            logits = model(xb).float()
            total_loss += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    finally:
        model.train(was_training)
    return (total_loss / n, correct / n) if n else (math.nan, math.nan)


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _plain(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return int(v)
    return v


def hold_frozen_batchnorm(model: torch.nn.Module) -> list[str]:
    """Put every BatchNorm layer whose parameters are all frozen into eval mode.

    A frozen layer (``requires_grad=False`` on its weight and bias, as in transfer learning)
    then also keeps its running mean and variance: in training mode BatchNorm would normalize
    with batch statistics and keep updating the running statistics, so the "frozen" stage
    would still change. BatchNorm layers without parameters (``affine=False``) are left as they
    are. Call after ``model.train()``.

    Returns
    -------
    The names of the modules put into eval mode.
    """
    held = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
                held.append(name)
    return held


def train(
    model: ProbedModel,
    x_train: Any,
    y_train: Any,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    evals: Mapping[str, tuple[Any, Any] | None] | None = None,
    extra_loss: ExtraLoss | None = None,
    resume: bool = False,
    epoch_callback: Callable[[ProbedModel, dict[str, Any]], Mapping[str, Any] | None] | None = None,
    eval_train: bool = False,
    keep_best: str | None = None,
) -> pd.DataFrame:
    """Train ``model`` in place; write checkpoints and ``metrics.csv`` into ``out_dir``.

    Parameters
    ----------
    model : a :class:`~mfoml.nets.models.ProbedModel` (its current weights are the initialization).
    x_train : float32 array ``(N, *input_shape)``.
    y_train : int64 array ``(N,)`` with labels in ``[0, n_classes)``.
    cfg : :class:`TrainConfig`.
    out_dir : directory for ``epoch_{e:04d}.pt`` and ``metrics.csv`` (created).
    evals : ``{"heldout": (x, y), "test": (x, y)}``; any name works (columns
        ``{name}_loss``, ``{name}_acc``); a ``None`` value is skipped (NaN columns).
    extra_loss : an :class:`ExtraLoss`; its value is added to the cross-entropy, computed from
        ``model.forward_features(x, extra_loss.layers)`` of the same forward pass.
    resume : continue from the latest readable checkpoint in ``out_dir`` (unreadable ones are
        deleted and reported; one with another config or model spec is a ``ValueError``); the
        result is bit-identical to an uninterrupted run on CPU. Without ``resume``, or when
        there is nothing to resume from, the run starts from scratch and first deletes the
        checkpoints, ``metrics.csv`` and temp files that an earlier run left in ``out_dir``
        (other files there are not touched).
    epoch_callback : called after each epoch's row is complete (before it is written) with the
        model and the row; the mapping it returns (e.g. ``{"sharpness": ...}``) is added to the
        row. It must not change the model's weights, buffers or the global random state (the
        run would no longer be reproducible on resume).
    eval_train : also evaluate the end-of-epoch model in eval mode on the training set
        (columns ``train_eval_loss``, ``train_eval_acc``: one more forward pass over ``x_train``
        per epoch); the interpolation threshold is read from ``train_eval_acc`` (METHODS
        section 11), not from the running mini-batch ``train_acc``.
    keep_best : a metrics column to maximise (``"heldout_acc"``): also keep the checkpoint of
        the first epoch with its highest value (a later epoch must be strictly better; the
        previous best's checkpoint is deleted unless its epoch is in ``cfg.checkpoint_epochs``).
        The reference's protocol (RFWFC ``train/train.py``: the best validation accuracy).

    Returns
    -------
    pandas.DataFrame, the metrics table (one row per epoch, columns as in the module doc).
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    amp = bool(cfg.mixed_precision) and device.type == "cuda"
    n_classes = int(model.spec["n_classes"])

    xt, yt = _as_arrays(x_train, y_train, "x_train/y_train")
    if len(yt) < 2:
        raise ValueError("x_train/y_train: need at least 2 training samples")
    if int(yt.min()) < 0 or int(yt.max()) >= n_classes:
        raise ValueError(
            f"y_train: labels must be in [0, {n_classes}), got [{int(yt.min())}, {int(yt.max())}]"
        )
    eval_sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, pair in (evals or {}).items():
        if pair is None or pair[0] is None:
            continue
        _as_arrays(pair[0], pair[1], f"evals[{name!r}]")
        eval_sets[name] = (pair[0], pair[1])
    if eval_train:
        eval_sets["train_eval"] = (x_train, y_train)
    if keep_best is not None and keep_best.removesuffix("_acc") not in eval_sets:
        raise ValueError(
            f"keep_best={keep_best!r}: needs the evaluation set "
            f"{keep_best.removesuffix('_acc')!r} (evals has {sorted(eval_sets)})"
        )
    if extra_loss is not None:
        layers = list(getattr(extra_loss, "layers", []))
        unknown = [la for la in layers if la not in model.probe_layers]
        if unknown:
            raise ValueError(
                f"extra_loss.layers: unknown layer(s) {unknown}; model has {model.probe_layers}"
            )
    else:
        layers = []

    determinism = enable_determinism(cudnn=True)
    try:
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        model.to(device)
        # the whole training set lives on the device (no copy on CPU); batches are gathered there
        xt_dev, yt_dev = xt.to(device), yt.to(device)
        opt = make_optimizer(model, cfg)
        per_batch = cfg.schedule == "warmup_linear"
        sched = make_scheduler(opt, cfg, len(_batches(len(yt), cfg.batch_size, None)))
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        n_parameters = sum(p.numel() for p in model.parameters())
        rows: list[dict[str, Any]] = []
        start = 1

        found = find_resumable(out, cfg.to_dict(), cfg.epochs, model.spec) if resume else None
        clear_outputs(out, fresh=found is None)
        if found is not None:
            ckpt = found
            model.load_state_dict(ckpt["state_dict"])
            opt.load_state_dict(ckpt["optimizer_state"])
            if sched is not None and ckpt.get("scheduler_state") is not None:
                sched.load_state_dict(ckpt["scheduler_state"])
            if ckpt.get("scaler_state"):
                scaler.load_state_dict(ckpt["scaler_state"])
            torch.set_rng_state(ckpt["rng_state"])
            gen.set_state(ckpt["shuffle_rng_state"])
            rows = [dict(r) for r in ckpt["metrics"]]
            start = int(ckpt["epoch"]) + 1
            log.info(
                "resuming from epoch %d (%s)", ckpt["epoch"], checkpoint_path(out, ckpt["epoch"])
            )
            if rows:
                atomic_write_csv(out / "metrics.csv", _frame(rows))

        def save(epoch: int) -> None:
            payload = {
                "model_spec": dict(model.spec),
                "state_dict": _cpu_state(model),
                "epoch": int(epoch),
                "train_config": cfg.to_dict(),
                "metrics": [dict(r) for r in rows],
                "optimizer_state": opt.state_dict(),
                "scheduler_state": None if sched is None else sched.state_dict(),
                "scaler_state": scaler.state_dict() if amp else {},
                "rng_state": torch.get_rng_state(),
                "shuffle_rng_state": gen.get_state(),
            }
            dest = checkpoint_path(out, epoch)
            with atomic_path(dest, suffix=".pt") as tmp:
                torch.save(payload, tmp)
            log.info("saved checkpoint %s", dest)

        best_epoch, best_value = None, -math.inf
        for r in rows if keep_best is not None else []:  # resumed: the best so far
            v = float(r.get(keep_best, math.nan))
            if math.isfinite(v) and v > best_value:
                best_epoch, best_value = int(r["epoch"]), v

        if start == 1 and 0 in cfg.save_epochs:
            save(0)

        for epoch in range(start, cfg.epochs + 1):
            t0 = time.perf_counter()
            lr = float(opt.param_groups[0]["lr"])
            hook = getattr(extra_loss, "on_epoch_start", None)
            if callable(hook):
                hook(model, x_train, y_train, device)
            model.train()
            hold_frozen_batchnorm(model)
            perm = torch.randperm(len(yt), generator=gen)
            sum_loss = sum_extra = 0.0
            correct = seen = 0
            # gradient norms are accumulated on the device (no synchronisation per step)
            gn_sum = torch.zeros((), device=device, dtype=torch.float64)
            gn_max = torch.zeros((), device=device, dtype=torch.float64)
            gn_count = torch.zeros((), device=device, dtype=torch.float64)
            for b, idx in enumerate(_batches(len(yt), cfg.batch_size, perm)):
                idx = idx.to(device)
                xb, yb = xt_dev[idx], yt_dev[idx]
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                    if extra_loss is not None:
                        logits, feats = model.forward_features(xb, layers)
                    else:
                        logits, feats = model(xb), {}
                    ce = F.cross_entropy(logits.float(), yb)
                    extra = extra_loss(feats, yb) if extra_loss is not None else None
                    loss = ce if extra is None else ce + extra
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"training diverged: loss is {float(loss.detach())} at epoch {epoch}, "
                        f"batch {b} (cross-entropy {float(ce.detach())}, extra "
                        f"{None if extra is None else float(extra.detach())})"
                    )
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if amp:
                    scaler.unscale_(opt)  # true gradients for the norm; step() knows it is done
                grads = [p.grad for p in model.parameters() if p.grad is not None]
                if grads:
                    gn = torch.nn.utils.get_total_norm(grads).to(torch.float64)
                    ok = torch.isfinite(gn)
                    gn = torch.where(ok, gn, torch.zeros_like(gn))
                    gn_sum += gn
                    gn_max = torch.maximum(gn_max, gn)
                    gn_count += ok.to(torch.float64)
                if cfg.grad_clip is not None:  # clips the unscaled gradients (unscaled above)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg.grad_clip))
                scaler.step(opt)
                scaler.update()
                if per_batch:
                    sched.step()
                nb = len(idx)
                sum_loss += float(ce.detach()) * nb
                if extra is not None:
                    sum_extra += float(extra.detach()) * nb
                correct += int((logits.detach().argmax(1) == yb).sum())
                seen += nb
            train_seconds = time.perf_counter() - t0
            if sched is not None and not per_batch:
                sched.step()
            row: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": sum_loss / seen,
                "train_acc": correct / seen,
                "heldout_loss": math.nan,
                "heldout_acc": math.nan,
                "test_loss": math.nan,
                "test_acc": math.nan,
            }
            for name, (xe, ye) in eval_sets.items():
                el, ea = evaluate(model, xe, ye, batch_size=cfg.eval_batch_size, device=device)
                row[f"{name}_loss"], row[f"{name}_acc"] = el, ea
            if extra_loss is not None:
                row["train_extra_loss"] = sum_extra / seen
            row["train_seconds"] = train_seconds
            n_ok = float(gn_count)
            row["grad_norm_mean"] = float(gn_sum) / n_ok if n_ok else math.nan
            row["grad_norm_max"] = float(gn_max) if n_ok else math.nan
            row["n_parameters"] = n_parameters
            row["lr"] = lr
            if epoch_callback is not None:
                row.update(epoch_callback(model, dict(row)) or {})
            row["seconds"] = time.perf_counter() - t0
            rows.append({k: _plain(v) for k, v in row.items()})
            atomic_write_csv(out / "metrics.csv", _frame(rows))
            log.info("%s", _progress_line(row, cfg.epochs))
            value = float(row.get(keep_best, math.nan)) if keep_best is not None else math.nan
            if math.isfinite(value) and value > best_value:
                if best_epoch is not None and best_epoch not in cfg.save_epochs:
                    checkpoint_path(out, best_epoch).unlink(missing_ok=True)
                best_epoch, best_value = epoch, value
                if epoch not in cfg.save_epochs:
                    save(epoch)
                log.info("best %s so far: %.4f at epoch %d", keep_best, value, epoch)
            if epoch in cfg.save_epochs:
                save(epoch)
        if not rows:
            atomic_write_csv(out / "metrics.csv", _frame(rows))
        return _frame(rows)
    finally:
        restore_determinism(determinism)


def _frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    extra = [c for c in frame.columns if c not in METRIC_COLUMNS]
    return frame[METRIC_COLUMNS[:-2] + extra + METRIC_COLUMNS[-2:]]


def _progress_line(row: Mapping[str, Any], epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}"]
    for key in row:
        if key in ("epoch", "seconds", "lr", "train_seconds", "n_parameters"):
            continue
        val = row[key]
        if not isinstance(val, float) or math.isnan(val):
            continue
        parts.append(f"{key}={val:.4f}")
    parts.append(f"lr={row['lr']:.3g}")
    parts.append(f"{row['seconds']:.1f}s")
    return " ".join(parts)
