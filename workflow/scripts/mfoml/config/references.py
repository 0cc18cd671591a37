"""Cross references of a schema-valid configuration (checked before any job).

Sweeps have distinct names and name defined models and losses, checkpoint epochs lie within the
epochs, fold indices lie below ``folds.n_splits``, transfer sources are runs of this
configuration, probe/NCC splits are dumped, self-supervised losses are used consistently
(:mod:`mfoml.config.ssl`); data-set ids, layer names, fold counts and sample minimums are checked
against the data sets and models (:mod:`mfoml.config.datasets`). Every problem is reported with
the key it concerns. :func:`check_work` says when nothing is configured at all.
"""

from __future__ import annotations

from typing import Any

from mfoml.config.datasets import dataset_errors, layer_errors, sample_errors
from mfoml.config.dynamics import check_dynamics
from mfoml.config.errors import ConfigError
from mfoml.config.ownmodels import own_model_errors
from mfoml.config.runs import parse_run_id, run_table
from mfoml.config.ssl import ssl_problems
from mfoml.config.text import check_text
from mfoml.data.catalog import find_source, known_datasets
from mfoml.nets.layernames import DEFAULT_DEPTH_WIDTH

__all__ = ["check_references", "check_work"]


def check_references(config: dict[str, Any]) -> None:
    """:class:`ConfigError` listing every cross-reference problem of a schema-valid ``config``."""
    errors: list[str] = []
    n_splits = int(config["folds"]["n_splits"])
    train = config["train"]

    def check_train(prefix: str, settings: dict) -> None:
        epochs = int(settings["epochs"])
        bad = [e for e in settings["checkpoints"] if int(e) > epochs]
        if bad:
            errors.append(
                f"config key '{prefix}.checkpoints': epochs {bad} exceed {prefix}.epochs = {epochs}"
            )
        if settings.get("schedule") == "multistep" and not settings.get("milestones"):
            errors.append(f"config key '{prefix}.milestones': needed by schedule 'multistep'")

    check_train("train", train)
    first_with_name: dict[str, int] = {}
    for i, sweep in enumerate(config.get("sweeps", [])):
        key = f"sweeps[{i}]"
        if sweep["name"] in first_with_name:
            errors.append(
                f"config key '{key}.name': sweep name {sweep['name']!r} is already used by "
                f"sweeps[{first_with_name[sweep['name']]}]; the tables would merge the two "
                "sweeps' runs into one experiment (give each sweep its own name)"
            )
        first_with_name.setdefault(sweep["name"], i)
        merged = dict(train)
        merged.update(sweep.get("train") or {})
        if sweep.get("train"):
            check_train(f"{key}.train", merged)
        for m in sweep["models"]:
            if m not in config["models"]:
                errors.append(
                    f"config key '{key}.models': model {m!r} is not defined under 'models' "
                    f"(defined: {', '.join(sorted(config['models'])) or 'none'})"
                )
        for loss in sweep.get("losses", []):
            if loss not in config["losses"]:
                errors.append(
                    f"config key '{key}.losses': loss {loss!r} is not defined under 'losses' "
                    f"(defined: {', '.join(sorted(config['losses'])) or 'none'})"
                )
        folds = sweep.get("folds", "all")
        if folds == "full":
            for what, bad in (
                ("ncc.test_split", config["ncc"]["test_split"] == "heldout"),
                ("probe.splits", "heldout" in config["probe"]["splits"]),
                ("aggregate.target", config["aggregate"]["target"] == "heldout_acc"),
            ):
                if bad:
                    errors.append(
                        f"config key '{key}.folds': runs on the full training split have no "
                        f"held-out fold, but {what} asks for it"
                    )
        elif folds != "all":
            bad = [k for k in folds if int(k) >= n_splits]
            if bad:
                errors.append(
                    f"config key '{key}.folds': fold indices {bad} are not below "
                    f"folds.n_splits = {n_splits}"
                )
        if len({str(x) for x in sweep.get("noise", [])}) != len(sweep.get("noise", [])):
            errors.append(f"config key '{key}.noise': duplicate noise levels")
    for name, spec in config["models"].items():
        if spec["arch"] == "resnet18" and ("depth" in spec or "width" in spec):
            errors.append(f"config key 'models.{name}': depth/width do not apply to resnet18")
        if spec["arch"] != "resnet18" and ("residual" in spec or "stem" in spec):
            errors.append(f"config key 'models.{name}': residual/stem apply to resnet18 only")
        if spec["arch"] in ("mlp", "resnet18") and ("stride" in spec or "kernel_size" in spec):
            errors.append(
                f"config key 'models.{name}': stride/kernel_size apply to conv and conv1d only"
            )
        if spec["arch"] == "resnet18" and ("batch_norm" in spec or "probe_point" in spec):
            errors.append(
                f"config key 'models.{name}': batch_norm/probe_point apply to mlp, conv and "
                "conv1d only"
            )
        stride = spec.get("stride")
        if isinstance(stride, list) and spec["arch"] in ("conv", "conv1d"):
            depth = spec.get("depth", DEFAULT_DEPTH_WIDTH[spec["arch"]][0])
            if len(stride) != depth:
                errors.append(
                    f"config key 'models.{name}.stride': {len(stride)} strides for depth {depth} "
                    "(one per block)"
                )
    probe = config["probe"]
    if not probe["tau_min"] < probe["tau_max"]:
        errors.append(
            f"config key 'probe.tau_min': {probe['tau_min']} must be below probe.tau_max = "
            f"{probe['tau_max']} (the tau grid is tau_min, tau_min + tau_step, ... < tau_max)"
        )
    elif probe["tau_step"] >= probe["tau_max"] - probe["tau_min"]:
        errors.append(
            f"config key 'probe.tau_step': {probe['tau_step']} leaves a single tau in "
            f"[{probe['tau_min']}, {probe['tau_max']}); the angle estimators need a grid"
        )
    if not probe["eps_min"] < probe["eps_max"]:
        errors.append(
            f"config key 'probe.eps_min': {probe['eps_min']} must be below probe.eps_max = "
            f"{probe['eps_max']} (degrees)"
        )
    errors.extend(check_text(config))
    splits = set(config["activations"]["splits"])
    for s in config["probe"]["splits"]:
        if s not in splits:
            errors.append(
                f"config key 'probe.splits': split {s!r} is not dumped "
                f"(activations.splits = {sorted(splits)})"
            )
    if "train" not in splits:
        errors.append("config key 'activations.splits': must include 'train' (NCC class means)")
    if "train" not in config["probe"]["splits"]:
        errors.append(
            "config key 'probe.splits': must include 'train' (the correlation table and figures "
            "use alpha of the train split; without it every alpha feature would be empty)"
        )
    errors.extend(ssl_problems(config))
    if config["ncc"]["test_split"] not in splits:
        errors.append(
            f"config key 'ncc.test_split': split {config['ncc']['test_split']!r} is not dumped "
            f"(activations.splits = {sorted(splits)})"
        )
    errors += own_model_errors(config)
    errors += dataset_errors(config) + layer_errors(config) + sample_errors(config)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    # run-level checks need the expanded table
    table = run_table(config)
    errors.extend(check_dynamics(config, table))
    ids = {r.run_id for r in table}
    for i, sweep in enumerate(config.get("sweeps", [])):
        tr = sweep.get("transfer")
        if tr:
            src = tr["source_run"]
            if src not in ids:
                errors.append(_missing_source(config, i, src))
            elif any(r.run_id == src and r.sweep == sweep["name"] for r in table):
                errors.append(
                    f"config key 'sweeps[{i}].transfer.source_run': the source run must come "
                    "from another sweep"
                )
            else:
                src_run = next(r for r in table if r.run_id == src)
                ep = tr.get("source_epoch")
                if ep is not None and ep not in src_run.train["checkpoints"]:
                    errors.append(
                        f"config key 'sweeps[{i}].transfer.source_epoch': {ep} is not a "
                        f"checkpoint of {src!r} ({src_run.train['checkpoints']})"
                    )
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))


