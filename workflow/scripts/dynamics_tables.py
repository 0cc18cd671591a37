"""Rule `dynamics_tables`: the per-run outputs of the optional dynamics rules collected into
tidy tables with the run columns (results/tables/dynamics_*.csv)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

import pandas as pd  # noqa: E402
from mfoml.analysis.aggregate import RUN_COLUMNS  # noqa: E402
from mfoml.io import atomic_write_csv  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402

log = setup_logging(snakemake.log[0], "dynamics_tables")
cfg = json.loads(snakemake.params.cfg)
runs = {r["run"]: r for r in cfg["runs"]}


def read(path):
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: cannot read this dynamics table ({exc})") from exc


def with_run(frame, rid, prefix=""):
    out = frame.copy()
    for i, col in enumerate(RUN_COLUMNS):
        out.insert(i, f"{prefix}{col}", runs[rid][col])
    return out


def collect(paths, ids):
    frames = [with_run(read(p), rid) for p, rid in zip(paths, ids, strict=True)]
    return pd.concat(frames, ignore_index=True)


inp, out = snakemake.input, snakemake.output
ids = [r["run"] for r in cfg["runs"]]
if "checkpoint" in out.keys():
    atomic_write_csv(out.checkpoint, collect(inp.checkpoint, ids))
if "trajectory_surface" in out.keys():
    atomic_write_csv(out.trajectory_surface, collect(inp.trajectory_surface, ids))
    atomic_write_csv(out.trajectory_path, collect(inp.trajectory_path, ids))
if "interpolation" in out.keys():
    frames = []
    if "within" in inp.keys():
        for p, rid in zip(inp.within, ids, strict=True):
            f = with_run(read(p), rid)
            f.insert(len(RUN_COLUMNS), "kind", "checkpoints")
            frames.append(f)
    if "pairs" in inp.keys():
        for p, pair in zip(inp.pairs, cfg["pairs"], strict=True):
            f = with_run(read(p), pair["a"])
            f.insert(len(RUN_COLUMNS), "kind", "runs")
            frames.append(f)
    atomic_write_csv(out.interpolation, pd.concat(frames, ignore_index=True))
log.info("wrote %s", ", ".join(str(p) for p in out))
