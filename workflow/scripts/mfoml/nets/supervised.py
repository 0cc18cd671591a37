"""The supervised training job (rule ``train``, workflow/scripts/train.py): one run of the run
table.

The job loads the data set and the fold assignment and trains on the k-1 training folds
(:func:`supervised_split`: labels relabelled by the run's noise fraction,
:func:`mfoml.data.noise.flip_labels` seeded with the run's seed), evaluating on the held-out
fold and the official test split every epoch (fold ``full``: the whole training split, no
held-out fold, ``heldout_*`` metrics NaN; :mod:`mfoml.nets.trainjob`). It writes checkpoints at
the configured epochs and ``metrics.csv`` (:func:`mfoml.nets.training.train`, with
``train_eval_*``: the end-of-epoch model on the training split in eval mode, the interpolation
threshold of METHODS section 11), then ``split.npz`` (:class:`~mfoml.nets.trainjob.RunSplit`),
``run.json`` (:func:`run_info`: the run's settings, probe layers, penultimate layer) and
``request.json`` (the job's params and code version), all of it in the partial directory of
:func:`mfoml.nets.trainjob.resume_dir`, renamed onto the output only when complete; a killed
run resumes from the last complete checkpoint there.

Training on a subset (``train.subset``: a stratified subset of the training folds,
:func:`mfoml.data.subsample.stratified_subsample` with seed 0, also what ``split.npz``
records), full-batch gradient descent (``train.full_batch``: one batch per epoch) and the
sharpness tracked every ``train.sharpness_every`` epochs (:mod:`mfoml.dynamics.edge`: columns
``sharpness`` and ``stability_threshold``) make the edge-of-stability study. With
``train.keep_best`` the best held-out epoch's checkpoint is kept as well. Optional W&B tracking
(``tracking`` in the config, read by the rule script so that it never reruns a job) logs each
epoch's row (:func:`train_run`).

A run starts from its own initialization, or from a source run's network (``transfer``) or an
MLM stage's encoder (``pretrained``): :mod:`mfoml.nets.transfer`. Networks from outside the
closed list (``arch: torchvision``, ``arch: module``) load their ``weights`` in the builder
(mfoml.nets.tvmodels, mfoml.nets.usermodule); a builder error names the model's own keys
(``models.<name>.layers``). ``train.epochs: 0`` trains nothing: the loaded weights are
checkpoint 0 and ``metrics.csv`` holds their evaluation (train, held-out, test split) as the
row of epoch 0 (:func:`zero_epoch_metrics`). The SVSL loss (``loss.type: svsl``) applies to the
probe layers from ``gamma`` to the penultimate one (:meth:`mfoml.nets.losses.SVSLLoss.from_model`);
only SVSL runs execute (and rerun for) :mod:`mfoml.nets.losses`.

A table with categorical columns or missing values (``table`` source, OpenML) reaches the
network one-hot encoded and imputed, fitted on the run's training rows only (the rule script
fits :func:`mfoml.tabular.netinput.fold_encoder` and passes it to :func:`run_inputs`);
``run.json``'s ``input_shape`` is then the encoded width. A text run reports its training
throughput in real (non-padding) tokens (:func:`text_throughput`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from mfoml.data.noise import flip_labels
from mfoml.data.subsample import stratified_subsample
from mfoml.io import atomic_write_csv
from mfoml.nets.models import ProbedModel
from mfoml.nets.threads import set_training_threads
from mfoml.nets.trainconfig import ExtraLoss, TrainConfig
from mfoml.nets.training import METRIC_COLUMNS, evaluate, train
from mfoml.nets.trainjob import RunSplit, build_run_model, fold_indices, train_config
from mfoml.nets.transfer import start_from_run, start_from_stage

if TYPE_CHECKING:
    from mfoml.data.store import Dataset

__all__ = [
    "RunInputs",
    "run_batch_size",
    "run_info",
    "run_inputs",
    "run_model",
    "run_threads",
    "supervised_split",
    "svsl_loss",
    "text_throughput",
    "train_run",
    "zero_epoch_metrics",
]

log = logging.getLogger(__name__)

#: a split's inputs and labels for evaluation (``None``: the split is not evaluated)
Evals = dict[str, tuple[Any, Any] | None]


def supervised_split(
    ds: Dataset, cfg: Mapping[str, Any], folds_path: str | os.PathLike[str] | None
) -> RunSplit:
    """The rows and labels a supervised run trains on.

    The run's fold (:func:`mfoml.nets.trainjob.fold_indices`), then ``train.subset`` (a
    stratified subset of that many training rows, seed 0, when smaller), then label noise
    (``noise``: that fraction of the labels flipped to another class, seeded by ``seed``).

    Raises
    ------
    ValueError for a data set that is not a classification task.
    """
    if ds.meta["task"] != "classification":
        raise ValueError(
            f"run {cfg['run']}: data set {cfg['dataset']!r} is a {ds.meta['task']} task; the "
            "network track needs a classification data set"
        )
    train_idx, heldout_idx = fold_indices(ds, cfg, folds_path)
    subset = cfg["train"].get("subset")
    if subset is not None and int(subset) < len(train_idx):
        keep = stratified_subsample(np.asarray(ds.y_train)[train_idx], int(subset), seed=0)
        train_idx = np.asarray(train_idx)[keep]
        log.info("training on a stratified subset of %d samples (train.subset)", len(train_idx))
    split = RunSplit.clean(ds, train_idx, heldout_idx)
    if cfg["noise"] <= 0:
        return split
    n_classes = int(ds.meta["n_classes"])
    y_noisy, changed = flip_labels(split.y_clean, cfg["noise"], n_classes, seed=int(cfg["seed"]))
    log.info(
        "label noise %.3f: %d of %d training labels relabelled",
        cfg["noise"],
        changed.sum(),
        len(y_noisy),
    )
    return dataclasses.replace(split, y_train=y_noisy, relabelled=changed)


@dataclasses.dataclass(frozen=True)
class RunInputs:
    """What the network sees of a run's data.

    Attributes
    ----------
    x_train : ``(n, *input_shape)`` the training rows: float32, or int64 token ids (text).
    evals : ``{"heldout": (x, y) | None, "test": (x, y) | None}`` evaluated every epoch.
    input_shape : the network's input shape (a table's encoded width when encoded).
    n_classes : the number of classes (the data set's).
    """

    x_train: np.ndarray
    evals: Evals
    input_shape: list[int]
    n_classes: int


def run_inputs(
    ds: Dataset,
    split: RunSplit,
    cfg: Mapping[str, Any],
    encoder: Callable[[np.ndarray], np.ndarray] | None = None,
) -> RunInputs:
    """The training rows and the evaluation splits of a run.

    Parameters
    ----------
    ds, split : the data set and the run's split.
    cfg : the run's parameter slice (``run``, ``dataset`` name errors).
    encoder : a table's fitted encoder (:func:`mfoml.tabular.netinput.fold_encoder`, with
        ``n_features_out_``) applied to every split; ``None``: the rows as they are.

    Raises
    ------
    ValueError when the (encoded) float training rows hold NaN.
    """
    train_idx, heldout_idx = split.train_idx, split.heldout_idx
    input_shape = (
        [encoder.n_features_out_] if encoder is not None else list(ds.meta["input_shape"])  # type: ignore[attr-defined]
    )
    # token ids (text sets) stay integers; everything else is float32
    x_dtype = np.int64 if np.issubdtype(ds.x_train.dtype, np.integer) else np.float32
    x_rows = ds.x_train[train_idx] if encoder is None else encoder(ds.x_train[train_idx])
    x_train = np.asarray(x_rows, dtype=x_dtype)
    if x_dtype == np.float32 and np.isnan(x_train).any():
        raise ValueError(f"run {cfg['run']}: data set {cfg['dataset']!r} has missing values (NaN)")
    evals: Evals = {
        # no held-out fold for a 'full' run: its heldout_* metrics are NaN (not evaluated)
        "heldout": (ds.x_train[heldout_idx], ds.y_train[heldout_idx]) if len(heldout_idx) else None,
        "test": (ds.x_test, ds.y_test) if ds.x_test is not None else None,
    }
    if encoder is not None:
        evals = {k: None if v is None else (encoder(v[0]), v[1]) for k, v in evals.items()}
    return RunInputs(x_train, evals, input_shape, int(ds.meta["n_classes"]))


def run_model(
    cfg: Mapping[str, Any],
    meta: Mapping[str, Any],
    inputs: RunInputs,
    *,
    stage_dir: str | os.PathLike[str] | None = None,
    source_dir: str | os.PathLike[str] | None = None,
) -> tuple[ProbedModel, list[str]]:
    """The run's network for ``inputs``, with the weights it starts from.

    Built from ``cfg["model"]`` (:func:`mfoml.nets.trainjob.build_run_model`), then the MLM
    stage's encoder copied in (``cfg["pretrained"]``, checkpoints in ``stage_dir``), then the
    source run's network (``cfg["transfer"]``, checkpoints in ``source_dir``);
    :mod:`mfoml.nets.transfer`.

    Returns
    -------
    ``(model, frozen)``: the network and the names of what was frozen (stages, parameters).
    """
    run_id = cfg["run"]
    model = build_run_model(
        cfg["model"],
        meta,
        inputs.input_shape,
        inputs.n_classes,
        activation=cfg["activation"],
        seed=int(cfg["seed"]),
        run_id=run_id,
    )
    if cfg["model"].get("weights"):
        log.info("model %s starts from weights %s", cfg["model"]["arch"], cfg["model"]["weights"])
    frozen: list[str] = []
    if cfg.get("pretrained"):
        frozen += start_from_stage(
            model,
            stage_dir,  # type: ignore[arg-type]
            cfg["pretrained"],
            meta["tokenizer"],
            run_id=run_id,
            dataset=cfg["dataset"],
        )
    if cfg.get("transfer"):
        frozen += start_from_run(model, source_dir, cfg["transfer"], run_id)  # type: ignore[arg-type]
    return model, frozen


def run_batch_size(cfg: Mapping[str, Any], n_train: int) -> int:
    """Samples per training batch: ``train.batch_size``, or with ``train.full_batch`` the
    ``n_train`` training rows (at least 2)."""
    if cfg["train"].get("full_batch", False):
        return max(2, int(n_train))
    return int(cfg["train"]["batch_size"])


def run_threads(
    model: ProbedModel, inputs: RunInputs, split: RunSplit, cfg: Mapping[str, Any], threads: int
) -> int:
    """Set the run's intra-op torch threads from the job's ``threads`` and
    ``train.torch_threads`` (:func:`mfoml.nets.threads.set_training_threads`: ``auto`` counts
    the forward work of one training batch of ``inputs``); returns the threads set."""
    return set_training_threads(
        model,
        inputs.x_train,
        run_batch_size(cfg, len(split.train_idx)),
        threads,
        cfg["train"].get("torch_threads", "auto"),
        device=cfg["device"],
    )


def svsl_loss(
    model: ProbedModel, loss: Mapping[str, Any], n_classes: int, run_id: str
) -> ExtraLoss | None:
    """The SVSL term of ``loss`` (``type: svsl``, ``lam``, ``gamma``, ``batched``) on the probe
    layers from ``gamma`` (1: the first after the input) to the penultimate one; ``None`` for
    any other loss type."""
    if loss.get("type", "ce") != "svsl":
        return None
    # only SVSL runs execute (and rerun for) mfoml.nets.losses
    from mfoml.nets.losses import SVSLLoss

    try:
        extra = SVSLLoss.from_model(
            model,
            float(loss["lam"]),
            gamma=int(loss["gamma"]),
            n_classes=n_classes,
            batched=bool(loss["batched"]),
        )
    except ValueError as exc:
        raise ValueError(f"run {run_id}: {exc}") from exc
    log.info("SVSL on layers %s, lambda %g, batched %s", extra.layers, loss["lam"], loss["batched"])
    return extra


class RowTracker(Protocol):
    """What :func:`train_run` needs of a :class:`mfoml.tracking.Tracker`."""

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> Any: ...

    def log_metrics(self, row: Mapping[str, Any], step: int | None = None) -> None: ...


def train_run(
    model: ProbedModel,
    inputs: RunInputs,
    split: RunSplit,
    cfg: Mapping[str, Any],
    work: str | os.PathLike[str],
    *,
    tracker: RowTracker,
    monitor: Callable[[ProbedModel, dict[str, Any]], Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Train the run's network into ``work`` (resuming what a run of the same request left).

    Parameters
    ----------
    model : the run's network (:func:`run_model`).
    inputs, split : the training rows and evaluation splits, the labels trained on.
    cfg : the run's parameter slice (``train``, ``loss``, ``seed``, ``device``, ``run``).
    work : the partial output directory (:func:`mfoml.nets.trainjob.resume_dir`).
    tracker : open around the training; every epoch's row (with ``monitor``'s columns) is
        logged to it at step ``epoch``.
    monitor : adds columns to every epoch's row (e.g. :class:`mfoml.dynamics.edge.SharpnessTracker`).

    Returns
    -------
    The ``metrics.csv`` table (one row per epoch; with ``train.epochs: 0`` the row of epoch 0,
    :func:`zero_epoch_metrics`).
    """
    t = cfg["train"]
    extra_loss = svsl_loss(model, cfg["loss"], inputs.n_classes, cfg["run"])
    tc = train_config(cfg, batch_size=run_batch_size(cfg, len(split.train_idx)))

    def on_epoch(net: ProbedModel, row: dict[str, Any]) -> dict[str, Any]:
        extra = dict(monitor(net, row)) if monitor is not None else {}
        tracker.log_metrics({**row, **extra}, step=int(row["epoch"]))
        return extra

    with tracker:
        metrics = train(
            model,
            inputs.x_train,
            split.y_train,
            tc,
            work,
            evals=inputs.evals,
            extra_loss=extra_loss,
            epoch_callback=on_epoch,
            resume=True,
            eval_train=True,  # train_eval_acc: the interpolation threshold (METHODS section 11)
            keep_best=t.get("keep_best"),  # also the best held-out epoch's checkpoint
        )
    if tc.epochs == 0:
        metrics = zero_epoch_metrics(model, (inputs.x_train, split.y_train), inputs.evals, tc)
        atomic_write_csv(Path(work) / "metrics.csv", metrics)
    return metrics