def _missing_source(config: dict[str, Any], i: int, src: str) -> str:
    """Why transfer source ``src`` of ``sweeps[i]`` is not a run: its data set, or the run."""
    key = f"config key 'sweeps[{i}].transfer.source_run'"
    try:
        dataset = str(parse_run_id(src)["dataset"])
    except (ValueError, KeyError):
        return f"{key}: {src!r} is not a run id ({{dataset}}/{{model}}/...); see docs/pipeline.md"
    if dataset not in config["data"]["variants"] and find_source(dataset) is None:
        return (
            f"{key}: the data set {dataset!r} of the source run {src!r} is not a known data set "
            f"(known: {', '.join(known_datasets())}, or a data.variants key)"
        )
    used = sorted({d for s in config.get("sweeps", []) for d in s["datasets"]})
    if dataset not in used:
        return (
            f"{key}: no sweep trains on data set {dataset!r} of the source run {src!r} "
            f"(the sweeps train on {', '.join(used) or 'nothing'})"
        )
    return f"{key}: {src!r} is not a run of this configuration"


def check_work(config: dict[str, Any]) -> None:
    """:class:`ConfigError` when a validated ``config`` asks for no job at all."""
    if not config.get("sweeps") and not (config.get("tabular") or {}).get("enabled"):
        raise ConfigError(
            "nothing is configured: config key 'sweeps' is empty and 'tabular.enabled' is "
            "false, so there is no job to run; add a sweep (see config/README.md) or enable "
            "the tabular track"
        )
