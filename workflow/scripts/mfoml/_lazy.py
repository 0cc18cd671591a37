"""Lazy re-exports for the subpackages' ``__init__`` modules.

A subpackage's ``__init__`` must not import torch, scikit-learn, pandas or matplotlib (job
start-up time, and the Snakefile imports the configuration layer), yet
``from mfoml.wavelets import WaveletForestClassifier`` should keep working. :func:`lazy_exports`
returns a module ``__getattr__`` (PEP 562) that imports the defining submodule on first access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, tuple[str, ...]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package`` re-exporting names of its submodules.

    Parameters
    ----------
    package : the package's ``__name__``.
    exports : ``{submodule: (name, ...)}``; each name is loaded from ``package.submodule``.
    """
    where = {name: sub for sub, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        sub = where.get(name)
        if sub is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{sub}"), name)

    def __dir__() -> list[str]:
        return sorted(where)

    return sorted(where), __getattr__, __dir__