def zero_epoch_metrics(
    model: ProbedModel, train_split: tuple[Any, Any], evals: Evals, tc: TrainConfig
) -> pd.DataFrame:
    """``metrics.csv`` of a run of 0 epochs: the given weights evaluated as the row of epoch 0.

    ``train_split`` is ``(x, y)`` of the training rows; ``evals`` the other splits (``None``:
    NaN). No optimizer step: gradient norms NaN, 0 s of training, ``lr`` the configured one.
    """
    t0 = time.perf_counter()
    row: dict[str, Any] = {"epoch": 0}
    for name, data in {"train": train_split, **evals}.items():
        if data is None:
            row[f"{name}_loss"], row[f"{name}_acc"] = math.nan, math.nan
            continue
        row[f"{name}_loss"], row[f"{name}_acc"] = evaluate(
            model, data[0], data[1], batch_size=tc.eval_batch_size, device=tc.device
        )
    row["train_eval_loss"], row["train_eval_acc"] = row["train_loss"], row["train_acc"]
    row |= {"train_seconds": 0.0, "grad_norm_mean": math.nan, "grad_norm_max": math.nan}
    row |= {"n_parameters": int(sum(p.numel() for p in model.parameters())), "lr": tc.lr}
    row["seconds"] = time.perf_counter() - t0
    extra = ["train_eval_loss", "train_eval_acc", "train_seconds"]
    log.info("0 epochs: the given weights evaluated as epoch 0: %s", row)
    return pd.DataFrame([row])[[*METRIC_COLUMNS[:-2], *extra, *METRIC_COLUMNS[-2:]]]


