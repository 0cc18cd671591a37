"""Rule `train_ssl`: one self-supervised training run (loss type simclr, vicreg, barlow, byol, dino).

What the job builds, trains and writes (checkpoints, metrics.csv, split.npz, run.json) is
documented in mfoml.nets.ssl_job; the training loop in mfoml.nets.ssl_training.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

from mfoml.data.store import load_dataset  # noqa: E402
from mfoml.io import atomic_write_json, fresh_partial_dir, replace_dir  # noqa: E402
from mfoml.nets.ssl_job import ssl_run, ssl_run_info, ssl_threads, ssl_workers  # noqa: E402
from mfoml.nets.ssl_training import train_ssl  # noqa: E402
from mfoml.nets.trainjob import log_finished, start_job, train_config  # noqa: E402

cfg, out_dir = start_job(
    snakemake.log[0], "train_ssl", snakemake.params.cfg, snakemake.output[0], snakemake.threads
)
# Built in a partial directory beside the output, moved into place only when complete (as in
# rule train); self-supervised training does not resume, so one left by a killed job goes.
work = fresh_partial_dir(out_dir)

ds = load_dataset(snakemake.input.data)
run = ssl_run(ds, cfg, snakemake.input.get("folds"))
ssl_threads(run, cfg, snakemake.threads)  # the intra-op threads that pay (mfoml.nets.threads)
metrics = train_ssl(
    run.model,
    run.objective,
    run.augmenter,
    run.x_train,
    train_config(cfg),
    work,
    workers=ssl_workers(run.kind, snakemake.threads),
)
run.split.save(work / "split.npz")
atomic_write_json(work / "run.json", ssl_run_info(cfg, ds, run.model))
replace_dir(work, out_dir)
log_finished(cfg["run"], metrics)
