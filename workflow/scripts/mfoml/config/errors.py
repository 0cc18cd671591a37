"""The error type of the configuration layer."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A configuration that does not satisfy the schema or refers to undefined names."""
