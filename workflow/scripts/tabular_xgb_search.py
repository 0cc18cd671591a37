"""Rule `tabular_xgb_search`: XGBoost hyper-parameter search with nested cross-validation (inner
CV on the outer training folds only) on one data set, as rule `tabular_rf_search`."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate()  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

from mfoml.data.folds import load_folds  # noqa: E402
from mfoml.io import atomic_write_json  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.tabular.data import load_tabular, table_meta  # noqa: E402
from mfoml.tabular.search import nested_xgb_search  # noqa: E402

log = setup_logging(snakemake.log[0], "tabular_xgb_search")
cfg = json.loads(snakemake.params.cfg)
s = cfg["xgb_search"]
data = load_tabular(snakemake.input.data, snakemake.wildcards.dataset)
folds = load_folds(snakemake.input.folds)
log.info("%s: nested XGBoost search, grid %s, n_iter %s", data.name, s["grid"], s["n_iter"])
res = nested_xgb_search(
    data,
    folds,
    s["grid"],
    inner_splits=s["inner_splits"],
    n_iter=s["n_iter"],
    seed=cfg["seed"],
    n_jobs=snakemake.threads,
)
atomic_write_json(snakemake.output[0], {"meta": table_meta(data), **res})
