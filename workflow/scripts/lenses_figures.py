"""Rule `lenses_figures`: the CKA and intrinsic-dimension figures (mfoml.plots.lenses) from the
summaries over folds (results/tables/cka_*_summary.csv, layers_summary.csv)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

import pandas as pd  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.plots import lenses  # noqa: E402

log = setup_logging(snakemake.log[0], "lenses_figures")
cfg = json.loads(snakemake.params.cfg)
dpi = int(cfg["dpi"])
inp, out = snakemake.input, snakemake.output
if "cka_layers" in out.keys():
    lenses.plot_cka_layers(pd.read_csv(inp.cka_layers), out.cka_layers, dpi)
    lenses.plot_cka_checkpoints(pd.read_csv(inp.cka_checkpoints), out.cka_checkpoints, dpi)
    lenses.plot_cka_runs(pd.read_csv(inp.cka_runs), out.cka_runs, dpi)
if "intrinsic_dim" in out.keys():
    lenses.plot_intrinsic_dim(pd.read_csv(inp.layers_summary), out.intrinsic_dim, dpi)
log.info("wrote %d figures", len(out))
