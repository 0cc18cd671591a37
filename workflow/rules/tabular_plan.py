"""Snakemake planning of the tabular track: which jobs, tables and figures a config asks for.

Imported by ``workflow/rules/tabular.smk`` (the rule file holds only rules); plain Python, no
Snakemake import, so that it can be tested directly. It belongs to the workflow layer, not to the
numeric core ``mfoml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mfoml.config import canonical_json

__all__ = ["TabularPlan"]


class TabularPlan:
    """Which tabular jobs, tables and figures a validated ``config["tabular"]`` asks for.

    Used by ``workflow/rules/tabular.smk`` so that the rule file holds only rules.

    Parameters
    ----------
    cfg : the validated ``tabular`` configuration block (defaults filled).
    fig_ext : figure file extension (``figures.format``).

    Raises
    ------
    ValueError naming the config key when a part's ``datasets`` is not a subset of
    ``tabular.datasets``.
    """

    PARTS = ("baselines", "rf_search", "xgb_search", "wavelet", "boosting", "importance", "noise")
    #: figure name -> the table it needs
    FIGURE_TABLES = {
        "baselines": "baselines",
        "confusion": "confusion",
        "hparams": "hparams",
        "xgb_hparams": "xgb_hparams",
        "compression": "compression",
        "trees": "trees",
        "boosting_compression": "boosting_compression",
        "boosting_stages": "boosting_stages",
        "boosting_importance": "boosting_rank_agreement",
        "importance": "rank_agreement",
        "synthetic": "synthetic",
        "noise": "noise",
    }

    def __init__(self, cfg: Mapping[str, Any], fig_ext: str = "png") -> None:
        self.cfg = cfg
        self.fig_ext = fig_ext
        for part in self.PARTS:
            subset = cfg[part].get("datasets")
            if subset is None:
                continue
            unknown = [d for d in subset if d not in cfg["datasets"]]
            if unknown:
                raise ValueError(
                    f"config key 'tabular.{part}.datasets': {unknown} are not in "
                    f"tabular.datasets {list(cfg['datasets'])}"
                )

    @property
    def enabled(self) -> bool:
        """``tabular.enabled``."""
        return bool(self.cfg["enabled"])

    def datasets(self, part: str) -> list[str]:
        """Data sets ``part`` runs on (empty when the part is disabled).

        The track's ``enabled`` switch only decides whether :meth:`targets` asks for outputs;
        the rules exist either way.
        """
        if not self.cfg[part]["enabled"]:
            return []
        subset = self.cfg[part].get("datasets")
        return [d for d in self.cfg["datasets"] if subset is None or d in subset]

    @property
    def synthetic_enabled(self) -> bool:
        """Whether the synthetic importance check runs."""
        return bool(self.cfg["importance"]["synthetic"]["enabled"])

    def table_names(self) -> list[str]:
        """Stems of ``results/tables/tabular_<name>.csv`` written by rule tabular_tables."""
        names = []
        if self.datasets("baselines"):
            names += ["baselines", "per_class", "confusion"]
        if self.datasets("rf_search"):
            names += ["rf_search", "rf_search_folds", "hparams"]
        if self.datasets("xgb_search"):
            names += ["xgb_search", "xgb_search_folds", "xgb_hparams"]
        if self.datasets("wavelet"):
            names += ["wavelet", "compression"]
            if self.cfg["wavelet"]["trees_grid"]:
                names.append("trees")
        if self.datasets("boosting"):
            names += ["boosting", "boosting_compression", "boosting_stages", "boosting_importance"]
            names.append("boosting_rank_agreement")
        if self.datasets("importance"):
            names += ["importance", "rank_agreement"]
        if self.synthetic_enabled:
            names += ["synthetic", "synthetic_importance"]
        if self.datasets("noise"):
            names.append("noise")
        return names + ["datasets"]

    def figure_names(self) -> list[str]:
        """Stems of ``results/figures/tabular_<name>.<ext>`` (rule tabular_figures)."""
        tables = set(self.table_names())
        return [f for f, t in self.FIGURE_TABLES.items() if t in tables]

    def table_paths(self) -> dict[str, str]:
        """``{table name: results/tables/tabular_<name>.csv}``."""
        return {t: f"results/tables/tabular_{t}.csv" for t in self.table_names()}

    def figure_paths(self) -> dict[str, str]:
        """``{figure name: results/figures/tabular_<name>.<ext>}``."""
        return {f: f"results/figures/tabular_{f}.{self.fig_ext}" for f in self.figure_names()}

    def targets(self) -> list[str]:
        """Final targets of the track (empty when ``tabular.enabled`` is false)."""
        if not self.enabled:
            return []
        return list(self.table_paths().values()) + list(self.figure_paths().values())

    def results(self, part: str) -> list[str]:
        """Per-data-set result files of ``part`` (``synthetic``: the single synthetic file)."""
        if part == "synthetic":
            return ["results/tabular/synthetic.json"] if self.synthetic_enabled else []
        return [f"results/tabular/{d}/{part}.json" for d in self.datasets(part)]

    def params(self, part: str) -> str:
        """The config slice rule ``part`` depends on, as canonical JSON."""
        c = self.cfg
        if part in ("baselines", "rf_search", "xgb_search"):
            sl = {part: c[part], "seed": c["seed"]}
        elif part in ("wavelet", "noise", "boosting"):
            sl = {part: c[part], "forest": c["forest"], "seed": c["seed"]}
        elif part == "importance":
            imp = {k: v for k, v in c["importance"].items() if k != "synthetic"}
            sl = {"importance": imp, "forest": c["forest"], "seed": c["seed"]}
        elif part == "synthetic":
            imp = c["importance"]
            sl = {
                "importance": {k: imp[k] for k in ("synthetic", "tau", "n_repeats")},
                "forest": c["forest"],
                "seed": c["seed"],
            }
        elif part == "tables":
            sl = {"datasets": c["datasets"], "size_threshold": c["size_threshold"]}
        else:
            raise ValueError(f"TabularPlan.params: unknown part {part!r}")
        return canonical_json(sl)
