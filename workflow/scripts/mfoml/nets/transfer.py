"""Where a run's weights start, besides its own initialization (rule ``train``).

Transfer learning (``transfer`` in a sweep, :func:`start_from_run`): the weights of the source
run's checkpoint (``source_epoch``, default its last) are copied into the new model except the
head (``stages.<head>``, re-initialized for the new classes), and the parameters of the first
``freeze`` stages are frozen (``requires_grad = False``; the training loop also holds their
BatchNorm layers in eval mode, :func:`mfoml.nets.training.hold_frozen_batchnorm`, so their
running statistics stay fixed). The source must have the same architecture up to the head.

A masked-language-model stage (``pretrained`` in a sweep, :func:`start_from_stage`): the
encoder of the stage's checkpoint (``epoch``, default its last) is copied into an
``arch: transformer`` model and frozen with ``freeze``
(:func:`mfoml.nets.pretrain.init_from_pretrained`); the run's data set must have been
tokenized with the stage's tokenizer. Only such runs execute (and rerun for)
:mod:`mfoml.nets.pretrain`, imported by that function alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mfoml.io import read_json
from mfoml.nets.checkpoints import list_checkpoints, load_checkpoint
from mfoml.nets.models import ProbedModel

__all__ = ["source_checkpoint", "start_from_run", "start_from_stage", "transfer_weights"]

log = logging.getLogger(__name__)


def source_checkpoint(
    directory: str | os.PathLike[str], epoch: int | None = None
) -> tuple[ProbedModel, int]:
    """The model of the checkpoint of ``epoch`` (``None``: the last) in ``directory``.

    Returns
    -------
    ``(model, epoch)``.

    Raises
    ------
    FileNotFoundError when the directory has no checkpoint, or none of that epoch.
    """
    ckpts = list_checkpoints(directory)
    if not ckpts:
        raise FileNotFoundError(f"{directory}: the source has no checkpoint")
    epoch = max(ckpts) if epoch is None else int(epoch)
    if epoch not in ckpts:
        raise FileNotFoundError(f"{directory}: no checkpoint of epoch {epoch} ({sorted(ckpts)})")
    model, _ = load_checkpoint(ckpts[epoch])
    return model, epoch


def transfer_weights(
    model: ProbedModel, source: Mapping[str, torch.Tensor], *, freeze: int = 0
) -> tuple[list[str], list[str]]:
    """Copy the tensors of ``source`` into ``model`` except its head; freeze its first stages.

    Parameters
    ----------
    model : the new network (changed in place); its head is ``model.probe_layers[-1]``.
    source : the source network's ``state_dict`` (same architecture up to the head).
    freeze : how many stages before the head get ``requires_grad = False`` (from the first).

    Returns
    -------
    ``(copied, frozen)``: the names of the copied tensors and of the frozen stages.

    Raises
    ------
    ValueError naming the first source tensor the model lacks or has in another shape, or
    when ``freeze`` exceeds the number of stages before the head.
    """
    head = model.probe_layers[-1]
    kept = {k: v for k, v in source.items() if not k.startswith(f"stages.{head}.")}
    state = model.state_dict()
    for key, value in kept.items():
        if key not in state or state[key].shape != value.shape:
            got = tuple(state[key].shape) if key in state else "missing"
            raise ValueError(f"parameter {key!r}: {tuple(value.shape)} vs {got}")
    state.update(kept)
    model.load_state_dict(state)
    stages = [name for name in model.stages if name != head]  # also with pre-activation probes
    if int(freeze) > len(stages):
        raise ValueError(
            f"transfer.freeze = {int(freeze)} but the model has only {len(stages)} stages "
            f"before the head ({stages})"
        )
    frozen = stages[: int(freeze)]
    for name in frozen:
        for p in model.stages[name].parameters():
            p.requires_grad_(False)
    return list(kept), frozen


def start_from_run(
    model: ProbedModel, source_dir: str | os.PathLike[str], transfer: Mapping[str, Any], run_id: str
) -> list[str]:
    """:func:`transfer_weights` from the source run's checkpoints in ``source_dir``.

    ``transfer`` is the run's ``transfer`` setting: ``source_run``, ``source_epoch`` (``None``:
    the last checkpoint), ``freeze``. Returns the frozen stages.
    """
    source, epoch = source_checkpoint(source_dir, transfer.get("source_epoch"))
    try:
        copied, frozen = transfer_weights(
            model, source.state_dict(), freeze=int(transfer.get("freeze", 0))
        )
    except ValueError as exc:
        raise ValueError(
            f"run {run_id}: source run {transfer['source_run']!r} is not compatible ({exc})"
        ) from exc
    log.info(
        "transfer from %s epoch %d: %d tensors copied, head re-initialized, frozen stages %s",
        transfer["source_run"],
        epoch,
        len(copied),
        frozen,
    )
    return frozen


def start_from_stage(
    model: ProbedModel,
    stage_dir: str | os.PathLike[str],
    pretrained: Mapping[str, Any],
    tokenizer: Mapping[str, Any],
    *,
    run_id: str,
    dataset: str,
) -> list[str]:
    """Copy the encoder of an MLM stage (``results/pretrain/{stage}/checkpoints``) into ``model``.

    ``pretrained`` is the run's setting (``stage``, ``epoch``: ``None`` for the last, ``freeze``),
    ``tokenizer`` the run's data set's ``meta["tokenizer"]``. Returns the frozen parameters.

    Raises
    ------
    ValueError when the data set was not tokenized with the stage's tokenizer.
    """
    # only runs starting from an MLM stage execute (and rerun for) mfoml.nets.pretrain
    from mfoml.nets.pretrain import init_from_pretrained

    stage = read_json(Path(stage_dir) / "stage.json")
    if stage["tokenizer_sha256"] != tokenizer["sha256"]:
        raise ValueError(
            f"run {run_id}: data set {dataset!r} was not tokenized with the tokenizer of "
            f"pretraining stage {pretrained['stage']!r} (data set {stage['dataset']!r}); give "
            f"it text.tokenizer_from: {stage['dataset']}"
        )
    source, epoch = source_checkpoint(stage_dir, pretrained.get("epoch"))
    copied, frozen = init_from_pretrained(
        model, source.state_dict(), freeze=bool(pretrained["freeze"])
    )
    log.info(
        "encoder from MLM stage %s epoch %d: %d tensors copied, %d parameters frozen",
        pretrained["stage"],
        epoch,
        len(copied),
        len(frozen),
    )
    return frozen
