"""OpenML tabular data sets (``openml-<name-or-id>[@version]``): client, ARFF parser, cleaning.

- :mod:`mfoml.data.openml.client`: :class:`OpenMLClient`, a small REST client with a validated
  on-disk cache, and :class:`OpenMLDownloadError`.
- :mod:`mfoml.data.openml.arff`: :func:`parse_arff`.
- :mod:`mfoml.data.openml.prepare`: :func:`prepare_openml`, writing the normalized format.

:mod:`mfoml.data.openml.prepare` registers the ``openml-`` family in the store's source registry
(imported by :mod:`mfoml.data.catalog`). The names below are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DEFAULT_SERVER",
    "ArffData",
    "OpenMLClient",
    "OpenMLDownloadError",
    "parse_arff",
    "parse_openml_name",
    "prepare_openml",
]

_LAZY = {
    "DEFAULT_SERVER": "client",
    "OpenMLClient": "client",
    "OpenMLDownloadError": "client",
    "ArffData": "arff",
    "parse_arff": "arff",
    "parse_openml_name": "prepare",
    "prepare_openml": "prepare",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
