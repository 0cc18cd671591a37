"""Rule `tabular_rf_search`: random-forest hyper-parameter search with nested cross-validation
(inner CV on the outer training folds only) on one data set."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

from functools import partial  # noqa: E402

from mfoml.logs import setup_logging  # noqa: E402
from mfoml.tabular.job import run_dataset_job  # noqa: E402
from mfoml.tabular.search import search_job  # noqa: E402

setup_logging(snakemake.log[0], "tabular_rf_search")
run_dataset_job(snakemake, partial(search_job, model="random_forest"))
