"""The run table: every sweep expanded into :class:`Run` rows with readable ids.

The run table expands every sweep (datasets x models x activations x losses x noise x seeds x
folds) into :class:`Run` rows with readable ids such as
``mnist1d/mlp-d4-w100/relu/ce/noise0/fold0`` (``fold0-seed1`` for seed 1). A sweep with
``folds: full`` trains one run per setting on the whole training split and evaluates it on the
official test split: its id ends in ``full`` (``full-seed1``) and its ``fold`` is ``"full"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mfoml.config.errors import ConfigError
from mfoml.config.ssl import is_ssl_loss

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]*"
#: Regular expression of a run id (used as the Snakemake wildcard constraint of ``{run}``).
RUN_ID_PATTERN = (
    rf"{_NAME}/{_NAME}/(?:relu|gelu|prelu|sigmoid|tanh|heaviside)/{_NAME}"
    r"/noise[0-9]+(?:\.[0-9]+)?/(?:fold[0-9]+|full)(?:-seed[0-9]+)?"
)
#: The ``fold`` of a run trained on the whole training split (sweep ``folds: full``).
FULL = "full"


# --------------------------------------------------------------------------------------------
# run table


@dataclass(frozen=True)
class Run:
    """One training run of the run table.

    Attributes
    ----------
    run_id : readable id, ``{dataset}/{model}/{activation}/{loss}/noise{pct}/fold{k}[-seed{s}]``
        (``.../full[-seed{s}]`` for a run on the whole training split).
    sweep : name of the sweep it comes from (the "experiment" of the tables).
    dataset, model, activation, loss : names (dataset id, model name, nonlinearity, loss name).
    noise : label-noise fraction in [0, 1].
    seed, fold : training seed and held-out fold index (``"full"``: no held-out fold, trained on
        the whole training split, evaluated on the official test split).
    model_spec, loss_spec, train : the resolved model/loss/training settings.
    transfer : transfer-learning settings or ``None``.
    analysis_dataset : data set the activations are dumped on.
    pretrained : the MLM pretraining stage the text encoder starts from
        (``{stage, epoch, freeze}``) or ``None``.
    """

    run_id: str
    sweep: str
    dataset: str
    model: str
    activation: str
    loss: str
    noise: float
    seed: int
    fold: int | str
    model_spec: dict = field(hash=False, compare=False)
    loss_spec: dict = field(hash=False, compare=False)
    train: dict = field(hash=False, compare=False)
    transfer: dict | None = field(hash=False, compare=False)
    analysis_dataset: str = ""
    pretrained: dict | None = field(default=None, hash=False, compare=False)

    @property
    def is_ssl(self) -> bool:
        """Whether the run trains a self-supervised objective (no labels, rule ``train_ssl``)."""
        return is_ssl_loss(self.loss_spec)

    def metadata(self) -> dict[str, Any]:
        """Columns describing the run in the tables."""
        return {
            "run": self.run_id,
            "experiment": self.sweep,
            "dataset": self.dataset,
            "model": self.model,
            "activation": self.activation,
            "loss": self.loss,
            "noise": self.noise,
            "seed": self.seed,
            "fold": self.fold,
        }

    @property
    def full_train(self) -> bool:
        """Trained on the whole training split (no held-out fold)."""
        return self.fold == FULL


def format_noise(fraction: float) -> str:
    """``0.1 -> 'noise10'``, ``0 -> 'noise0'``, ``0.125 -> 'noise12.5'`` (percent)."""
    pct = float(fraction) * 100.0
    if math.isclose(pct, round(pct), abs_tol=1e-9):
        return f"noise{round(pct)}"
    return f"noise{pct:g}"


def format_run_id(
    dataset: str, model: str, activation: str, loss: str, noise: float, fold: int | str, seed: int
) -> str:
    """The readable run id (see :class:`Run`); ``fold="full"`` for a whole-training-split run."""
    tail = (FULL if fold == FULL else f"fold{int(fold)}") + (f"-seed{seed}" if seed else "")
    return f"{dataset}/{model}/{activation}/{loss}/{format_noise(noise)}/{tail}"


def parse_run_id(run_id: str) -> dict[str, Any]:
    """Inverse of :func:`format_run_id` (noise as a fraction; ``fold`` an int or ``"full"``)."""
    if not re.fullmatch(RUN_ID_PATTERN, run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    dataset, model, activation, loss, noise, tail = run_id.split("/")
    m = re.fullmatch(r"(?:fold([0-9]+)|full)(?:-seed([0-9]+))?", tail)
    assert m is not None
    return {
        "dataset": dataset,
        "model": model,
        "activation": activation,
        "loss": loss,
        "noise": float(noise[len("noise") :]) / 100.0,
        "fold": FULL if m.group(1) is None else int(m.group(1)),
        "seed": int(m.group(2) or 0),
    }


def _resolved_train(config: dict, sweep: dict) -> dict[str, Any]:
    train = dict(config["train"])
    train.update(sweep.get("train") or {})
    epochs = int(train["epochs"])
    train["checkpoints"] = sorted({int(e) for e in train["checkpoints"]} | {epochs})
    train["milestones"] = [int(m) for m in train.get("milestones", [])]
    return train


def _sweep_folds(config: dict, sweep: dict) -> list[int | str]:
    folds = sweep.get("folds", "all")
    if folds == FULL:
        return [FULL]
    if folds == "all":
        return list(range(int(config["folds"]["n_splits"])))
    return sorted(int(k) for k in folds)


def _iter_runs(config: dict) -> Iterator[Run]:
    for sweep in config.get("sweeps", []):
        train = _resolved_train(config, sweep)
        for dataset in sweep["datasets"]:
            for model in sweep["models"]:
                for activation in sweep.get("activations", ["relu"]):
                    for loss in sweep.get("losses", ["ce"]):
                        for noise in sweep.get("noise", [0.0]):
                            for seed in sweep.get("seeds", [0]):
                                for fold in _sweep_folds(config, sweep):
                                    yield Run(
                                        run_id=format_run_id(
                                            dataset, model, activation, loss, noise, fold, seed
                                        ),
                                        sweep=sweep["name"],
                                        dataset=dataset,
                                        model=model,
                                        activation=activation,
                                        loss=loss,
                                        noise=float(noise),
                                        seed=int(seed),
                                        fold=fold,
                                        model_spec=dict(config["models"].get(model, {})),
                                        loss_spec=dict(config["losses"].get(loss, {})),
                                        train=train,
                                        transfer=(
                                            dict(sweep["transfer"])
                                            if sweep.get("transfer")
                                            else None
                                        ),
                                        analysis_dataset=sweep.get("analysis_dataset") or dataset,
                                        pretrained=(
                                            dict(sweep["pretrained"])
                                            if sweep.get("pretrained")
                                            else None
                                        ),
                                    )


def run_table(config: dict[str, Any]) -> list[Run]:
    """Expand the sweeps of a validated config into runs (in sweep order, ids unique).

    Raises
    ------
    ConfigError
        When two sweeps produce the same run id.
    """
    runs: dict[str, Run] = {}
    for run in _iter_runs(config):
        if run.run_id in runs:
            other = runs[run.run_id].sweep
            raise ConfigError(
                f"config key 'sweeps': run {run.run_id!r} is produced by sweep {other!r} "
                f"and by sweep {run.sweep!r}; give the models or losses distinct names"
            )
        runs[run.run_id] = run
    return list(runs.values())


def runs_by_id(config: dict[str, Any]) -> dict[str, Run]:
    """The run table as a dict keyed by run id."""
    return {r.run_id: r for r in run_table(config)}


def datasets_used(config: dict[str, Any]) -> list[str]:
    """Data set ids the runs train or are analysed on (sorted)."""
    out = set()
    for run in run_table(config):
        out.add(run.dataset)
        out.add(run.analysis_dataset)
    return sorted(out)


def dataset_options(config: dict[str, Any], dataset: str) -> dict[str, Any]:
    """What a data set id's content depends on: ``source, grayscale, per_class_cap, seed``.

    These are the ``params`` of the data rule; where the raw files come from
    (``data.download_dir``, ``data.mirror``) does not change the content (checksums are
    verified), so it is read from the config by the rule's script and never triggers a rerun.
    """
    variant = config["data"]["variants"].get(dataset)
    opts: dict[str, Any] = {
        "source": dataset,
        "grayscale": False,
        "per_class_cap": None,
        "seed": 0,
    }
    if variant is not None:
        opts.update(variant)
    return opts
