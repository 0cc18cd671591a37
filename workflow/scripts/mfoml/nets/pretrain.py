"""Masked-language-model pretraining of a :class:`~mfoml.nets.transformer.TransformerClassifier`.

:func:`pretrain_mlm` trains the encoder and its tied MLM head on token ids alone (the labels of
a data set are never read), with AdamW (:mod:`mfoml.nets.optim` parameter groups), a linear
warm-up over ``warmup_fraction`` of the optimizer steps and a linear decay to zero, gradient
clipping, and BERT's corruption (:func:`~mfoml.nets.transformer.mask_tokens`, fresh masks every
epoch from a generator seeded with ``seed``).

Outputs in ``out_dir`` (the checkpoint format of :mod:`mfoml.training`, so that
``load_checkpoint`` rebuilds the model and a classification run can start from it):

``epoch_{e:04d}.pt``  ``model_spec, state_dict, epoch, train_config`` (the :class:`MLMConfig`
                      with ``objective: "mlm"``), ``metrics`` (rows so far); written atomically.
``metrics.csv``       per epoch: ``epoch, train_mlm_loss, test_mlm_loss, test_mlm_acc, lr,
                      tokens, tokens_per_second, seconds``. The test columns use one fixed
                      corruption of the test ids (drawn once from ``seed + 1``); accuracy is
                      over the selected positions. ``tokens`` counts the real (non-padding)
                      training tokens of the epoch; ``tokens_per_second`` divides them by the
                      epoch's training time (evaluation excluded).

CPU runs with the same seed, data, config and thread count are bit-identical (deterministic
algorithms are switched on for the call, as in :func:`mfoml.training.train`).

A stage of the pipeline (config ``pretrain``; rule ``pretrain``, workflow/scripts/pretrain.py):
:func:`stage_model` builds the stage's ``arch: transformer`` model (vocabulary and special ids
from the data set's tokenizer, the stage's activation and seed), :func:`stage_config` its
:class:`MLMConfig`; :func:`pretrain_mlm` trains it on the token ids of the data set's training
split (labels unused; the test split gives the per-epoch test MLM loss and accuracy) into
``results/pretrain/{stage}/checkpoints`` (``epoch_{e:04d}.pt`` for the configured epochs and
the last, ``metrics.csv``), and :func:`stage_summary` is its ``stage.json``: the settings, the
data set and its tokenizer's sha256 (which the runs starting from the stage check against their
own data set, :func:`mfoml.nets.transfer.start_from_stage`) and the measured tokens per second.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mfoml.io import atomic_path, atomic_write_csv
from mfoml.nets.determinism import enable_determinism, restore_determinism
from mfoml.nets.models import resolve_device
from mfoml.nets.optim import make_adamw, warmup_linear
from mfoml.nets.trainjob import build_run_model
from mfoml.nets.transformer import TransformerClassifier

__all__ = [
    "MLM_COLUMNS",
    "MLMConfig",
    "init_from_pretrained",
    "mask_tokens",
    "mlm_loss",
    "pretrain_mlm",
    "stage_config",
    "stage_model",
    "stage_summary",
]

log = logging.getLogger(__name__)

MLM_COLUMNS = [
    "epoch",
    "train_mlm_loss",
    "test_mlm_loss",
    "test_mlm_acc",
    "lr",
    "tokens",
    "tokens_per_second",
    "seconds",
]


def mask_tokens(
    ids: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's MLM corruption of token ids ``(B, T)``.

    Each non-special token is selected with probability ``prob``; a selected token becomes
    ``mask_id`` with probability 0.8, a uniformly drawn non-special token with 0.1, and stays
    with 0.1. Returns ``(inputs, targets)``: the corrupted ids and the original ids at the
    selected positions, ``-100`` (ignored by ``cross_entropy``) elsewhere.
    """
    if not 0 < prob < 1:
        raise ValueError(f"mlm prob must be in (0, 1), got {prob}")
    ids = ids.long()
    special = torch.tensor(sorted({int(s) for s in special_ids}), device=ids.device)
    candidate = ~torch.isin(ids, special)
    u = torch.rand(ids.shape, generator=generator, device="cpu").to(ids.device)
    chosen = candidate & (u < prob)
    r = torch.rand(ids.shape, generator=generator, device="cpu").to(ids.device)
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    allowed[special.cpu()] = False
    pool = torch.nonzero(allowed).flatten()
    pick = torch.randint(len(pool), ids.shape, generator=generator, device="cpu")
    random_tokens = pool[pick].to(ids.device)
    inputs = torch.where(chosen & (r < 0.8), torch.full_like(ids, mask_id), ids)
    inputs = torch.where(chosen & (r >= 0.8) & (r < 0.9), random_tokens, inputs)
    targets = torch.where(chosen, ids, torch.full_like(ids, -100))
    return inputs, targets


