"""The per-layer measures of the layers table: the one registry of their columns.

Every per-layer measure of ``results/tables/layers.csv`` is declared here once, as a
:class:`LayerMeasure`: the columns it contributes (``columns``, in the order of its per-run
table) and which of them ``layers_summary.csv`` summarizes over folds (``summary``: mean, std
and n). The modules that compute a measure build their output columns from its entry
(:data:`GEOMETRY` gives ``mfoml.collapse.geometry.GEOMETRY_COLUMNS``, :data:`INTRINSIC_DIM` the
columns merged by ``mfoml.similarity.merge``) and the aggregation derives the summarized columns
from :data:`LAYER_MEASURES` (``mfoml.analysis.aggregate.layer_summary_columns``), so a measure
is listed in one place and reaches ``layers_summary.csv`` with its declaration.
``tests/test_layer_measures.py`` checks that every column of the tables the jobs write is
declared (a measure or a :data:`LAYER_DESCRIPTORS` entry).

Plain data, no import: every layer of the package may read it (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "GEOMETRY",
    "INTRINSIC_DIM",
    "LAYER_DESCRIPTORS",
    "LAYER_MEASURES",
    "NCC",
    "PROBE",
    "LayerMeasure",
]


@dataclass(frozen=True)
class LayerMeasure:
    """What one per-layer measure contributes to the layers table.

    Attributes
    ----------
    name : the measure (``"ncc"``, ``"probe"``...).
    table : the per-run table holding it (``results/runs/{run}/{table}``).
    columns : its columns in that table, in order (values, counts and labels).
    not_summarized : the columns among ``columns`` that are labels or counts (statuses,
        methods): ``layers_summary.csv`` summarizes every other one over folds
        (:attr:`summary`).
    per_split : the table has one row per split; the layers table has the ``train`` split's
        columns as they are and every other split's with the suffix ``_{split}``
        (``alpha_test``), which are summarized alike.
    """

    name: str
    table: str
    columns: tuple[str, ...]
    not_summarized: tuple[str, ...] = ()
    per_split: bool = False

    def __post_init__(self) -> None:
        extra = [c for c in self.not_summarized if c not in self.columns]
        if extra:
            raise ValueError(f"layer measure {self.name!r}: {extra} are not among its columns")

    @property
    def summary(self) -> tuple[str, ...]:
        """The numeric measures, summarized over folds (``{c}_mean, {c}_std, {c}_n``)."""
        return tuple(c for c in self.columns if c not in self.not_summarized)


#: NCC mismatch and accuracy, NC1-NC4 (``mfoml.collapse.table.layer_table``, rule ``ncc``).
NCC = LayerMeasure(
    "ncc",
    "ncc.csv",
    columns=(
        # ncc_mismatch_train, ncc_mismatch_test, ncc_accuracy_train, ncc_accuracy_test
        *(
            f"ncc_{what}_{split}"
            for what in ("mismatch", "accuracy")
            for split in ("train", "test")
        ),
        "nc1",
        "nc2_equinorm",
        "nc2_equiangularity",
        "nc2_mean_angle_dev",
        "nc2_max_angle_dev",
        "nc3",
        "nc4",
        "status",
    ),
    not_summarized=("status",),
)
#: Class geometry beyond NC1-NC4 (``mfoml.collapse.geometry``; merged into ``ncc.csv``).
GEOMETRY = LayerMeasure(
    "geometry",
    "ncc.csv",
    columns=(
        "cdnv",
        "trace_within",
        "trace_between",
        "trace_ratio",
        "etf_error_means",
        "etf_error_classifier",
        "self_duality_error",
        "effective_rank",
        "effective_rank_method",
    ),
    not_summarized=("effective_rank_method",),
)
#: The sparsity probe's alpha, its band and wavelet counts, and the random-label baseline
#: (``mfoml.nets.layer_probe``, rule ``probe``).
PROBE = LayerMeasure(
    "probe",
    "probe.csv",
    columns=(
        "alpha",
        "alpha_min",
        "alpha_max",
        "status",
        "n_tau",
        "n_wavelets",
        "alpha_random",
        "alpha_random_status",
        "n_wavelets_random",
    ),
    not_summarized=("status", "alpha_random_status"),
    per_split=True,
)
#: The TwoNN intrinsic dimension (rule ``intrinsic_dim``; merged by ``mfoml.similarity.merge``).
INTRINSIC_DIM = LayerMeasure(
    "intrinsic_dim",
    "intrinsic_dim.csv",
    columns=(
        "intrinsic_dim",
        "intrinsic_dim_n_used",
        "intrinsic_dim_duplicates",
        "intrinsic_dim_status",
    ),
    not_summarized=("intrinsic_dim_n_used", "intrinsic_dim_duplicates", "intrinsic_dim_status"),
)
#: Every per-layer measure of the layers table.
LAYER_MEASURES: tuple[LayerMeasure, ...] = (NCC, GEOMETRY, PROBE, INTRINSIC_DIM)
#: Columns of the per-run layer tables that identify or describe a layer and its samples, not a
#: measure of it (never summarized).
LAYER_DESCRIPTORS = frozenset(
    {
        "epoch",
        "split",
        "layer",
        "layer_index",
        "dim",
        "reduction",
        "n_samples",
        "n_train",
        "n_test",
        "n_classes",
        "n_classes_present",
        "is_penultimate",
        "method",
        "backend",
        "test_split",
    }
)
