"""What the training jobs share: rules ``train`` (:mod:`mfoml.nets.supervised`), ``train_ssl``
(:mod:`mfoml.nets.ssl_job`) and ``pretrain`` (:mod:`mfoml.nets.pretrain`).

Crash safety. A job builds its output directory in a partial directory beside it
(:func:`mfoml.io.partial_dir`) and moves it into place only when complete
(:func:`mfoml.io.replace_dir`), so a killed job never leaves a half-written output that a later
run (after ``rm -rf .snakemake``, say) would trust. A supervised run resumes:
:func:`resume_dir` stamps the partial directory with the job's request (its parameter slice and
code version, ``request.json``); a rerun of the same request resumes from the last complete
checkpoint there (:func:`mfoml.nets.training.train` with ``resume=True``), a changed request
(other params, other code) starts afresh. ``request.json`` stays in the finished output: the
request it answers. Self-supervised training and MLM pretraining do not resume
(:func:`mfoml.io.fresh_partial_dir`: what a killed job left goes).

The run's split (:func:`fold_indices`, :class:`RunSplit`): the k-1 training folds of the fold
assignment (``results/folds/{dataset}.json``) and the held-out fold ``k``; fold ``full`` trains
on the whole training split with no held-out fold (its ``heldout_*`` metrics are NaN), which
needs a data set with an official test split. ``split.npz`` (:meth:`RunSplit.save`) holds the
train/held-out indices, the labels actually trained on, the clean labels and the relabelled
mask (the activation dumps read it).

:func:`start_job` is the prologue of the three rule scripts (the job's log, its parameter
slice, the job's threads); :func:`train_config` is the :class:`~mfoml.nets.trainconfig.TrainConfig` of a run's parameter
slice (both the supervised and the self-supervised runs); :func:`build_run_model` builds a
run's or a stage's network from its model specification (a text model takes its vocabulary
and special ids from the data set's tokenizer).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mfoml.data.folds import load_folds, split_indices
from mfoml.io import atomic_save_npz, atomic_write_text, partial_dir
from mfoml.logs import log_device_environment, setup_logging
from mfoml.nets.architectures import build_model, text_model_kwargs
from mfoml.nets.trainconfig import TrainConfig

if TYPE_CHECKING:
    import pandas as pd

    from mfoml.data.store import Dataset
    from mfoml.nets.models import ProbedModel

__all__ = [
    "RunSplit",
    "build_run_model",
    "fold_indices",
    "log_finished",
    "resume_dir",
    "run_split",
    "start_job",
    "train_config",
]

log = logging.getLogger(__name__)

#: the ``fold`` of a run trained on the whole training split (mfoml.config.runs.FULL)
FULL = "full"


def start_job(
    log_file: str | os.PathLike[str],
    name: str,
    params_cfg: str,
    output: str | os.PathLike[str],
    threads: int,
) -> tuple[dict[str, Any], Path]:
    """The prologue of a training job's rule script (``train``, ``train_ssl``, ``pretrain``).

    Routes the job's output into ``log_file`` (:func:`mfoml.logs.setup_logging` under ``name``),
    logs the device environment, sets torch's intra-op threads to the job's ``threads`` (at
    least 1; :func:`mfoml.nets.threads.set_training_threads` may lower them once the model is
    built) and logs the parameter slice (``run <id>: {...}``, an MLM stage ``MLM stage <name>:
    {...}``).

    Parameters
    ----------
    log_file, name : the job's log file and logger name.
    params_cfg : the rule's ``params.cfg`` (canonical JSON of the parameter slice).
    output : the job's output directory.
    threads : the job's threads (``snakemake.threads``).

    Returns
    -------
    ``(cfg, out_dir)``: the parameter slice and the output directory.
    """
    job_log = setup_logging(log_file, name)
    log_device_environment(job_log)
    cfg = json.loads(params_cfg)
    torch.set_num_threads(max(1, int(threads)))
    what = f"run {cfg['run']}" if "run" in cfg else f"MLM stage {cfg['stage']}"
    job_log.info("%s: %s", what, json.dumps(cfg, sort_keys=True))
    return cfg, Path(output)


def resume_dir(out_dir: str | os.PathLike[str], params: Any, code: str) -> Path:
    """The partial directory of ``out_dir``, stamped with the request ``(params, code)``.

    What a run of the same request left there is kept (training resumes from its last complete
    checkpoint); what a run of another request left, or a directory without a stamp, is
    discarded (logged). The stamp ``request.json`` is ``{"params": params, "code": code}`` as
    canonical JSON (sorted keys).

    Parameters
    ----------
    out_dir : the job's output directory.
    params : the run's parameter slice (JSON-able).
    code : the job's code version (the rule's ``params.code``).

    Returns
    -------
    The directory (created) to build the output in.
    """
    work = partial_dir(out_dir)
    request = json.dumps({"params": params, "code": code}, sort_keys=True)
    stamp = work / "request.json"
    if work.exists() and (not stamp.is_file() or stamp.read_text() != request):
        log.info("discarding %s (left by a run of another request)", work)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stamp, request)
    return work


def fold_indices(
    ds: Dataset, cfg: Mapping[str, Any], folds_path: str | os.PathLike[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out rows of the run ``cfg`` (keys ``run``, ``dataset``, ``fold``).

    Parameters
    ----------
    ds : the run's data set.
    cfg : the run's parameter slice; ``fold`` is a fold index or ``"full"``.
    folds_path : the data set's fold assignment (unused, and may be ``None``, for ``"full"``).

    Returns
    -------
    ``(train_idx, heldout_idx)``: int64 arrays of rows of the training split; ``heldout_idx``
    is empty for ``"full"``.

    Raises
    ------
    ValueError for fold ``"full"`` on a data set without an official test split.
    """
    if cfg["fold"] != FULL:
        return split_indices(load_folds(folds_path), int(cfg["fold"]))
    if ds.x_test is None:
        raise ValueError(
            f"run {cfg['run']}: sweep folds 'full' needs a data set with an official test split; "
            f"{cfg['dataset']!r} has none (use fold indices instead)"
        )
    train_idx = np.arange(len(ds.y_train), dtype=np.int64)
    log.info("fold 'full': training on all %d training samples, no held-out fold", len(train_idx))
    return train_idx, np.zeros(0, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class RunSplit:
    """The rows a run trains on and the labels it uses.

    Attributes
    ----------
    train_idx : (n,) int64 rows of the training split trained on.
    heldout_idx : (m,) int64 rows of the held-out fold (empty for fold ``full``).
    y_clean : (n,) int64 labels of ``train_idx``.
    y_train : (n,) int64 labels trained on (``y_clean`` with the relabelled ones changed).
    relabelled : (n,) bool, where ``y_train`` differs from ``y_clean`` by label noise.
    """

    train_idx: np.ndarray
    heldout_idx: np.ndarray
    y_clean: np.ndarray
    y_train: np.ndarray
    relabelled: np.ndarray

    @classmethod
    def clean(cls, ds: Dataset, train_idx: np.ndarray, heldout_idx: np.ndarray) -> RunSplit:
        """The split of ``train_idx``/``heldout_idx`` with the data set's own labels."""
        y = np.asarray(ds.y_train[train_idx], dtype=np.int64)
        return cls(
            np.asarray(train_idx, dtype=np.int64),
            np.asarray(heldout_idx, dtype=np.int64),
            y,
            y,
            np.zeros(len(y), dtype=bool),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``split.npz``: ``train_idx, heldout_idx, y_train`` (the labels trained on),
        ``y_train_clean, relabelled`` (atomic)."""
        atomic_save_npz(
            path,
            train_idx=np.asarray(self.train_idx, dtype=np.int64),
            heldout_idx=np.asarray(self.heldout_idx, dtype=np.int64),
            y_train=self.y_train,
            y_train_clean=self.y_clean,
            relabelled=self.relabelled,
        )


def run_split(
    ds: Dataset, cfg: Mapping[str, Any], folds_path: str | os.PathLike[str] | None
) -> RunSplit:
    """:class:`RunSplit` of the run's fold (:func:`fold_indices`) with the clean labels."""
    return RunSplit.clean(ds, *fold_indices(ds, cfg, folds_path))


def train_config(cfg: Mapping[str, Any], *, batch_size: int | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of a run's parameter slice.

    Parameters
    ----------
    cfg : the run's parameter slice: its ``train`` section (schema defaults filled in),
        ``seed`` and ``device``.
    batch_size : replaces ``train.batch_size`` (a full-batch run's training-set size).
    """
    t = cfg["train"]
    return TrainConfig(
        epochs=int(t["epochs"]),
        batch_size=int(t["batch_size"]) if batch_size is None else int(batch_size),
        optimizer=t["optimizer"],
        lr=float(t["lr"]),
        momentum=float(t["momentum"]),
        nesterov=bool(t["nesterov"]),
        weight_decay=float(t["weight_decay"]),
        schedule=t["schedule"],
        step_size=int(t["step_size"]),
        gamma=float(t["gamma"]),
        milestones=[int(m) for m in t["milestones"]],
        seed=int(cfg["seed"]),
        checkpoint_epochs=[int(e) for e in t["checkpoints"]],
        device=cfg["device"],
        mixed_precision=bool(t["mixed_precision"]),
        eval_batch_size=int(t["eval_batch_size"]),
        warmup_fraction=float(t["warmup_fraction"]),
        grad_clip=None if t["grad_clip"] is None else float(t["grad_clip"]),
    )


def build_run_model(
    spec: Mapping[str, Any],
    meta: Mapping[str, Any],
    input_shape: Sequence[int],
    n_classes: int,
    *,
    activation: str,
    seed: int,
    run_id: str | None = None,
) -> ProbedModel:
    """The network of a model specification (``{"arch": ..., **builder keys}``).

    A text data set (``meta["kind"] == "text"``) gives the vocabulary and special ids
    (:func:`~mfoml.nets.architectures.text_model_kwargs`). With ``run_id`` (``{dataset}/{model}/
    ...``) a builder error names the model's own config keys (``models.<model>.*``).
    """
    kwargs = dict(spec)
    arch = kwargs.pop("arch")
    if meta.get("kind") == "text":
        kwargs.update(text_model_kwargs(arch, meta["tokenizer"]))
    try:
        return build_model(
            arch, tuple(input_shape), n_classes, activation=activation, seed=seed, **kwargs
        )
    except ValueError as exc:
        if run_id is None:
            raise
        own = f"models.{run_id.split('/')[1]}"
        raise ValueError(f"run {run_id}: " + str(exc).replace("models.*", own)) from exc


def log_finished(name: str, metrics: pd.DataFrame) -> None:
    """Log the last row of a finished job's ``metrics`` (rounded), or that no epoch ran."""
    if len(metrics):
        last = metrics.iloc[-1].to_dict()
        log.info("finished %s: %s", name, {k: round(float(v), 4) for k, v in last.items()})
    else:
        log.info("finished %s: no epoch trained", name)
