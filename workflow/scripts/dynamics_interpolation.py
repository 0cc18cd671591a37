"""Rules `interpolation_run` and `interpolation_pair`: loss and accuracy (train and test) along
theta(t) = (1 - t) theta_a + t theta_b with the BatchNorm statistics recomputed on training data
at each t (mfoml.dynamics.interpolation).

``interpolation_run``: between each pair of consecutive checkpoints of one run.
``interpolation_pair``: between two runs (e.g. small- and large-batch training); the training
data (BatchNorm statistics, train loss) are run a's, the test data the common test split.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from mfoml.dynamics.interpolation import default_ts, interpolation_curve  # noqa: E402
from mfoml.dynamics.rundata import run_splits  # noqa: E402
from mfoml.io import atomic_write_csv  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.checkpoints import list_checkpoints, load_checkpoint  # noqa: E402
from mfoml.nets.models import resolve_device  # noqa: E402

log = setup_logging(snakemake.log[0], "interpolation")
cfg = json.loads(snakemake.params.cfg)
torch.set_num_threads(max(1, int(snakemake.threads)))
device = resolve_device(cfg["device"])
ts = default_ts(cfg["t_min"], cfg["t_max"], int(cfg["n_points"]))
inp = snakemake.input
if "b" in cfg:  # a pair of runs
    jobs = [(inp.a, cfg["epoch_a"], inp.b, cfg["epoch_b"], cfg["a"], cfg["b"])]
    data = run_splits(inp.data, inp.a)
else:  # consecutive checkpoints of one run
    eps = sorted(list_checkpoints(inp.checkpoints))
    jobs = [
        (inp.checkpoints, ea, inp.checkpoints, eb, cfg["run"], cfg["run"])
        for ea, eb in zip(eps[:-1], eps[1:], strict=True)
    ]
    data = run_splits(inp.data, inp.checkpoints)
frames = []
for dir_a, ea, dir_b, eb, run_a, run_b in jobs:
    ma, _ = load_checkpoint(list_checkpoints(dir_a)[int(ea)], map_location=device)
    mb, _ = load_checkpoint(list_checkpoints(dir_b)[int(eb)], map_location=device)
    curve = interpolation_curve(
        ma,
        mb,
        data["train"],
        data["test"],
        ts=ts,
        bn_samples=cfg["bn_samples"],
        eval_samples=cfg["eval_samples"],
        seed=int(cfg.get("seed", 0)),
    )
    for i, (col, val) in enumerate(
        (("run_a", run_a), ("epoch_a", int(ea)), ("run_b", run_b), ("epoch_b", int(eb)))
    ):
        curve.insert(i, col, val)
    frames.append(curve)
    log.info(
        "%s@%s -> %s@%s: train loss at t=0 %.4f, t=0.5 %.4f, t=1 %.4f",
        run_a,
        ea,
        run_b,
        eb,
        *[float(curve.loc[(curve["t"] - t).abs().idxmin(), "train_loss"]) for t in (0, 0.5, 1)],
    )
atomic_write_csv(snakemake.output[0], pd.concat(frames, ignore_index=True))
