"""Rule `tabular_boosting`: wavelets of boosted trees (scikit-learn gradient boosting, XGBoost)
beside the wavelet forest on one data set: M chosen on a validation split, compression curves
(held-out error vs M and vs number of stages), wavelet importances and their rank agreement."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

from mfoml.data.folds import load_folds  # noqa: E402
from mfoml.io import atomic_write_json  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.tabular.boosting import boosting_cv  # noqa: E402
from mfoml.tabular.data import forest_params, load_tabular, table_meta  # noqa: E402

log = setup_logging(snakemake.log[0], "tabular_boosting")
cfg = json.loads(snakemake.params.cfg)
b = cfg["boosting"]
data = load_tabular(snakemake.input.data, snakemake.wildcards.dataset)
folds = load_folds(snakemake.input.folds)
forest = forest_params(cfg["forest"]) if b["compare_forest"] else None
log.info("%s: boosted wavelets %s (forest beside: %s)", data.name, b["models"], forest)
res = boosting_cv(
    data,
    folds,
    {k: b[k] for k in ("n_estimators", "learning_rate", "max_depth", "subsample", "norm_weight")},
    forest,
    models=b["models"],
    val_fraction=b["val_fraction"],
    select_metric=b["select_metric"],
    curve_points=b["curve_points"],
    importance_tau=b["tau"],
    seed=cfg["seed"],
    n_jobs=snakemake.threads,
)
atomic_write_json(snakemake.output[0], {"meta": table_meta(data), **res})
