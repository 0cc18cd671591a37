"""Training loop with atomic checkpoints and a per-epoch metrics table.

:func:`train` fits a :class:`~mfoml.models.ProbedModel` with cross-entropy plus an optional
extra loss computed from intermediate features of the *same* forward pass (the
:class:`ExtraLoss` protocol, implemented e.g. by ``mfoml.losses.SVSLLoss``). Inputs are numpy
arrays: ``x`` float32 ``(N, *input_shape)``, ``y`` int64 ``(N,)``.

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
    heldout_loss, heldout_acc, test_loss, test_acc, lr, seconds`` (+ ``{name}_loss/_acc`` for
    other evaluation sets, + ``train_extra_loss`` when an extra loss is used). ``train_loss``
    and ``train_acc`` are the means over the epoch's mini-batches in training mode (the
    cross-entropy alone); the evaluation columns are computed in eval mode after the epoch
    (NaN when that set is not given). ``lr`` is the learning rate used during the epoch,
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

import dataclasses
import math
import re
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .io import atomic_path, atomic_write_csv
from .models import ProbedModel, build_model, resolve_device

__all__ = [
    "CheckpointError",
    "ExtraLoss",
    "METRIC_COLUMNS",
    "TrainConfig",
    "checkpoint_path",
    "evaluate",
    "hold_frozen_batchnorm",
    "list_checkpoints",
    "load_checkpoint",
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
    "lr",
    "seconds",
]
_CKPT_RE = re.compile(r"^epoch_(\d{4,})\.pt$")
_REQUIRED_KEYS = ("model_spec", "state_dict", "epoch", "train_config", "metrics")


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupted or inconsistent."""


