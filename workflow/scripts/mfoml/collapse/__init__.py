"""Nearest-class-center (NCC) simplification and neural-collapse metrics, streaming and exact.

- :mod:`mfoml.collapse.streaming`: chunked passes over features, BLAS control, the scan kernel;
- :mod:`mfoml.collapse.accumulators`: :class:`ClassMeans` (per-class sums and counts);
- :mod:`mfoml.collapse.measures`: NCC mismatch/accuracy, NC1-NC4;
- :mod:`mfoml.collapse.table`: :func:`layer_table`, one row per layer of an activation dump;
- :mod:`mfoml.collapse.geometry`: class geometry beyond NC1-NC4 (CDNV, trace ratio, ETF and
  self-duality errors, effective rank); :mod:`mfoml.collapse.geometry_table`: per layer.
- :mod:`mfoml.collapse.probes`: linear probe, k-NN and NCC per label set of frozen layers
  (self-supervised encoders).

See ``docs/methods.md``. Names are loaded on first use (``import mfoml.collapse`` does not import
torch).
"""

from mfoml._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "accumulators": ("ClassMeans",),
        "measures": ("collapse_metrics", "ncc_accuracy", "ncc_mismatch", "ncc_predict"),
        "table": ("layer_table",),
        "geometry": ("geometry_metrics",),
        "geometry_table": ("geometry_table",),
        "probes": ("knn_accuracy", "layer_probe_table", "linear_probe", "ncc_label_sets"),
    },
)
