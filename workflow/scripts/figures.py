"""Rule `figures`: the report's figures from the aggregated tables (mfoml.plots) and its tables
as HTML pages (mfoml.plots.html)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

import pandas as pd  # noqa: E402
from mfoml import plots  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.plots.html import write_table_html  # noqa: E402

log = setup_logging(snakemake.log[0], "figures")
cfg = json.loads(snakemake.params.cfg)
dpi = int(cfg["dpi"])
inp, out = snakemake.input, snakemake.output
layers = pd.read_csv(inp.layers)
plots.plot_alpha_layers(layers, out.alpha_layers, dpi)
plots.plot_ncc_layers(layers, out.ncc_layers, dpi)
plots.plot_collapse_layers(layers, out.collapse_layers, dpi)
plots.plot_accuracy_epochs(pd.read_csv(inp.epochs), out.accuracy_epochs, dpi)
plots.plot_confusion(pd.read_csv(inp.confusion), out.confusion, dpi)
plots.plot_correlation(
    pd.read_csv(inp.correlation_points), pd.read_csv(inp.correlation), out.correlation, dpi
)
plots.plot_noise_alpha(pd.read_csv(inp.noise_alpha), out.noise_alpha, dpi)
tables = [k for k in out.keys() if k.startswith("table_")]
for key in tables:  # the report's tables as HTML pages
    name = key.removeprefix("table_")
    write_table_html(inp[name], out[key], title=f"results/tables/{name}.csv")
log.info("wrote %d figures and %d table pages", len(out) - len(tables), len(tables))
