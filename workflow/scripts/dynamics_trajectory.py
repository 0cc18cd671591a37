"""Rule `dynamics_trajectory`: PCA of a run's flattened parameters over its checkpoints and the
training loss on the plane of the first two principal directions (mfoml.dynamics.trajectory).
Outputs: ``trajectory_surface.csv`` (a, b, train_loss, train_acc per grid point) and
``trajectory_path.csv`` (each checkpoint's coordinates, its distance to the plane, the explained
variance ratios).
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

from mfoml.dynamics.job import job_settings  # noqa: E402
from mfoml.dynamics.rundata import run_splits  # noqa: E402
from mfoml.dynamics.trajectory import loss_surface  # noqa: E402
from mfoml.io import atomic_write_csv  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.checkpoints import list_checkpoints, load_checkpoint  # noqa: E402

log = setup_logging(snakemake.log[0], "dynamics_trajectory")
cfg, _ = job_settings(snakemake)  # the checkpoints are loaded on the CPU
ckpts = list_checkpoints(snakemake.input.checkpoints)
if len(ckpts) < 3:
    raise ValueError(
        f"{snakemake.input.checkpoints}: the weight trajectory needs at least 3 checkpoints, "
        f"found epochs {sorted(ckpts)}"
    )
epochs = sorted(ckpts)
states, model = [], None
for epoch in epochs:
    model, ckpt = load_checkpoint(ckpts[epoch])
    states.append(ckpt["state_dict"])
x, y = run_splits(snakemake.input.data, snakemake.input.checkpoints)["train"]
res = loss_surface(
    model,
    states,
    x,
    y,
    grid=int(cfg["grid"]),
    margin=float(cfg["margin"]),
    samples=cfg["samples"],
    seed=int(cfg["seed"]),
)
path = res["checkpoints"].rename(columns={"index": "checkpoint"})
path.insert(0, "epoch", [epochs[i] for i in path["checkpoint"]])
ratio = res["explained_variance_ratio"]
path["explained_variance_ratio_1"] = float(ratio[0])
path["explained_variance_ratio_2"] = float(ratio[1])
surface = res["surface"].rename(columns={"loss": "train_loss", "acc": "train_acc"})
atomic_write_csv(snakemake.output.surface, surface)
atomic_write_csv(snakemake.output.path, path)
log.info(
    "%d checkpoints, explained variance %.3f + %.3f, loss surface %d points",
    len(epochs),
    ratio[0],
    ratio[1],
    len(res["surface"]),
)
