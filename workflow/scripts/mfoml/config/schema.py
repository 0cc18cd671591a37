"""Pipeline configuration: validation with defaults, the run table and per-rule parameter slices.

The Snakefile calls :func:`validate_config` on Snakemake's ``config`` dict before any rule is
defined, so a bad configuration stops the workflow with a message naming the key before any job
starts. The schema (``config/config.schema.yaml``, JSON Schema draft 2020-12) declares every key,
its type, its allowed range and its default; every object rejects unknown keys. Defaults are
filled in place while validating.

The run table expands every sweep (datasets x models x activations x losses x noise x seeds x
folds) into :class:`Run` rows with readable ids such as
``mnist1d/mlp-d4-w100/relu/ce/noise0/fold0`` (``fold0-seed1`` for seed 1).

Each rule receives as ``params`` only its own slice of the configuration, as a canonical JSON
string (:func:`canonical_json`: sorted keys, no whitespace variation), so that Snakemake's
params trigger reruns exactly the jobs whose settings changed.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "Run",
    "RUN_ID_PATTERN",
    "SCHEMA_PATH",
    "canonical_json",
    "dataset_options",
    "datasets_used",
    "format_noise",
    "format_run_id",
    "load_config",
    "load_schema",
    "parse_run_id",
    "rule_params",
    "run_table",
    "runs_by_id",
    "validate_config",
]

#: The main schema, next to the embedded default configuration.
SCHEMA_PATH = Path(__file__).resolve().parents[3] / "config" / "config.schema.yaml"

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]*"
#: Regular expression of a run id (used as the Snakemake wildcard constraint of ``{run}``).
RUN_ID_PATTERN = (
    rf"{_NAME}/{_NAME}/(?:relu|gelu|prelu|sigmoid|tanh|heaviside)/{_NAME}"
    r"/noise[0-9]+(?:\.[0-9]+)?/fold[0-9]+(?:-seed[0-9]+)?"
)


class ConfigError(ValueError):
    """A configuration that does not satisfy the schema or refers to undefined names."""


# --------------------------------------------------------------------------------------------
# schema validation with defaults


def _yaml_load(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"schema file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML ({exc})") from exc


def load_schema(schema_path: str | Path | None = None) -> tuple[dict, Any]:
    """Load the main schema and a ``referencing.Registry`` resolving its relative ``$ref`` s.

    Relative references (e.g. ``schema/tabular.schema.yaml``) are resolved against the main
    schema's directory and read as YAML.

    Returns
    -------
    (schema, registry) : the schema dict (with ``$id`` set to its file URI) and the registry.
    """
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    path = Path(schema_path or SCHEMA_PATH).resolve()
    schema = _yaml_load(path)
    schema["$id"] = path.as_uri()

    def retrieve(uri: str) -> Resource:
        if not uri.startswith("file://"):
            raise ConfigError(f"schema reference {uri!r}: only local files are allowed")
        target = Path(uri[len("file://") :])
        contents = _yaml_load(target)
        if not isinstance(contents, dict):
            raise ConfigError(f"schema file {target} does not hold a mapping")
        # Drop "$schema" so that the referenced part is validated by the same (default-filling)
        # validator class instead of a fresh validator of the declared dialect.
        contents.pop("$schema", None)
        return Resource.from_contents(contents, default_specification=DRAFT202012)

    registry = Registry(retrieve=retrieve).with_resource(
        path.as_uri(), Resource.from_contents(schema, default_specification=DRAFT202012)
    )
    return schema, registry


def _defaults_validator() -> Any:
    """Draft 2020-12 validator class that fills ``default`` values of missing properties."""
    from jsonschema import Draft202012Validator, validators

    base_properties = Draft202012Validator.VALIDATORS["properties"]

    def properties(validator: Any, props: Mapping, instance: Any, schema: Mapping) -> Iterator:
        if isinstance(instance, dict):
            for name, sub in props.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base_properties(validator, props, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": properties})


def _key_path(parts: Any) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "<root>"


def _leaf_errors(error: Any) -> list[Any]:
    """The most specific errors under a ``oneOf``/``anyOf`` failure.

    Branches rejected only for their type or constant are dropped; when exactly one branch
    accepted the instance's type, its errors are reported (e.g. "0 is less than the minimum of
    1" rather than "0 is not valid under any of the given schemas").
    """
    if error.validator in ("oneOf", "anyOf") and error.context:
        by_branch: dict[int, list[Any]] = {}
        for e in error.context:
            by_branch.setdefault(e.schema_path[0] if e.schema_path else -1, []).append(e)
        informative = [
            errs
            for errs in by_branch.values()
            if not all(e.validator in ("type", "const", "enum") and not e.path for e in errs)
        ]
        if len(informative) == 1:
            out: list[Any] = []
            for e in informative[0]:
                out.extend(_leaf_errors(e))
            return out
    return [error]


def _format_error(error: Any) -> str:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        extras = [k for k in error.instance if k not in error.schema.get("properties", {})]
        msgs = []
        for k in extras:
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            msgs.append(f"config key '{_key_path([*path, k])}': unknown key{hint}")
        return "\n".join(msgs)
    if error.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        name = missing[0] if missing else error.message
        return f"config key '{_key_path([*path, name])}': required key is missing"
    if error.validator in ("oneOf", "anyOf"):
        allowed = []
        for sub in error.schema.get(error.validator, []):
            if "const" in sub:
                allowed.append(repr(sub["const"]))
            elif "type" in sub:
                allowed.append(str(sub["type"]))
            elif "$ref" in sub:
                allowed.append(sub["$ref"].rsplit("/", 1)[-1])
        return (
            f"config key '{_key_path(path)}': {error.instance!r} is not valid "
            f"(expected one of: {', '.join(allowed)})"
        )
    return f"config key '{_key_path(path)}': {error.message}"


def validate_config(
    config: dict[str, Any], schema_path: str | Path | None = None, *, check_refs: bool = True
) -> dict[str, Any]:
    """Validate ``config`` against the schema, filling defaults in place.

    Parameters
    ----------
    config : the configuration dict (modified in place: missing keys get their defaults).
    schema_path : the main schema (default: ``config/config.schema.yaml`` of this repository).
    check_refs : also check cross references (sweeps name defined models/losses, checkpoint
        epochs within the epochs, fold indices below ``folds.n_splits``, transfer sources in
        the run table, probe/NCC splits dumped).

    Returns
    -------
    The same dict, completed with defaults.

    Raises
    ------
    ConfigError
        Listing every problem, each naming its key path, e.g.
        ``config key 'probe.max_depth': -1 is less than the minimum of 1``.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"the configuration must be a mapping, got {type(config).__name__}")
    schema, registry = load_schema(schema_path)
    cls = _defaults_validator()
    validator = cls(schema, registry=registry)
    errors = []
    for err in validator.iter_errors(config):
        errors.extend(_leaf_errors(err))
    if errors:
        msgs = sorted({_format_error(e) for e in errors})
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(msgs))
    if check_refs:
        _check_references(config)
    return config


