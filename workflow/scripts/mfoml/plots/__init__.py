"""Figures (seaborn on matplotlib's Agg backend), each written atomically.

- :mod:`mfoml.plots.common`: colours, variant labels, :func:`save_figure`, :func:`empty_figure`;
- :mod:`mfoml.plots.grid`: panel grids of the cells that exist, within a stated maximum size,
  n per panel, undefined values explained, log-space bands, legends outside the panels;
- :mod:`mfoml.plots.html`: the report's tables as HTML pages;
- :mod:`mfoml.plots.pipeline`: the deep-network track's figures (rule ``figures``);
- :mod:`mfoml.plots.studies`: the run-level correlations and the label-noise study (rule
  ``figures``);
- :mod:`mfoml.plots.tabular`: the tabular track's figures (rule ``tabular_figures``);
- :mod:`mfoml.plots.dynamics`: training dynamics and class geometry (rule ``dynamics_figures``).
- :mod:`mfoml.plots.ssl`: the self-supervised experiments' figure (rule ``ssl_figures``).
- :mod:`mfoml.plots.lenses`: CKA, intrinsic dimension and UMAP pictures of the layers (rules
  ``lenses_figures``, ``embedding``).

The plotting functions of ``pipeline``, ``studies``, ``dynamics`` and ``ssl`` write their image
and return the figure (closed), so that a test can inspect it. Names are loaded on first use (``import mfoml.plots`` does not import matplotlib).
"""

from mfoml._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "common": (
            "ACTIVATION_COLORS",
            "FEATURE_LABELS",
            "add_variant",
            "empty_figure",
            "save_figure",
            "variant_palette",
        ),
        "pipeline": (
            "plot_accuracy_epochs",
            "plot_alpha_layers",
            "plot_collapse_layers",
            "plot_confusion",
            "plot_ncc_layers",
        ),
        "studies": ("plot_correlation", "plot_noise_alpha"),
        "ssl": ("plot_ssl_layers",),
        "lenses": (
            "plot_cka_checkpoints",
            "plot_cka_layers",
            "plot_cka_runs",
            "plot_embedding",
            "plot_intrinsic_dim",
        ),
    },
)
