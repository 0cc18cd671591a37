"""Rule `tabular_noise`: scores and smoothness alpha as label noise (classification) or
Gaussian target noise (regression) grows, on one data set."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

from mfoml.logs import setup_logging  # noqa: E402
from mfoml.tabular.job import run_dataset_job  # noqa: E402
from mfoml.tabular.noise import noise_job  # noqa: E402

setup_logging(snakemake.log[0], "tabular_noise")
run_dataset_job(snakemake, noise_job)
