"""Data: the normalized on-disk store, its sources, folds, label noise and subsampling.

- :mod:`mfoml.data.store`: the normalized format (:func:`load_dataset`,
  :func:`write_normalized`) and the registry of data sources. A leaf.
- :mod:`mfoml.data.catalog`: every source registered; :func:`prepare_dataset` dispatches
  through it and the configuration checks data-set ids against it.
- :mod:`mfoml.data.download`: HTTP downloads with length and checksum validation.
- :mod:`mfoml.data.formats`: parsers of the raw IDX and CIFAR files.
- :mod:`mfoml.data.sources`: the embedded and vision sets; :mod:`mfoml.data.openml`: OpenML.
- :mod:`mfoml.data.folds`, :mod:`mfoml.data.noise`, :mod:`mfoml.data.subsample`.
- :mod:`mfoml.data.variants`: random labels and random pixels (Zhang et al. 2017).

Names are loaded on first use (``import mfoml.data`` imports nothing else).
"""

from mfoml._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "catalog": ("check_dataset_id", "known_datasets", "prepare_dataset"),
        "store": ("Dataset", "IntegrityError", "load_dataset", "write_normalized"),
    },
)
