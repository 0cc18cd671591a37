"""2-D UMAP embeddings of a layer (umap-learn, imported only when called).

UMAP (McInnes, Healy & Melville 2018) pictures neighbourhoods, not distances: the figure is for
looking; the NCC and collapse tables are the evidence. The embedding is seeded
(``random_state``, which makes umap-learn run single-threaded), so it is reproducible on a CPU.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["umap_embedding"]


def umap_embedding(
    x: np.ndarray,
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    seed: int = 0,
) -> np.ndarray:
    """The 2-D UMAP embedding of features ``x`` ``(n, D)`` (any float dtype).

    Returns float32 ``(n, 2)`` (arbitrary units). ``n_neighbors`` is capped at ``n - 1``; a
    layer of one feature, or of fewer than 4 points, is returned as is (padded with zeros).
    Raises ``ImportError`` naming the config key when umap-learn is not installed.
    """
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    n = len(x)
    if n < 4 or x.shape[1] < 2:
        out = np.zeros((n, 2), dtype=np.float32)
        out[:, : min(2, x.shape[1])] = x[:, :2]
        return out
    try:
        import umap
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise ImportError(
            "config key 'embedding.enabled' needs umap-learn (pip install 'mfoml[lenses]')"
        ) from exc
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=int(min(n_neighbors, n - 1)),
        min_dist=float(min_dist),
        metric=metric,
        random_state=int(seed),
        n_jobs=1,
    )
    return np.asarray(reducer.fit_transform(x), dtype=np.float32)
