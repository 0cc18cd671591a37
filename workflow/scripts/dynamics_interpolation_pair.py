"""Rule `dynamics_interpolation_pair`: loss and accuracy (train and test) along
theta(t) = (1 - t) theta_a + t theta_b between checkpoints of two runs (e.g. small- and
large-batch training; mfoml.dynamics.interpolation). The training data (BatchNorm statistics
recomputed at each t, train loss) are run a's, the test data the common test split. Output:
results/interpolation/pair{pair}.csv.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

from mfoml.dynamics.interpolation import labeled_curve  # noqa: E402
from mfoml.dynamics.job import job_settings  # noqa: E402
from mfoml.dynamics.rundata import run_splits  # noqa: E402
from mfoml.io import atomic_write_csv  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.checkpoints import list_checkpoints, load_checkpoint  # noqa: E402

setup_logging(snakemake.log[0], "dynamics_interpolation_pair")
cfg, device = job_settings(snakemake)
inp = snakemake.input
a, b = (cfg["a"], int(cfg["epoch_a"])), (cfg["b"], int(cfg["epoch_b"]))
model_a, _ = load_checkpoint(list_checkpoints(inp.a)[a[1]], map_location=device)
model_b, _ = load_checkpoint(list_checkpoints(inp.b)[b[1]], map_location=device)
curve = labeled_curve(model_a, model_b, run_splits(inp.data, inp.a), cfg, a, b)
atomic_write_csv(snakemake.output[0], curve)
