"""Rule `tabular_boosting`: wavelets of boosted trees (scikit-learn gradient boosting, XGBoost)
beside the wavelet forest on one data set: M chosen on a validation split, compression curves
(held-out error vs M and vs number of stages), wavelet importances and their rank agreement."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

from mfoml.logs import setup_logging  # noqa: E402
from mfoml.tabular.boosting import boosting_job  # noqa: E402
from mfoml.tabular.job import run_dataset_job  # noqa: E402

setup_logging(snakemake.log[0], "tabular_boosting")
run_dataset_job(snakemake, boosting_job)
