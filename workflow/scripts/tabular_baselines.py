"""Rule `tabular_baselines`: cross-validated scikit-learn baselines on one data set
(decision tree, random forest, histogram gradient boosting, linear model, XGBoost) with metrics."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

from mfoml.logs import setup_logging  # noqa: E402
from mfoml.tabular.baselines import baselines_job  # noqa: E402
from mfoml.tabular.job import run_dataset_job  # noqa: E402

setup_logging(snakemake.log[0], "tabular_baselines")
run_dataset_job(snakemake, baselines_job)
