"""Checkpoint files of a training run: names, reading with clear errors, resuming.

A checkpoint ``epoch_{e:04d}.pt`` is a ``torch.save`` dict with ``model_spec`` (the kwargs of
:func:`mfoml.nets.architectures.build_model`, or a self-supervised encoder's spec ``{"kind":
"ssl", ...}`` rebuilt by :func:`mfoml.nets.ssl_model.build_from_spec`), ``state_dict``,
``epoch``, ``train_config``, ``metrics`` (the rows so far) and, for resuming, ``optimizer_state``, ``scheduler_state``, ``scaler_state``,
``rng_state``, ``shuffle_rng_state`` (written by :func:`mfoml.nets.training.train`, atomically).
Every reader raises :class:`CheckpointError` naming the file when it is missing, truncated,
corrupted or inconsistent.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mfoml.nets.architectures import build_model
from mfoml.nets.models import ProbedModel

__all__ = [
    "CheckpointError",
    "checkpoint_path",
    "arch_spec",
    "clear_outputs",
    "find_resumable",
    "list_checkpoints",
    "load_checkpoint",
    "read_checkpoint",
]

log = logging.getLogger(__name__)

_CKPT_RE = re.compile(r"^epoch_(\d{4,})\.pt$")
_REQUIRED_KEYS = ("model_spec", "state_dict", "epoch", "train_config", "metrics")


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupted or inconsistent."""


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


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint dict at ``path`` (weights only; :class:`CheckpointError` naming the file)."""
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
    model : :class:`~mfoml.nets.models.ProbedModel` in eval mode, on ``map_location``.
    checkpoint : the saved dict (``model_spec, state_dict, epoch, train_config, metrics``, ...).

    Raises
    ------
    CheckpointError (a ``ValueError``) naming the file when it is missing, truncated,
    corrupted, or its weights do not fit its ``model_spec``.
    """
    ckpt = read_checkpoint(path, map_location)
    try:
        spec = ckpt["model_spec"]
        if spec.get("kind") == "ssl":  # a self-supervised encoder (mfoml.nets.ssl_model)
            from mfoml.nets.ssl_model import build_from_spec

            model = build_from_spec(spec)
        else:
            model = build_model(**spec)
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: weights do not match model_spec ({exc})") from exc
    model.to(map_location)
    model.eval()
    return model, ckpt


def find_resumable(
    out: Path, train_config: Mapping[str, Any], epochs: int, spec: Mapping[str, Any]
) -> dict | None:
    """The latest readable checkpoint in ``out`` of the same config and model spec, or ``None``.

    Unreadable checkpoints are deleted (logged); a checkpoint of another ``train_config`` or
    architecture is an error (``ValueError`` naming the file); checkpoints beyond ``epochs`` or
    without the resume state are skipped.
    """
    for epoch, path in sorted(list_checkpoints(out).items(), reverse=True):
        try:
            ckpt = read_checkpoint(path)
        except CheckpointError as exc:
            log.warning("removing unreadable checkpoint: %s", exc)
            path.unlink(missing_ok=True)
            continue
        if ckpt["train_config"] != dict(train_config):
            raise ValueError(
                f"{path}: cannot resume, its train_config differs from the requested one"
            )
        if arch_spec(ckpt["model_spec"]) != arch_spec(spec):
            raise ValueError(f"{path}: cannot resume, its model_spec differs from the model's")
        if epoch > epochs or "optimizer_state" not in ckpt or "shuffle_rng_state" not in ckpt:
            continue
        return ckpt
    return None


def arch_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The model spec without its init ``seed`` (which the loaded weights override)."""
    return {k: v for k, v in spec.items() if k != "seed"}


def clear_outputs(out: Path, *, fresh: bool) -> None:
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
        log.info("removed %d file(s) of an earlier run from %s", len(stale), out)
