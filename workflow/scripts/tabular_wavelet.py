"""Rule `tabular_wavelet`: wavelet forest with validation-chosen M on one data set, with the
compression curves (held-out error vs M and vs number of trees)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

from mfoml.logs import setup_logging  # noqa: E402
from mfoml.tabular.job import run_dataset_job  # noqa: E402
from mfoml.tabular.wavelet import wavelet_job  # noqa: E402

setup_logging(snakemake.log[0], "tabular_wavelet")
run_dataset_job(snakemake, wavelet_job)
