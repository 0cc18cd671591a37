"""The catalog of data sources: every source registered, ids checked, data sets prepared.

Importing this module imports every data source module (:mod:`mfoml.data.sources`,
:mod:`mfoml.data.stl10`, :mod:`mfoml.data.openml.prepare`, the file sources
:mod:`mfoml.data.imagefolder`, :mod:`mfoml.data.filesources` and :mod:`mfoml.data.textfile`; numpy and the standard library only, their heavy dependencies are
imported when a data set is actually made), which register themselves in the store's registry
(:func:`mfoml.data.store.register_source`). The configuration layer checks data-set ids here at
parse time; the ``data`` rule calls :func:`prepare_dataset`. A new source (e.g. text data) is
added by registering it in its module and importing that module below.
"""

from __future__ import annotations

import os
from typing import Any

import mfoml.data.filesources  # noqa: F401  (registers table, arrays)
import mfoml.data.imagefolder  # noqa: F401  (registers imagefolder)
import mfoml.data.openml.prepare  # noqa: F401  (registers the openml- family)
import mfoml.data.sources  # noqa: F401  (registers the built-in sets)
import mfoml.data.stl10  # noqa: F401  (registers stl10)
import mfoml.data.textfile  # noqa: F401  (registers textfile)
import mfoml.data.textsets  # noqa: F401  (registers the text sets)
from mfoml.data.files import FILE_SOURCES
from mfoml.data.store import SourceInfo, registered_sources

__all__ = ["check_dataset_id", "find_source", "known_datasets", "prepare_dataset"]


def _ordered() -> list[SourceInfo]:
    """The registered sources, the file sources (which need a variant with a path) last."""
    infos = list(registered_sources().values())
    return [i for i in infos if i.name not in FILE_SOURCES] + [
        i for i in infos if i.name in FILE_SOURCES
    ]


def find_source(name: str) -> SourceInfo | None:
    """The source of data-set id ``name`` (exact ids first, then prefixes), or ``None``."""
    if not isinstance(name, str):
        return None
    info = registered_sources().get(name)
    if info is not None and not info.prefix:
        return info
    for info in registered_sources().values():
        if info.prefix and name.startswith(info.name) and len(name) > len(info.name):
            return info
    return None


def known_datasets() -> list[str]:
    """The registered data-set ids and prefix families (``"openml-<name-or-id>"``), for messages."""
    ids = [i.name for i in _ordered() if not i.prefix]
    fams = [i.hint or f"{i.name}<...>" for i in _ordered() if i.prefix]
    return ids + fams


def check_dataset_id(name: Any) -> SourceInfo:
    """The source of ``name``; ``ValueError`` naming the known ids when there is none."""
    info = find_source(name)
    if info is None:
        ids = [i.name for i in _ordered() if not i.prefix]
        fams = [repr(i.hint or f"{i.name}<...>") for i in _ordered() if i.prefix]
        raise ValueError(
            f"unknown data set {name!r}; known: {', '.join(ids)}"
            + (f", or {', '.join(fams)}" if fams else "")
        )
    return info


def prepare_dataset(name: str, out_dir: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """Generate or download data set ``name`` and write it to ``out_dir`` in normalized format.

    Dispatches to the registered source (:func:`mfoml.data.sources.prepare_builtin` for the
    embedded and vision sets, :func:`mfoml.data.openml.prepare.prepare_openml` for
    ``openml-<name-or-id>``); see those for the options (``download_dir, mirror, grayscale,
    per_class_cap, seed, checksums, timeout``, ...).

    Returns
    -------
    The metadata written to ``meta.json``.
    """
    info = check_dataset_id(name)
    return info.prepare(name, out_dir, **options)
