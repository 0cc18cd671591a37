"""Reading configuration files strictly: a key defined twice in one mapping is an error.

PyYAML (and therefore Snakemake's ``--configfile``) silently keeps the last of two equal keys, so
a model or any setting defined twice in a YAML file would be half ignored. :func:`check_yaml_file`
re-reads a file's node tree and names every duplicate with its key path and both line numbers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from mfoml.config.errors import ConfigError

__all__ = ["check_yaml_file", "duplicate_keys", "load_yaml_file"]


def duplicate_keys(text: str) -> list[str]:
    """Descriptions (``"line 12: key 'models.mlp' defined again (first at line 3)"``) of every
    key defined twice in one mapping of the YAML document ``text``; empty when there is none.

    Raises ``yaml.YAMLError`` when ``text`` is not valid YAML.
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    out: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                line = key_node.start_mark.line + 1
                sub = f"{path}.{key}" if path else str(key)
                if key is not None and key in first:
                    out.append(
                        f"line {line}: key '{sub}' defined again (first at line {first[key]}); "
                        "the later value would silently replace the earlier one"
                    )
                elif key is not None:
                    first[key] = line
                walk(value_node, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}[{i}]")

    walk(root, "")
    return out


def check_yaml_file(path: str | os.PathLike[str]) -> None:
    """:class:`ConfigError` naming the file and every duplicated key of the YAML file ``path``.

    A file that is not valid YAML is reported with the parser's message and line.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    try:
        dups = duplicate_keys(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: malformed YAML ({exc})") from exc
    if dups:
        raise ConfigError(f"{p}: duplicate keys:\n  " + "\n  ".join(dups))


def load_yaml_file(path: str | os.PathLike[str]) -> Any:
    """The content of the YAML file ``path`` after :func:`check_yaml_file`."""
    check_yaml_file(path)
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)