def mlm_loss(
    model: TransformerClassifier, inputs: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of the MLM logits at the positions where ``targets != -100``.

    Exactly 0 (with a graph) when no position is selected.
    """
    logits = model.mlm_logits(inputs)
    t = targets[:, : logits.shape[1]]
    if not bool((t != -100).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), t.reshape(-1), ignore_index=-100
    )


@dataclasses.dataclass
class MLMConfig:
    """Settings of :func:`pretrain_mlm`.

    Attributes
    ----------
    epochs, batch_size, lr, weight_decay : the usual meanings (AdamW; decay on weight matrices).
    warmup_fraction : share of all optimizer steps spent warming the rate up (0 to 1).
    mask_prob : share of the non-special tokens selected for prediction.
    grad_clip : clip the gradient's global norm to this value (``None``: no clipping).
    seed : batch order, corruption and global torch RNG.
    checkpoint_epochs : epochs saved (``0`` = the initialization; ``None`` = the last).
    device : ``auto``, ``cpu``, ``cuda``...
    mixed_precision : float16 autocast + gradient scaling on CUDA.
    eval_batch_size : batch size of the test pass.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    mask_prob: float = 0.15
    grad_clip: float | None = 1.0
    seed: int = 0
    checkpoint_epochs: list[int] | None = None
    device: str = "auto"
    mixed_precision: bool = True
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"MLMConfig.{key}: {why} (got {getattr(self, key)!r})")

        if int(self.epochs) < 0:
            raise bad("epochs", "must be >= 0")
        if int(self.batch_size) < 1:
            raise bad("batch_size", "must be >= 1")
        if not (float(self.lr) > 0 and math.isfinite(float(self.lr))):
            raise bad("lr", "must be a finite number > 0")
        if not 0 <= float(self.warmup_fraction) <= 1:
            raise bad("warmup_fraction", "must be in [0, 1]")
        if not 0 < float(self.mask_prob) < 1:
            raise bad("mask_prob", "must be in (0, 1)")
        if self.grad_clip is not None and not float(self.grad_clip) > 0:
            raise bad("grad_clip", "must be > 0 or null")
        eps = self.checkpoint_epochs
        if eps is not None and any(not 0 <= int(e) <= int(self.epochs) for e in eps):
            raise bad("checkpoint_epochs", f"each epoch must be in [0, epochs={self.epochs}]")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields plus ``objective: "mlm"`` (stored in checkpoints)."""
        return {**dataclasses.asdict(self), "objective": "mlm"}

    @property
    def save_epochs(self) -> list[int]:
        eps = [self.epochs] if self.checkpoint_epochs is None else self.checkpoint_epochs
        return sorted({int(e) for e in eps})


@torch.no_grad()
def _evaluate(
    model: TransformerClassifier,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> tuple[float, float]:
    model.eval()
    total, correct, n = 0.0, 0, 0
    for i in range(0, len(inputs), batch_size):
        xb, tb = inputs[i : i + batch_size].to(device), targets[i : i + batch_size].to(device)
        logits = model.mlm_logits(xb).float()
        tb = tb[:, : logits.shape[1]]
        sel = tb != -100
        if not bool(sel.any()):
            continue
        total += float(torch.nn.functional.cross_entropy(logits[sel], tb[sel], reduction="sum"))
        correct += int((logits[sel].argmax(-1) == tb[sel]).sum())
        n += int(sel.sum())
    return (total / n, correct / n) if n else (math.nan, math.nan)


def pretrain_mlm(
    model: TransformerClassifier,
    ids_train: Any,
    cfg: MLMConfig,
    out_dir: str | Path,
    *,
    special_ids: Mapping[str, int | None],
    ids_test: Any = None,
) -> pd.DataFrame:
    """Pretrain ``model`` in place with the MLM objective; write checkpoints and metrics.

    Parameters
    ----------
    model : a :class:`TransformerClassifier` (its weights are the initialization).
    ids_train : int array ``(N, T)`` of token ids (right-padded with the pad id).
    cfg : :class:`MLMConfig`.
    out_dir : directory of ``epoch_{e:04d}.pt`` and ``metrics.csv`` (created; earlier
        checkpoints and tables there are removed first).
    special_ids : ``{"pad", "cls", "sep", "mask", "unk"}`` ids (``mask`` required); special
        tokens are never selected or drawn as replacements.
    ids_test : int array ``(M, T)`` for the per-epoch test columns (optional). Progress goes
        to the logger ``mfoml.nets.pretrain``.

    Returns
    -------
    The metrics table (one row per epoch).
    """
    if not isinstance(model, TransformerClassifier):
        raise TypeError(f"MLM pretraining needs an arch 'transformer' model, got {type(model)}")
    mask_id = special_ids.get("mask")
    if mask_id is None:
        raise ValueError("MLM pretraining: the tokenizer has no [MASK] token")
    specials = sorted({int(v) for v in special_ids.values() if v is not None})
    xt = torch.from_numpy(np.ascontiguousarray(ids_train, dtype=np.int64))
    if xt.dim() != 2 or len(xt) == 0:
        raise ValueError(f"ids_train: expected a non-empty (N, T) array, got {tuple(xt.shape)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for p in [*out.glob("epoch_*.pt"), out / "metrics.csv"]:
        p.unlink(missing_ok=True)
    device = resolve_device(cfg.device)
    amp = bool(cfg.mixed_precision) and device.type == "cuda"
    vocab = model.vocab_size

    test_pair = None
    if ids_test is not None and len(ids_test):
        xs = torch.from_numpy(np.ascontiguousarray(ids_test, dtype=np.int64))
        g_test = torch.Generator().manual_seed(int(cfg.seed) + 1)
        test_pair = mask_tokens(
            xs,
            mask_id=mask_id,
            vocab_size=vocab,
            special_ids=specials,
            prob=cfg.mask_prob,
            generator=g_test,
        )

    determinism = enable_determinism(cudnn=False)
    try:
        torch.manual_seed(int(cfg.seed))
        order_gen = torch.Generator().manual_seed(int(cfg.seed))
        mask_gen = torch.Generator().manual_seed(int(cfg.seed) + 2)
        model.to(device)
        opt = make_adamw(model, cfg.lr, cfg.weight_decay)
        steps_per_epoch = math.ceil(len(xt) / int(cfg.batch_size))
        total = steps_per_epoch * int(cfg.epochs)
        sched = warmup_linear(opt, total, round(float(cfg.warmup_fraction) * total))
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        rows: list[dict[str, Any]] = []

        def save(epoch: int) -> None:
            payload = {
                "model_spec": dict(model.spec),
                "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                "epoch": int(epoch),
                "train_config": cfg.to_dict(),
                "metrics": [dict(r) for r in rows],
            }
            dest = out / f"epoch_{int(epoch):04d}.pt"
            with atomic_path(dest, suffix=".pt") as tmp:
                torch.save(payload, tmp)
            log.info("saved checkpoint %s", dest)

        if 0 in cfg.save_epochs:
            save(0)
        for epoch in range(1, int(cfg.epochs) + 1):
            t0 = time.perf_counter()
            model.train()
            lr = float(opt.param_groups[0]["lr"])
            perm = torch.randperm(len(xt), generator=order_gen)
            sum_loss, n_batches, tokens = 0.0, 0, 0
            for i in range(0, len(xt), int(cfg.batch_size)):
                batch = xt[perm[i : i + int(cfg.batch_size)]]
                inputs, targets = mask_tokens(
                    batch,
                    mask_id=mask_id,
                    vocab_size=vocab,
                    special_ids=specials,
                    prob=cfg.mask_prob,
                    generator=mask_gen,
                )
                inputs, targets = inputs.to(device), targets.to(device)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                    loss = mlm_loss(model, inputs, targets)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"MLM pretraining diverged at epoch {epoch}: {loss}")
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip is not None:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg.grad_clip))
                scaler.step(opt)
                scaler.update()
                sched.step()
                sum_loss += float(loss.detach())
                n_batches += 1
                tokens += int((batch != model.pad_id).sum())
            train_seconds = time.perf_counter() - t0
            test_loss = test_acc = math.nan
            if test_pair is not None:
                test_loss, test_acc = _evaluate(model, *test_pair, cfg.eval_batch_size, device)
            row = {
                "epoch": epoch,
                "train_mlm_loss": sum_loss / max(1, n_batches),
                "test_mlm_loss": test_loss,
                "test_mlm_acc": test_acc,
                "lr": lr,
                "tokens": tokens,
                "tokens_per_second": tokens / train_seconds if train_seconds > 0 else math.nan,
                "seconds": time.perf_counter() - t0,
            }
            rows.append(row)
            atomic_write_csv(out / "metrics.csv", pd.DataFrame(rows, columns=MLM_COLUMNS))
            log.info(
                "mlm epoch %d/%d loss=%.4f test_loss=%.4f test_acc=%.4f %.0f tokens/s",
                epoch,
                cfg.epochs,
                row["train_mlm_loss"],
                test_loss,
                test_acc,
                row["tokens_per_second"],
            )
            if epoch in cfg.save_epochs:
                save(epoch)
        frame = pd.DataFrame(rows, columns=MLM_COLUMNS)
        if not rows:
            atomic_write_csv(out / "metrics.csv", frame)
        return frame
    finally:
        restore_determinism(determinism)


def init_from_pretrained(
    model: TransformerClassifier, state: Mapping[str, torch.Tensor], *, freeze: bool
) -> tuple[list[str], list[str]]:
    """Copy an MLM-pretrained encoder into ``model``; optionally freeze it.

    Every tensor of ``state`` (a pretraining checkpoint's ``state_dict``) is copied except the
    pooler and the classifier, which the pretraining never trained (they keep ``model``'s
    initialization). With ``freeze`` the encoder is frozen
    (:meth:`~mfoml.nets.transformer.TransformerClassifier.freeze_encoder`).

    Returns
    -------
    (copied, frozen) : names of the copied tensors and of the frozen parameters.

    Raises
    ------
    ValueError naming the first tensor that is missing from ``model`` or has another shape.
    """
    if not isinstance(model, TransformerClassifier):
        raise TypeError(f"a pretrained MLM encoder fits arch 'transformer' only, got {type(model)}")
    own = model.state_dict()
    copied = []
    for key, value in state.items():
        if key.split(".")[0] in ("pooler", "classifier"):
            continue
        if key not in own or own[key].shape != value.shape:
            got = tuple(own[key].shape) if key in own else "missing"
            raise ValueError(
                f"pretrained encoder does not fit the model: tensor {key!r} is "
                f"{tuple(value.shape)} in the checkpoint and {got} in the model"
            )
        own[key] = value
        copied.append(key)
    model.load_state_dict(own)
    frozen = model.freeze_encoder() if freeze else []
    return copied, frozen


def stage_model(meta: Mapping[str, Any], cfg: Mapping[str, Any]) -> TransformerClassifier:
    """The model of the MLM stage ``cfg`` (``stage, dataset, model_spec, activation, seed``) on
    the text data set of meta ``meta``.

    Raises
    ------
    ValueError when the data set is not a text data set.
    """
    if meta.get("kind") != "text":
        raise ValueError(
            f"stage {cfg['stage']}: data set {cfg['dataset']!r} is not a text data set"
        )
    return build_run_model(  # type: ignore[return-value]
        cfg["model_spec"],
        meta,
        meta["input_shape"],
        int(meta["n_classes"] or 2),  # the classifier is not trained here
        activation=cfg["activation"],
        seed=int(cfg["seed"]),
    )


def stage_config(cfg: Mapping[str, Any]) -> MLMConfig:
    """The :class:`MLMConfig` of the MLM stage ``cfg`` (its parameter slice)."""
    return MLMConfig(
        epochs=int(cfg["epochs"]),
        batch_size=int(cfg["batch_size"]),
        lr=float(cfg["lr"]),
        weight_decay=float(cfg["weight_decay"]),
        warmup_fraction=float(cfg["warmup_fraction"]),
        mask_prob=float(cfg["mask_prob"]),
        grad_clip=None if cfg["grad_clip"] is None else float(cfg["grad_clip"]),
        seed=int(cfg["seed"]),
        checkpoint_epochs=[int(e) for e in cfg["checkpoints"]],
        device=cfg["device"],
    )


def stage_summary(
    cfg: Mapping[str, Any],
    tokenizer: Mapping[str, Any],
    n_sequences: int,
    metrics: pd.DataFrame,
) -> dict[str, Any]:
    """``stage.json`` of an MLM stage: its parameter slice, ``tokenizer_sha256``,
    ``vocab_size``, ``n_sequences`` (training sequences), ``train_tokens`` (real tokens over all
    epochs, from ``metrics``) and ``train_tokens_per_second`` (``None`` without training time).
    """
    tokens = int(metrics["tokens"].sum()) if len(metrics) else 0
    seconds = (
        float((metrics["tokens"] / metrics["tokens_per_second"]).sum()) if len(metrics) else 0.0
    )
    return {
        **cfg,
        "tokenizer_sha256": tokenizer["sha256"],
        "vocab_size": int(tokenizer["vocab_size"]),
        "n_sequences": int(n_sequences),
        "train_tokens": tokens,
        "train_tokens_per_second": tokens / seconds if seconds > 0 else None,
    }
