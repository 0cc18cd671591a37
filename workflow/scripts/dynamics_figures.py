"""Rule `dynamics_figures`: the figures of the training-dynamics and class-geometry measures
(mfoml.plots.dynamics): always the gradient norm with the training loss, the error against the
parameter count and the per-layer geometry; the optional ones when their tables exist."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

import pandas as pd  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.plots import dynamics as plots  # noqa: E402

log = setup_logging(snakemake.log[0], "dynamics_figures")
cfg = json.loads(snakemake.params.cfg)
dpi = int(cfg["dpi"])
inp, out = snakemake.input, snakemake.output
epochs = pd.read_csv(inp.epochs)
plots.plot_gradnorm_epochs(epochs, out.gradnorm_epochs, dpi)
plots.plot_error_params(epochs, out.error_params, dpi)
plots.plot_geometry_layers(pd.read_csv(inp.layers), out.geometry_layers, dpi)
if "sharpness_epochs" in out.keys():
    plots.plot_sharpness_epochs(epochs, out.sharpness_epochs, dpi)
if "dynamics_checkpoints" in out.keys():
    plots.plot_checkpoint_measures(pd.read_csv(inp.checkpoint), out.dynamics_checkpoints, dpi)
if "interpolation" in out.keys():
    plots.plot_interpolation(pd.read_csv(inp.interpolation), out.interpolation, dpi)
if "trajectory" in out.keys():
    plots.plot_trajectory(
        pd.read_csv(inp.trajectory_surface),
        pd.read_csv(inp.trajectory_path),
        out.trajectory,
        dpi,
    )
log.info("wrote %d figures", len(out))