@runtime_checkable
class ExtraLoss(Protocol):
    """An extra loss term computed from intermediate features of the training forward pass.

    Attributes
    ----------
    layers : probe-layer names whose outputs the loss needs; :func:`train` requests them with
        ``model.forward_features(x, loss.layers)`` in the same pass that gives the logits.

    ``__call__(features, labels)`` receives ``{name: Tensor (B, *layer_shape)}`` (with autograd
    graph) and the batch labels ``(B,)`` int64, and returns a scalar Tensor that is added to
    the mean cross-entropy.

    Optionally the object may define ``on_epoch_start(model, x_train, y_train, device)``; it is
    then called at the start of every epoch (before the first batch) with the model, the
    training arrays (numpy) and the ``torch.device`` (e.g. to recompute whole-training-set class
    means for non-batched SVSL). It is not part of the structural type because it is optional.
    """

    layers: list[str]

    def __call__(self, features: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor: ...


@dataclasses.dataclass
class TrainConfig:
    """Training hyper-parameters.

    Attributes
    ----------
    epochs : number of epochs (>= 0).
    batch_size : mini-batch size.
    optimizer : ``"adam"`` or ``"sgd"``.
    lr : initial learning rate.
    momentum : SGD momentum (ignored by Adam).
    nesterov : SGD Nesterov momentum.
    weight_decay : L2 weight decay (both optimizers; Adam's coupled form).
    schedule : ``"none"``, ``"step"`` (multiply by ``gamma`` every ``step_size`` epochs) or
        ``"multistep"`` (multiply by ``gamma`` at each epoch in ``milestones``); stepped once
        per epoch.
    step_size, gamma, milestones : schedule parameters.
    seed : seed of the shuffling generator and of the global torch RNG.
    checkpoint_epochs : epochs after which a checkpoint is written (``0`` = before training);
        ``None`` means ``[epochs]``.
    device : ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    mixed_precision : use float16 autocast + GradScaler on CUDA (never on CPU).
    eval_batch_size : batch size of the evaluation passes.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "none"
    step_size: int = 30
    gamma: float = 0.1
    milestones: list[int] = dataclasses.field(default_factory=list)
    seed: int = 0
    checkpoint_epochs: list[int] | None = None
    device: str = "auto"
    mixed_precision: bool = True
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending key when a value is impossible."""

        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"TrainConfig.{key}: {why} (got {getattr(self, key)!r})")

        for key, kind in _FIELD_TYPES.items():
            val = getattr(self, key)
            if kind == "int" and (isinstance(val, bool) or not isinstance(val, (int, np.integer))):
                raise bad(key, "must be an integer")
            if kind == "float" and (
                isinstance(val, bool) or not isinstance(val, (int, float, np.integer, np.floating))
            ):
                raise bad(key, "must be a number")
            if kind == "bool" and not isinstance(val, (bool, np.bool_)):
                raise bad(key, "must be true or false")
            if kind == "str" and not isinstance(val, str):
                raise bad(key, "must be a string")
            if kind == "ints" and val is not None:
                if not isinstance(val, (list, tuple)) or any(
                    isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in val
                ):
                    raise bad(key, "must be a list of integers")
        if int(self.epochs) < 0:
            raise bad("epochs", "must be >= 0")
        if int(self.batch_size) < 2:
            raise bad("batch_size", "must be >= 2 (BatchNorm needs two samples)")
        if self.optimizer not in ("adam", "sgd"):
            raise bad("optimizer", "must be 'adam' or 'sgd'")
        if not (float(self.lr) > 0 and math.isfinite(float(self.lr))):
            raise bad("lr", "must be a finite number > 0")
        if not 0 <= float(self.momentum) < 1:
            raise bad("momentum", "must be in [0, 1)")
        if float(self.weight_decay) < 0:
            raise bad("weight_decay", "must be >= 0")
        if self.schedule not in ("none", "step", "multistep"):
            raise bad("schedule", "must be 'none', 'step' or 'multistep'")
        if int(self.step_size) < 1:
            raise bad("step_size", "must be >= 1")
        if not 0 < float(self.gamma) <= 1:
            raise bad("gamma", "must be in (0, 1]")
        if any(int(m) < 1 for m in self.milestones) or list(self.milestones) != sorted(
            self.milestones
        ):
            raise bad("milestones", "must be increasing epochs >= 1")
        if self.checkpoint_epochs is not None and any(
            not 0 <= int(e) <= int(self.epochs) for e in self.checkpoint_epochs
        ):
            raise bad("checkpoint_epochs", f"each epoch must be in [0, epochs={self.epochs}]")
        if int(self.eval_batch_size) < 1:
            raise bad("eval_batch_size", "must be >= 1")
        if not (self.device == "auto" or re.match(r"^(cpu|cuda(:\d+)?)$", self.device)):
            raise bad("device", "must be 'auto', 'cpu', 'cuda' or 'cuda:N'")

    @property
    def save_epochs(self) -> list[int]:
        """Sorted, de-duplicated checkpoint epochs (``[epochs]`` when not configured)."""
        eps = [self.epochs] if self.checkpoint_epochs is None else self.checkpoint_epochs
        return sorted({int(e) for e in eps})

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict of the fields (JSON-able, stored in checkpoints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; an unknown key is a ``ValueError`` naming the key."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"TrainConfig: unknown key(s) {unknown}; known: {sorted(names)}")
        return cls(**dict(d))


_FIELD_TYPES = {
    "epochs": "int",
    "batch_size": "int",
    "optimizer": "str",
    "lr": "float",
    "momentum": "float",
    "nesterov": "bool",
    "weight_decay": "float",
    "schedule": "str",
    "step_size": "int",
    "gamma": "float",
    "milestones": "ints",
    "seed": "int",
    "checkpoint_epochs": "ints",
    "device": "str",
    "mixed_precision": "bool",
    "eval_batch_size": "int",
}


def checkpoint_path(out_dir: str | Path, epoch: int) -> Path:
    """``out_dir / f"epoch_{epoch:04d}.pt"``."""
    return Path(out_dir) / f"epoch_{int(epoch):04d}.pt"


def list_checkpoints(out_dir: str | Path) -> dict[int, Path]:
    """Checkpoint files in ``out_dir`` by epoch (names only; contents not verified)."""
    out: dict[int, Path] = {}
    d = Path(out_dir)
    if d.is_dir():
        for p in d.iterdir():
            m = _CKPT_RE.match(p.name)
            if m:
                out[int(m.group(1))] = p
    return dict(sorted(out.items()))


def _read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{p}: checkpoint is truncated or corrupted and cannot be trusted ({exc})"
        ) from exc
    except Exception as exc:  # unpickling errors of all kinds
        raise CheckpointError(
            f"{p}: checkpoint cannot be read ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{p}: checkpoint is not a dict")
    missing = [k for k in _REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{p}: checkpoint lacks key(s) {missing}")
    return ckpt


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[ProbedModel, dict]:
    """Rebuild the model of a checkpoint and load its weights.

    Returns
    -------
    model : :class:`~mfoml.models.ProbedModel` in eval mode, on ``map_location``.
    checkpoint : the saved dict (``model_spec, state_dict, epoch, train_config, metrics``, ...).

    Raises
    ------
    CheckpointError (a ``ValueError``) naming the file when it is missing, truncated,
    corrupted, or its weights do not fit its ``model_spec``.
    """
    ckpt = _read_checkpoint(path, map_location)
    try:
        model = build_model(**ckpt["model_spec"])
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: weights do not match model_spec ({exc})") from exc
    model.to(map_location)
    model.eval()
    return model, ckpt


def _as_arrays(x: Any, y: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    xa = np.asarray(x)
    ya = np.asarray(y)
    if xa.ndim < 2:
        raise ValueError(f"{what}: x must have shape (N, *input_shape), got {xa.shape}")
    if ya.shape != (xa.shape[0],):
        raise ValueError(f"{what}: y must have shape ({xa.shape[0]},), got {ya.shape}")
    if not np.issubdtype(ya.dtype, np.integer):
        raise ValueError(f"{what}: y must hold integer class labels, got dtype {ya.dtype}")
    if not np.isfinite(xa).all():
        raise ValueError(f"{what}: x contains NaN or inf")
    return (
        torch.from_numpy(np.ascontiguousarray(xa, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(ya, dtype=np.int64)),
    )


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


def _make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


def _make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=list(cfg.milestones), gamma=cfg.gamma
        )
    return None


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
    log: Callable[[str], Any] | None = print,
    resume: bool = False,
) -> pd.DataFrame:
    """Train ``model`` in place; write checkpoints and ``metrics.csv`` into ``out_dir``.

    Parameters
    ----------
    model : a :class:`~mfoml.models.ProbedModel` (its current weights are the initialization).
    x_train : float32 array ``(N, *input_shape)``.
    y_train : int64 array ``(N,)`` with labels in ``[0, n_classes)``.
    cfg : :class:`TrainConfig`.
    out_dir : directory for ``epoch_{e:04d}.pt`` and ``metrics.csv`` (created).
    evals : ``{"heldout": (x, y), "test": (x, y)}``; any name works (columns
        ``{name}_loss``, ``{name}_acc``); a ``None`` value is skipped (NaN columns).
    extra_loss : an :class:`ExtraLoss`; its value is added to the cross-entropy, computed from
        ``model.forward_features(x, extra_loss.layers)`` of the same forward pass.
    log : called with one progress line per epoch (``None``: silent).
    resume : continue from the latest readable checkpoint in ``out_dir`` (unreadable ones are
        deleted and reported; one with another config or model spec is a ``ValueError``); the
        result is bit-identical to an uninterrupted run on CPU. Without ``resume``, or when
        there is nothing to resume from, the run starts from scratch and first deletes the
        checkpoints, ``metrics.csv`` and temp files that an earlier run left in ``out_dir``
        (other files there are not touched).

    Returns
    -------
    pandas.DataFrame, the metrics table (one row per epoch, columns as in the module doc).
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    cfg.validate()
    say = log if log is not None else (lambda _msg: None)
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
    if extra_loss is not None:
        layers = list(getattr(extra_loss, "layers", []))
        unknown = [la for la in layers if la not in model.probe_layers]
        if unknown:
            raise ValueError(
                f"extra_loss.layers: unknown layer(s) {unknown}; model has {model.probe_layers}"
            )
    else:
        layers = []

    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    prev_cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        model.to(device)
        # the whole training set lives on the device (no copy on CPU); batches are gathered there
        xt_dev, yt_dev = xt.to(device), yt.to(device)
        opt = _make_optimizer(model, cfg)
        sched = _make_scheduler(opt, cfg)
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        rows: list[dict[str, Any]] = []
        start = 1

        found = _find_resumable(out, cfg, model.spec, say) if resume else None
        _clear_outputs(out, say, fresh=found is None)
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
            say(f"resuming from epoch {ckpt['epoch']} ({checkpoint_path(out, ckpt['epoch'])})")
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
            say(f"saved checkpoint {dest}")

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
                scaler.step(opt)
                scaler.update()
                nb = len(idx)
                sum_loss += float(ce.detach()) * nb
                if extra is not None:
                    sum_extra += float(extra.detach()) * nb
                correct += int((logits.detach().argmax(1) == yb).sum())
                seen += nb
            if sched is not None:
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
            row["lr"] = lr
            row["seconds"] = time.perf_counter() - t0
            rows.append({k: _plain(v) for k, v in row.items()})
            atomic_write_csv(out / "metrics.csv", _frame(rows))
            say(_progress_line(row, cfg.epochs))
            if epoch in cfg.save_epochs:
                save(epoch)
        if not rows:
            atomic_write_csv(out / "metrics.csv", _frame(rows))
        return _frame(rows)
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = prev_cudnn


def _frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    extra = [c for c in frame.columns if c not in METRIC_COLUMNS]
    return frame[METRIC_COLUMNS[:-2] + extra + METRIC_COLUMNS[-2:]]


def _progress_line(row: Mapping[str, Any], epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}"]
    for key in row:
        if key in ("epoch", "seconds", "lr"):
            continue
        val = row[key]
        if isinstance(val, float) and math.isnan(val):
            continue
        parts.append(f"{key}={val:.4f}")
    parts.append(f"lr={row['lr']:.3g}")
    parts.append(f"{row['seconds']:.1f}s")
    return " ".join(parts)


def _find_resumable(
    out: Path, cfg: TrainConfig, spec: Mapping[str, Any], say: Callable[[str], Any]
) -> dict | None:
    """The latest readable checkpoint of the same config and model spec, or ``None``."""
    for epoch, path in sorted(list_checkpoints(out).items(), reverse=True):
        try:
            ckpt = _read_checkpoint(path)
        except CheckpointError as exc:
            say(f"removing unreadable checkpoint: {exc}")
            path.unlink(missing_ok=True)
            continue
        if ckpt["train_config"] != cfg.to_dict():
            raise ValueError(
                f"{path}: cannot resume, its train_config differs from the requested one"
            )
        if _arch_spec(ckpt["model_spec"]) != _arch_spec(spec):
            raise ValueError(f"{path}: cannot resume, its model_spec differs from the model's")
        if epoch > cfg.epochs or "optimizer_state" not in ckpt or "shuffle_rng_state" not in ckpt:
            continue
        return ckpt
    return None


def _arch_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The model spec without its init ``seed`` (which the loaded weights override)."""
    return {k: v for k, v in spec.items() if k != "seed"}


def _clear_outputs(out: Path, say: Callable[[str], Any], *, fresh: bool) -> None:
    """Delete temp files of a killed run in ``out``; with ``fresh`` also its checkpoints/table."""
    stale: list[Path] = []
    if fresh:
        stale += list(list_checkpoints(out).values())
        stale += [out / "metrics.csv"] if (out / "metrics.csv").exists() else []
    stale += [
        p for p in out.iterdir() if re.match(r"^\.(epoch_\d{4,}\.pt|metrics\.csv)\..*\.tmp", p.name)
    ]
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        say(f"removed {len(stale)} file(s) of an earlier run from {out}")
