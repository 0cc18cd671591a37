"""Rule `tabular_xgb_search`: XGBoost hyper-parameter search with nested cross-validation (inner
CV on the outer training folds only) on one data set, as rule `tabular_rf_search`."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

from mfoml.data.folds import load_folds  # noqa: E402
from mfoml.io import atomic_write_json  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.tabular.data import load_tabular  # noqa: E402
from mfoml.tabular.search import search_job  # noqa: E402

setup_logging(snakemake.log[0], "tabular_xgb_search")
data = load_tabular(snakemake.input.data, snakemake.wildcards.dataset)
folds = load_folds(snakemake.input.folds)
cfg = json.loads(snakemake.params.cfg)
record = search_job(data, folds, cfg, "xgboost", n_jobs=snakemake.threads)
atomic_write_json(snakemake.output[0], record)
