"""Rule `tabular_figures`: figures of the tabular track from its tables
(results/figures/tabular_<name>.<format>)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

import pandas as pd  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.plots.tabular import plot_all  # noqa: E402

log = setup_logging(snakemake.log[0], "tabular_figures")
cfg = json.loads(snakemake.params.cfg)
tables = {}
for name, path in snakemake.input.items():
    if name == "code":
        continue
    try:
        tables[name] = pd.read_csv(path)
    except pd.errors.EmptyDataError:  # a table with no rows and no columns
        tables[name] = pd.DataFrame()
plot_all(tables, dict(snakemake.output.items()), dpi=cfg["dpi"])
log.info("wrote %s", ", ".join(snakemake.output))
