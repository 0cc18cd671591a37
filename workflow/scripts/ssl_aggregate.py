"""Rule `ssl_aggregate`: the self-supervised runs' tables (mfoml.analysis.ssl_tables).

``ssl_layers.csv`` (every run, epoch, layer and label set), ``ssl_layers_summary.csv`` (mean,
std and count over folds) and ``ssl_epochs.csv`` (the SSL loss and its terms per epoch).
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
from mfoml.analysis.ssl_tables import (  # noqa: E402
    ssl_epochs_table,
    ssl_layers_summary,
    ssl_layers_table,
)
from mfoml.io import atomic_write_csv  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402

log = setup_logging(snakemake.log[0], "ssl_aggregate")
cfg = json.loads(snakemake.params.cfg)
runs = cfg["runs"]
evals = {r["run"]: pd.read_csv(p) for r, p in zip(runs, snakemake.input.evals, strict=True)}
metrics = {
    r["run"]: pd.read_csv(Path(d) / "metrics.csv")
    for r, d in zip(runs, snakemake.input.checkpoints, strict=True)
}
layers = ssl_layers_table(runs, evals)
layers.insert(0, "name", cfg["name"])
summary = ssl_layers_summary(layers.drop(columns="name"))
summary.insert(0, "name", cfg["name"])
atomic_write_csv(snakemake.output.layers, layers)
atomic_write_csv(snakemake.output.summary, summary)
atomic_write_csv(snakemake.output.epochs, ssl_epochs_table(runs, metrics))
log.info("%d runs: %d layer rows, %d summary rows", len(runs), len(layers), len(summary))
