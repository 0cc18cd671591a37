"""More lenses on each layer: similarity between representations and their intrinsic dimension.

- :mod:`mfoml.similarity.cka`: linear CKA with the unbiased HSIC estimator, from Gram matrices
  (memory O(n^2), never O(D^2));
- :mod:`mfoml.similarity.intrinsic`: the TwoNN intrinsic-dimension estimator;
- :mod:`mfoml.similarity.tables`: per-run and cross-run CKA tables read from activation dumps;
  :mod:`mfoml.similarity.cka_summary`: those tables over all runs, with their fold summaries;
- :mod:`mfoml.similarity.merge`: the intrinsic-dimension columns of the layers table;
- :mod:`mfoml.similarity.embedding`: 2-D UMAP embeddings of a layer (umap-learn, optional).

See ``docs/methods.md`` ("Layer similarity and intrinsic dimension"). Names are loaded on first
use (``import mfoml.similarity`` imports nothing heavy).
"""

from mfoml._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "cka": ("cka", "gram", "hsic_unbiased", "cka_matrix"),
        "intrinsic": ("twonn_dimension", "TwoNNResult"),
        "tables": ("CKA_COLUMNS", "run_cka_table", "cross_run_cka_table", "read_layer"),
        "embedding": ("umap_embedding",),
        "merge": ("INTRINSIC_DIM_COLUMNS", "merge_intrinsic_dim"),
    },
)
