"""Rule `tabular_importance`: wavelet vs impurity vs permutation feature importance on one
data set, with rank agreement (Spearman, Kendall) per fold."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

from mfoml.logs import setup_logging  # noqa: E402
from mfoml.tabular.importance import importance_job  # noqa: E402
from mfoml.tabular.job import run_dataset_job  # noqa: E402

setup_logging(snakemake.log[0], "tabular_importance")
run_dataset_job(snakemake, importance_job)
