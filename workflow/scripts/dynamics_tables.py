"""Rule `dynamics_tables`: the per-run outputs of the optional dynamics rules collected into
tidy tables with the run columns (results/tables/dynamics_*.csv), each read checked
(mfoml.analysis.aggregate.stack_run_tables: a corrupted file is named)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

from mfoml.analysis.aggregate import stack_run_tables  # noqa: E402
from mfoml.io import atomic_write_csv  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402

log = setup_logging(snakemake.log[0], "dynamics_tables")
cfg = json.loads(snakemake.params.cfg)
metas, inp, out = cfg["runs"], snakemake.input, snakemake.output
if "checkpoint" in out.keys():
    atomic_write_csv(out.checkpoint, stack_run_tables(inp.checkpoint, metas))
if "trajectory_surface" in out.keys():
    atomic_write_csv(out.trajectory_surface, stack_run_tables(inp.trajectory_surface, metas))
    atomic_write_csv(out.trajectory_path, stack_run_tables(inp.trajectory_path, metas))
if "interpolation" in out.keys():
    # within each run (between its checkpoints), then between the two runs of each pair (run a's
    # columns)
    paths, runs, kinds = [], [], []
    if "within" in inp.keys():
        paths, runs, kinds = list(inp.within), list(metas), ["checkpoints"] * len(metas)
    if "pairs" in inp.keys():
        meta = {r["run"]: r for r in metas}
        paths += list(inp.pairs)
        runs += [meta[pair["a"]] for pair in cfg["pairs"]]
        kinds += ["runs"] * len(cfg["pairs"])
    atomic_write_csv(out.interpolation, stack_run_tables(paths, runs, kinds))
log.info("wrote %s", ", ".join(str(p) for p in out))
