"""Rule `train`: one supervised training run of the run table.

What the job does and writes (checkpoints, metrics.csv, split.npz, run.json, request.json; the
resumable partial directory; subsets, label noise, transfer, MLM stages, epochs 0) is documented
in mfoml.nets.supervised; the tracked sharpness in mfoml.dynamics.edge.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

from mfoml.data.store import load_dataset  # noqa: E402
from mfoml.io import atomic_write_json, replace_dir  # noqa: E402
from mfoml.nets.supervised import (  # noqa: E402
    run_info,
    run_inputs,
    run_model,
    run_threads,
    supervised_split,
    train_run,
)
from mfoml.nets.trainjob import log_finished, resume_dir, start_job  # noqa: E402
from mfoml.tabular.netinput import fold_encoder  # noqa: E402
from mfoml.tracking import tracker_from_config  # noqa: E402

cfg, out_dir = start_job(
    snakemake.log[0], "train", snakemake.params.cfg, snakemake.output[0], snakemake.threads
)
run_id = cfg["run"]
# a rerun of the same request (params, code) resumes from the last complete checkpoint
work = resume_dir(out_dir, cfg, snakemake.params.code)

ds = load_dataset(snakemake.input.data)
split = supervised_split(ds, cfg, snakemake.input.get("folds"))
# a table's categories one-hot, its missing values imputed: fitted on the training rows only
# (mfoml.tabular.netinput; the activations job refits the same transform from split.npz)
inputs = run_inputs(ds, split, cfg, fold_encoder(ds.meta, ds.x_train, split.train_idx))
model, frozen = run_model(
    cfg,
    ds.meta,
    inputs,
    stage_dir=snakemake.input.get("pretrained"),
    source_dir=snakemake.input.get("source"),
)
# the intra-op threads that pay for this model's batch (train.torch_threads, mfoml.nets.threads)
run_threads(model, inputs, split, cfg, snakemake.threads)
monitor = None
if cfg["train"].get("sharpness_every"):
    # only runs that track the sharpness execute (and rerun for) mfoml.dynamics.edge
    from mfoml.dynamics.edge import SharpnessTracker

    monitor = SharpnessTracker.for_run(cfg, inputs.x_train, split.y_train)
tracker = tracker_from_config(
    snakemake.config.get("tracking"),
    name=run_id,
    group=snakemake.config.get("name"),
    job_type="train",
    config=cfg,
    default_dir="logs/wandb",
)
metrics = train_run(model, inputs, split, cfg, work, tracker=tracker, monitor=monitor)
split.save(work / "split.npz")
atomic_write_json(work / "run.json", run_info(cfg, ds.meta, model, inputs, split, frozen, metrics))
replace_dir(work, out_dir)  # request.json stays: the request this output answers
log_finished(run_id, metrics)
