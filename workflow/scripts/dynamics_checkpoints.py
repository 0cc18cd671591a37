"""Rule `dynamics_checkpoints`: per checkpoint of a run, the sharpness of the training loss (top
Hessian eigenvalue and Hutchinson trace on a fixed training subset, mfoml.dynamics.sharpness) and
the input sensitivity (mean ||d loss / d x||_F per split, mfoml.dynamics.sensitivity), as switched
on by ``dynamics.sharpness`` / ``dynamics.sensitivity``. Output: results/runs/{run}/dynamics.csv,
one row per checkpoint epoch.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import time  # noqa: E402

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from mfoml.dynamics.job import job_settings  # noqa: E402
from mfoml.dynamics.rundata import run_splits  # noqa: E402
from mfoml.dynamics.sensitivity import input_sensitivity  # noqa: E402
from mfoml.dynamics.sharpness import sharpness  # noqa: E402
from mfoml.io import atomic_write_csv  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.checkpoints import list_checkpoints, load_checkpoint  # noqa: E402

log = setup_logging(snakemake.log[0], "dynamics_checkpoints")
cfg, device = job_settings(snakemake)
ckpts = list_checkpoints(snakemake.input.checkpoints)
epochs = sorted(ckpts) if cfg["epochs"] == "all" else sorted(int(e) for e in cfg["epochs"])
missing = [e for e in epochs if e not in ckpts]
if missing:
    raise FileNotFoundError(f"{snakemake.input.checkpoints}: no checkpoint for epochs {missing}")
sh, se = cfg["sharpness"], cfg["sensitivity"]
full = run_splits(snakemake.input.data, snakemake.input.checkpoints)
sens = run_splits(
    snakemake.input.data, snakemake.input.checkpoints, max_samples=se["max_samples"], seed=0
)
rows = []
for epoch in epochs:
    t0 = time.perf_counter()
    model, _ = load_checkpoint(ckpts[epoch], map_location=device)
    model.eval()
    row = {"epoch": epoch}
    if sh["enabled"]:
        x, y = full["train"]
        res = sharpness(
            model,
            torch.from_numpy(x),
            torch.from_numpy(y),
            subset_size=sh["subset_size"],
            n_iter=int(sh["n_iter"]),
            method=sh["method"],
            trace_samples=int(sh["trace_samples"]),
            batch_size=int(sh["batch_size"]),
            mode="eval",
            seed=int(cfg["seed"]),
        )
        row.update(res)
    if se["enabled"]:
        for split in se["splits"]:
            x, y = sens[split]
            res = input_sensitivity(model, torch.from_numpy(x), torch.from_numpy(y))
            row[f"sensitivity_{split}"] = res["sensitivity"]
            row[f"sensitivity_{split}_std"] = res["sensitivity_std"]
    row["seconds"] = time.perf_counter() - t0
    rows.append(row)
    log.info("epoch %d: %s", epoch, {k: v for k, v in row.items() if k != "epoch"})
atomic_write_csv(snakemake.output[0], pd.DataFrame(rows))
