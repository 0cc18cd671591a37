"""Validation of the pipeline configuration against its JSON schema, with defaults filled.

The Snakefile calls :func:`validate_config` on Snakemake's ``config`` dict before any rule is
defined, so a bad configuration stops the workflow with a message naming the key before any job
starts. The schema (``config/config.schema.yaml``, JSON Schema draft 2020-12) declares every key,
its type, its allowed range and its default; every object rejects unknown keys. Defaults are
filled in place while validating; cross references are checked by
:mod:`mfoml.config.references`.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from mfoml.config.errors import ConfigError
from mfoml.config.files import load_yaml_file
from mfoml.config.references import check_references

#: The main schema, next to the embedded default configuration.
SCHEMA_PATH = Path(__file__).resolve().parents[4] / "config" / "config.schema.yaml"


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
            close = difflib.get_close_matches(str(k), allowed, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            hint += f" (allowed: {', '.join(allowed)})" if allowed else ""
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
        check_references(config)
    return config


def load_config(path: str | Path, schema_path: str | Path | None = None) -> dict[str, Any]:
    """Read a YAML configuration file (duplicate keys are an error) and validate it."""
    path = Path(path)
    config = load_yaml_file(path) or {}
    try:
        return validate_config(config, schema_path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