def load_config(path: str | Path, schema_path: str | Path | None = None) -> dict[str, Any]:
    """Read a YAML configuration file and validate it (defaults filled)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            config = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML ({exc})") from exc
    try:
        return validate_config(config, schema_path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------------------------
# run table


@dataclass(frozen=True)
class Run:
    """One training run of the run table.

    Attributes
    ----------
    run_id : readable id, ``{dataset}/{model}/{activation}/{loss}/noise{pct}/fold{k}[-seed{s}]``.
    sweep : name of the sweep it comes from (the "experiment" of the tables).
    dataset, model, activation, loss : names (dataset id, model name, nonlinearity, loss name).
    noise : label-noise fraction in [0, 1].
    seed, fold : training seed and held-out fold index.
    model_spec, loss_spec, train : the resolved model/loss/training settings.
    transfer : transfer-learning settings or ``None``.
    analysis_dataset : data set the activations are dumped on.
    """

    run_id: str
    sweep: str
    dataset: str
    model: str
    activation: str
    loss: str
    noise: float
    seed: int
    fold: int
    model_spec: dict = field(hash=False, compare=False)
    loss_spec: dict = field(hash=False, compare=False)
    train: dict = field(hash=False, compare=False)
    transfer: dict | None = field(hash=False, compare=False)
    analysis_dataset: str = ""

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


def format_noise(fraction: float) -> str:
    """``0.1 -> 'noise10'``, ``0 -> 'noise0'``, ``0.125 -> 'noise12.5'`` (percent)."""
    pct = float(fraction) * 100.0
    if math.isclose(pct, round(pct), abs_tol=1e-9):
        return f"noise{round(pct)}"
    return f"noise{pct:g}"


def format_run_id(
    dataset: str, model: str, activation: str, loss: str, noise: float, fold: int, seed: int
) -> str:
    """The readable run id (see :class:`Run`)."""
    tail = f"fold{fold}" + (f"-seed{seed}" if seed else "")
    return f"{dataset}/{model}/{activation}/{loss}/{format_noise(noise)}/{tail}"


def parse_run_id(run_id: str) -> dict[str, Any]:
    """Inverse of :func:`format_run_id` (noise as a fraction)."""
    if not re.fullmatch(RUN_ID_PATTERN, run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    dataset, model, activation, loss, noise, tail = run_id.split("/")
    m = re.fullmatch(r"fold([0-9]+)(?:-seed([0-9]+))?", tail)
    assert m is not None
    return {
        "dataset": dataset,
        "model": model,
        "activation": activation,
        "loss": loss,
        "noise": float(noise[len("noise") :]) / 100.0,
        "fold": int(m.group(1)),
        "seed": int(m.group(2) or 0),
    }


def _resolved_train(config: dict, sweep: dict) -> dict[str, Any]:
    train = dict(config["train"])
    train.update(sweep.get("train") or {})
    epochs = int(train["epochs"])
    train["checkpoints"] = sorted({int(e) for e in train["checkpoints"]} | {epochs})
    train["milestones"] = [int(m) for m in train.get("milestones", [])]
    return train


def _sweep_folds(config: dict, sweep: dict) -> list[int]:
    folds = sweep.get("folds", "all")
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
                                        fold=int(fold),
                                        model_spec=dict(config["models"].get(model, {})),
                                        loss_spec=dict(config["losses"].get(loss, {})),
                                        train=train,
                                        transfer=(
                                            dict(sweep["transfer"])
                                            if sweep.get("transfer")
                                            else None
                                        ),
                                        analysis_dataset=sweep.get("analysis_dataset") or dataset,
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


def _check_references(config: dict[str, Any]) -> None:
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
    for i, sweep in enumerate(config.get("sweeps", [])):
        key = f"sweeps[{i}]"
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
        if folds != "all":
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
    if config["ncc"]["test_split"] not in splits:
        errors.append(
            f"config key 'ncc.test_split': split {config['ncc']['test_split']!r} is not dumped "
            f"(activations.splits = {sorted(splits)})"
        )
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    # run-level checks need the expanded table
    table = run_table(config)
    ids = {r.run_id for r in table}
    for i, sweep in enumerate(config.get("sweeps", [])):
        tr = sweep.get("transfer")
        if tr:
            src = tr["source_run"]
            if src not in ids:
                errors.append(
                    f"config key 'sweeps[{i}].transfer.source_run': {src!r} is not a run of "
                    "this configuration"
                )
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


# --------------------------------------------------------------------------------------------
# parameter slices


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text (sorted keys, compact separators) of ``obj``."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def rule_params(config: dict[str, Any], rule: str, run: Run | None = None) -> str:
    """The slice of config a rule depends on, as canonical JSON.

    Parameters
    ----------
    config : validated configuration.
    rule : ``data`` (needs ``run`` = None; use :func:`dataset_options`), ``folds``, ``train``,
        ``activations``, ``probe``, ``ncc``, ``aggregate``, ``figures``.
    run : the run (for ``train`` and ``activations``).
    """
    if rule == "folds":
        return canonical_json(config["folds"])
    if rule == "train":
        if run is None:
            raise ValueError("rule_params('train') needs a run")
        return canonical_json(
            {
                "run": run.run_id,
                "dataset": run.dataset,
                "model": run.model_spec,
                "activation": run.activation,
                "loss": run.loss_spec,
                "noise": run.noise,
                "seed": run.seed,
                "fold": run.fold,
                "train": run.train,
                "transfer": run.transfer,
                "device": config["device"],
            }
        )
    if rule == "activations":
        if run is None:
            raise ValueError("rule_params('activations') needs a run")
        return canonical_json(
            {
                **config["activations"],
                "analysis_dataset": run.analysis_dataset,
                "own_folds": run.analysis_dataset == run.dataset,
                "fold": run.fold,
                "device": config["device"],
            }
        )
    if rule in ("probe", "ncc", "figures"):
        return canonical_json(config[rule])
    if rule == "aggregate":
        return canonical_json(
            {
                **config["aggregate"],
                "name": config["name"],
                "runs": [r.metadata() for r in run_table(config)],
            }
        )
    raise ValueError(f"rule_params: unknown rule {rule!r}")
