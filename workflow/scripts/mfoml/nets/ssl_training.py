"""Self-supervised training loop (no labels): augmented views, an SSL objective.

:func:`train_ssl` fits an :class:`~mfoml.nets.ssl_model.SSLNet` with an
:class:`~mfoml.nets.ssl.SSLObjective` on the inputs alone. Every mini-batch gives two views
(:func:`mfoml.nets.augment.two_views`), or two global views and the objective's
``local_crops`` local crops (DINO's multi-crop, :func:`mfoml.nets.augment.multi_crop_views`;
the views used are stated in the log), the objective's loss is minimised with the optimiser
and schedule of a :class:`~mfoml.nets.trainconfig.TrainConfig` (the objective's own parameters, BYOL's
predictor and DINO's prototypes, are optimised with the network's),
:meth:`SSLObjective.start_epoch` runs before every epoch (DINO's teacher temperature) and
:meth:`SSLObjective.after_step` after every step (the EMA teachers of BYOL and DINO, with
``progress = steps done / total steps``).

Outputs in ``out_dir`` (the supervised loop's format, so that the checkpoints load with
:func:`mfoml.nets.checkpoints.load_checkpoint`):

``epoch_{e:04d}.pt``
    for each ``e`` in ``cfg.checkpoint_epochs`` (``0`` = the initialisation): ``model_spec``
    (the SSL spec), ``state_dict``, ``epoch``, ``train_config``, ``metrics`` (rows so far),
    ``ssl`` (``{"loss": objective.spec, "augment": the augmenter's settings}``) and
    ``objective_state`` (BYOL's teacher and predictor). Written atomically.
``metrics.csv``
    one row per epoch: ``epoch, train_loss`` (mean SSL loss over the epoch's mini-batches),
    the objective's terms averaged likewise (``invariance, variance, covariance`` for VICReg,
    ``tau`` for BYOL, ``teacher_temp, tau, teacher_entropy`` for DINO, and ``embedding_std``
    for all), ``lr, seconds``.

Determinism as in :func:`mfoml.nets.training.train`: the shuffling generator is seeded with
``cfg.seed``, the augmentation generator with ``cfg.seed + 1`` (a separate stream, so that
changing the augmentations does not change the batch order; it draws one seed per mini-batch,
from which that batch's views are made, in this process or in a ``workers`` process alike),
the global RNG with ``cfg.seed``; deterministic algorithms are switched on for the call. A final mini-batch of one sample is
merged into the previous one. Device ``"auto"`` uses CUDA when available, with float16
autocast unless ``cfg.mixed_precision`` is False (the losses are computed in float32). There
is no resume: a run starts from scratch and first deletes the checkpoints and table of an
earlier run in ``out_dir``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mfoml.io import atomic_path, atomic_write_csv
from mfoml.nets.augment import Augmenter, multi_crop_views
from mfoml.nets.checkpoints import checkpoint_path, clear_outputs
from mfoml.nets.determinism import enable_determinism, restore_determinism
from mfoml.nets.models import resolve_device
from mfoml.nets.ssl import SSLObjective
from mfoml.nets.trainconfig import TrainConfig, make_optimizer, make_scheduler
from mfoml.nets.training import _batches, _cpu_state

log = logging.getLogger(__name__)

__all__ = ["train_ssl"]


class _Views(torch.utils.data.Dataset):
    """Batch ``i``: the views of ``x[batches[i]]`` (two global views, then ``local[0]`` local
    crops of area fraction ``local[1]``), drawn from a generator seeded ``seeds[i]`` (so that
    the views do not depend on which process makes them)."""

    def __init__(
        self,
        x: torch.Tensor,
        augmenter: Augmenter,
        batches: list,
        seeds: list[int],
        local: tuple[int, tuple[float, float]],
    ) -> None:
        self.x, self.augmenter, self.batches, self.seeds = x, augmenter, batches, seeds
        self.local = local

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        idx = self.batches[i]
        g = torch.Generator().manual_seed(int(self.seeds[i]))
        x = self.x[idx.to(self.x.device)]
        return idx, multi_crop_views(self.augmenter, x, g, self.local[0], self.local[1])


def _view_batches(
    x: torch.Tensor,
    augmenter: Augmenter,
    batches: list,
    seeds: list[int],
    workers: int,
    local: tuple[int, tuple[float, float]],
) -> Any:
    data = _Views(x, augmenter, batches, seeds, local)
    if workers <= 0:
        return (data[i] for i in range(len(data)))
    return torch.utils.data.DataLoader(
        data, batch_size=None, shuffle=False, num_workers=workers, prefetch_factor=4
    )


def train_ssl(
    model: torch.nn.Module,
    objective: SSLObjective,
    augmenter: Augmenter,
    x_train: Any,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    workers: int = 0,
) -> pd.DataFrame:
    """Train ``model`` in place without labels; write checkpoints and ``metrics.csv``.

    Parameters
    ----------
    model : an :class:`~mfoml.nets.ssl_model.SSLNet` (its weights are the initialisation).
    objective : the SSL objective, already attached to ``model``
        (:func:`mfoml.nets.ssl.build_objective` with ``encoder=model``).
    augmenter : the augmentations of the data kind.
    x_train : float32 array ``(N, *input_shape)`` (labels are not used).
    cfg : :class:`~mfoml.nets.trainconfig.TrainConfig` (``batch_size >= 2``).
    out_dir : directory of ``epoch_{e:04d}.pt`` and ``metrics.csv`` (created).
    workers : worker processes that make the views (``torch.utils.data.DataLoader``; for the
        per-sample image pipeline, which is CPU bound); 0 makes them in this process on the
        training device. The result does not depend on it.

    Progress (one line per epoch) goes to the logger ``mfoml.nets.ssl_training``.

    Returns
    -------
    pandas.DataFrame, the metrics table.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    amp = bool(cfg.mixed_precision) and device.type == "cuda"
    xa = np.asarray(x_train)
    if xa.ndim < 2 or len(xa) < 2:
        raise ValueError(f"x_train: need (N >= 2, *input_shape), got shape {xa.shape}")
    if not np.isfinite(xa).all():
        raise ValueError("x_train contains NaN or inf")
    xt = torch.from_numpy(np.ascontiguousarray(xa, dtype=np.float32))

    determinism = enable_determinism(cudnn=True)
    try:
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        aug_gen = torch.Generator().manual_seed(cfg.seed + 1)
        model.to(device)
        objective.to(device)
        xt_dev = xt.to(device)
        # one optimiser over the network and the objective's trainable parameters (BYOL's
        # predictor); frozen parameters (BYOL's teacher) never receive a gradient
        opt = make_optimizer(torch.nn.ModuleList([model, objective]), cfg)
        per_batch = cfg.schedule == "warmup_linear"  # stepped after every batch
        sched = make_scheduler(opt, cfg, len(_batches(len(xt), cfg.batch_size, None)))
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        clear_outputs(out, fresh=True)
        rows: list[dict[str, Any]] = []
        n = len(xt)
        steps_per_epoch = len(_batches(n, cfg.batch_size, None))
        total_steps = max(1, steps_per_epoch * cfg.epochs)
        step = 0
        local = (int(objective.local_crops), tuple(objective.local_crop_scale))
        if local[0] > 0 and augmenter.kind != "image":
            raise ValueError(
                f"losses.local_crops.number = {local[0]}: multi-crop needs image data; "
                f"this data set is of kind {augmenter.kind!r} (two views only)"
            )
        if local[0]:
            seen = f"two global views + {local[0]} local crops of area fraction {list(local[1])}"
        elif objective.name == "dino":
            seen = "two global views, no multi-crop (local_crops.number 0; signals have no crop)"
        else:
            seen = "two views"
        log.info("objective %s, %s data: %s per sample", objective.name, augmenter.kind, seen)

        def save(epoch: int) -> None:
            payload = {
                "model_spec": dict(model.spec),
                "state_dict": _cpu_state(model),
                "epoch": int(epoch),
                "train_config": cfg.to_dict(),
                "metrics": [dict(r) for r in rows],
                "ssl": {
                    "loss": dict(objective.spec),
                    "augment": {"kind": augmenter.kind, **augmenter.params},
                },
                "objective_state": _cpu_state(objective),
            }
            dest = checkpoint_path(out, epoch)
            with atomic_path(dest, suffix=".pt") as tmp:
                torch.save(payload, tmp)
            log.info("saved checkpoint %s", dest)

        if 0 in cfg.save_epochs:
            save(0)
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            lr = float(opt.param_groups[0]["lr"])
            model.train()
            objective.train()
            objective.start_epoch(epoch - 1, cfg.epochs)
            perm = torch.randperm(n, generator=gen)
            batches = _batches(n, cfg.batch_size, perm)
            seeds = torch.randint(0, 2**62, (len(batches),), generator=aug_gen).tolist()
            sums: dict[str, float] = {}
            seen = 0
            for b, (idx, views) in enumerate(
                _view_batches(
                    xt if workers > 0 else xt_dev, augmenter, batches, seeds, workers, local
                )
            ):
                views = tuple(v.to(device, non_blocking=True) for v in views)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                    loss, terms = objective(model, *views)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"SSL training diverged: loss is {float(loss.detach())} at epoch "
                        f"{epoch}, batch {b} (terms {terms})"
                    )
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip is not None:
                    scaler.unscale_(opt)
                    params = [p for g in opt.param_groups for p in g["params"]]
                    torch.nn.utils.clip_grad_norm_(params, float(cfg.grad_clip))
                scaler.step(opt)
                scaler.update()
                if per_batch:
                    sched.step()
                step += 1
                objective.after_step(model, step / total_steps)
                nb = len(idx)
                sums["train_loss"] = sums.get("train_loss", 0.0) + float(loss.detach()) * nb
                for key, val in terms.items():
                    sums[key] = sums.get(key, 0.0) + float(val) * nb
                seen += nb
            if sched is not None and not per_batch:
                sched.step()
            row: dict[str, Any] = {"epoch": epoch}
            row.update({k: v / seen for k, v in sums.items()})
            row["lr"] = lr
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            atomic_write_csv(out / "metrics.csv", pd.DataFrame(rows))
            log.info(
                "epoch %d/%d %s",
                epoch,
                cfg.epochs,
                " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"),
            )
            if epoch in cfg.save_epochs:
                save(epoch)
        frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["epoch", "train_loss"])
        if not rows:
            atomic_write_csv(out / "metrics.csv", frame)
        if rows and not math.isfinite(rows[-1]["train_loss"]):  # pragma: no cover - guarded
            raise FloatingPointError("SSL training ended with a non-finite loss")
        return frame
    finally:
        restore_determinism(determinism)