def text_throughput(
    meta: Mapping[str, Any], x_train: np.ndarray, metrics: pd.DataFrame
) -> dict[str, Any]:
    """A text run's training throughput in real (non-padding) tokens; ``{}`` for other runs.

    Returns
    -------
    ``{"train_tokens", "train_seconds", "train_tokens_per_second"}``: the non-padding tokens of
    ``x_train`` ``(n, T)`` times the epochs trained, the training seconds (``metrics``'
    ``train_seconds``, evaluation excluded) and their ratio (``None`` for 0 s).
    """
    if meta.get("kind") != "text":
        return {}
    pad = int(meta["tokenizer"]["special_ids"]["pad"])
    tokens = int((x_train != pad).sum()) * len(metrics)
    seconds = float(metrics["train_seconds"].sum()) if len(metrics) else 0.0
    speed: dict[str, Any] = {"train_tokens": tokens, "train_seconds": seconds}
    speed["train_tokens_per_second"] = tokens / seconds if seconds > 0 else None
    log.info(
        "training throughput: %s tokens in %.1f s (%s tokens/s)",
        tokens,
        seconds,
        None if not seconds else round(tokens / seconds),
    )
    return speed


def run_info(
    cfg: Mapping[str, Any],
    meta: Mapping[str, Any],
    model: ProbedModel,
    inputs: RunInputs,
    split: RunSplit,
    frozen: Sequence[str],
    metrics: pd.DataFrame,
) -> dict[str, Any]:
    """``run.json`` of a supervised run: its parameter slice, then ``n_classes, input_shape,
    probe_layers, penultimate_layer, frozen_stages, n_relabelled``, a text run's throughput
    (:func:`text_throughput`), ``n_parameters, n_train``."""
    return {
        **cfg,
        "n_classes": inputs.n_classes,
        "input_shape": inputs.input_shape,
        "probe_layers": list(model.probe_layers),
        "penultimate_layer": model.penultimate_layer,
        "frozen_stages": list(frozen),
        "n_relabelled": int(split.relabelled.sum()),
        **text_throughput(meta, inputs.x_train, metrics),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "n_train": int(len(split.train_idx)),
    }
