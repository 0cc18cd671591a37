"""Rule `dynamics_interpolation_run`: loss and accuracy (train and test) along
theta(t) = (1 - t) theta_a + t theta_b between each pair of consecutive checkpoints of one run,
with the BatchNorm statistics recomputed on the run's training data at each t
(mfoml.dynamics.interpolation). Output: results/runs/{run}/interpolation.csv.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import pandas as pd  # noqa: E402
from mfoml.dynamics.interpolation import labeled_curve  # noqa: E402
from mfoml.dynamics.job import job_settings  # noqa: E402
from mfoml.dynamics.rundata import run_splits  # noqa: E402
from mfoml.io import atomic_write_csv  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.checkpoints import list_checkpoints, load_checkpoint  # noqa: E402

setup_logging(snakemake.log[0], "dynamics_interpolation_run")
cfg, device = job_settings(snakemake)
run, ckpts = cfg["run"], list_checkpoints(snakemake.input.checkpoints)
data = run_splits(snakemake.input.data, snakemake.input.checkpoints)
eps = sorted(ckpts)
frames = [
    labeled_curve(
        load_checkpoint(ckpts[ea], map_location=device)[0],
        load_checkpoint(ckpts[eb], map_location=device)[0],
        data,
        cfg,
        (run, ea),
        (run, eb),
    )
    for ea, eb in zip(eps[:-1], eps[1:], strict=True)
]
atomic_write_csv(snakemake.output[0], pd.concat(frames, ignore_index=True))
