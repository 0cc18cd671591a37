"""Pipeline configuration: validation with defaults, the run table, per-rule parameter slices.

Torch-free and light (PyYAML, jsonschema): imported by the Snakefile before any rule is defined.

- :mod:`mfoml.config.schema`: :func:`validate_config`, :func:`load_config` (JSON schema with
  defaults), then :mod:`mfoml.config.references` (cross references);
- :mod:`mfoml.config.runs`: :class:`Run`, :func:`run_table`, run ids;
- :mod:`mfoml.config.params`: :func:`canonical_json`, :func:`rule_params`;
- :mod:`mfoml.config.ssl`: the self-supervised loss types and their checks.
"""

from __future__ import annotations

from mfoml.config.errors import ConfigError
from mfoml.config.files import check_yaml_file
from mfoml.config.params import canonical_json, rule_params
from mfoml.config.references import check_work
from mfoml.config.runs import (
    RUN_ID_PATTERN,
    Run,
    dataset_options,
    datasets_used,
    format_noise,
    format_run_id,
    parse_run_id,
    run_table,
    runs_by_id,
)
from mfoml.config.schema import SCHEMA_PATH, load_config, load_schema, validate_config

__all__ = [
    "ConfigError",
    "RUN_ID_PATTERN",
    "Run",
    "SCHEMA_PATH",
    "canonical_json",
    "check_work",
    "check_yaml_file",
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
