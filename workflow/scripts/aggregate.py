"""Rule `aggregate`: tidy tables over all runs (results/tables), fold summaries (the per-layer
measures of the registry mfoml.layer_measures), the run-level correlations of training-data
layer dynamics with test accuracy (mfoml.analysis.runstats) and the study tables
(mfoml.analysis.studies); the inputs are read and checked and the tables made by
mfoml.analysis.aggregate_tables."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

from mfoml.analysis.aggregate import layers_table  # noqa: E402
from mfoml.analysis.aggregate_tables import (  # noqa: E402
    aggregate_tables,
    checkpoint_tables,
    read_run_tables,
)
from mfoml.io import atomic_write_csv  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.dumps import open_activations  # noqa: E402
from mfoml.similarity.merge import merge_intrinsic_dim  # noqa: E402

setup_logging(snakemake.log[0], "aggregate")
cfg = json.loads(snakemake.params.cfg)
runs, inp = cfg["runs"], snakemake.input
tables = read_run_tables(
    runs,
    inp.probe,
    inp.ncc,
    inp.checkpoints,
    inp.activations,
    cfg["tables"],
    intrinsic_dim=inp.intrinsic_dim,  # none when intrinsic_dim is off
)
# the TwoNN intrinsic dimension per layer (rule intrinsic_dim) beside the probe and NCC columns
layers = merge_intrinsic_dim(layers_table(runs, tables.probe, tables.ncc), tables.intrinsic_dim)
n_classes = {rid: int(info["n_classes"]) for rid, info in tables.info.items()}
checkpoints, confusion = checkpoint_tables(runs, inp.activations, n_classes, open_activations)
for name, table in aggregate_tables(cfg, tables, layers, checkpoints, confusion).items():
    atomic_write_csv(getattr(snakemake.output, name), table)
