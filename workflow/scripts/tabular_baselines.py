"""Rule `tabular_baselines`: cross-validated scikit-learn baselines on one data set
(decision tree, random forest, histogram gradient boosting, linear model, XGBoost) with metrics."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

from mfoml.data.folds import load_folds  # noqa: E402
from mfoml.io import atomic_write_json  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.tabular.baselines import run_baselines  # noqa: E402
from mfoml.tabular.data import load_tabular, table_meta  # noqa: E402

log = setup_logging(snakemake.log[0], "tabular_baselines")
cfg = json.loads(snakemake.params.cfg)
data = load_tabular(snakemake.input.data, snakemake.wildcards.dataset)
folds = load_folds(snakemake.input.folds)
b = cfg["baselines"]
log.info("%s: baselines %s on %s samples x %s features", data.name, b["models"], *data.X.shape)
res = run_baselines(
    data,
    folds,
    b["models"],
    model_params={
        "random_forest": {"n_estimators": b["n_estimators"]},
        "hist_gradient_boosting": {"max_iter": b["hgb_max_iter"]},
        "xgboost": {
            "n_estimators": b["xgb_n_estimators"],
            "max_depth": b["xgb_max_depth"],
            "learning_rate": b["xgb_learning_rate"],
        },
    },
    seed=cfg["seed"],
    n_jobs=snakemake.threads,
)
atomic_write_json(snakemake.output[0], {"meta": table_meta(data), **res})
