"""Rule `ssl_figures`: one figure per self-supervised experiment (mfoml.plots.ssl) and the fold
summary as an HTML page for the report (mfoml.plots.html)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

import pandas as pd  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.plots.html import write_table_html  # noqa: E402
from mfoml.plots.ssl import plot_ssl_layers  # noqa: E402

log = setup_logging(snakemake.log[0], "ssl_figures")
cfg = json.loads(snakemake.params.cfg)
summary = pd.read_csv(snakemake.input.summary)
experiments = snakemake.params.experiments
for experiment, path in zip(experiments, snakemake.output[: len(experiments)], strict=True):
    plot_ssl_layers(summary, experiment, path, int(cfg["dpi"]))
    log.info("experiment %s: %s", experiment, path)
write_table_html(  # the fold summary as an HTML page for the report
    snakemake.input.summary,
    snakemake.output.table,
    title="results/tables/ssl_layers_summary.csv",
)
