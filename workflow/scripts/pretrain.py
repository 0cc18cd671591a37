"""Rule `pretrain`: one masked-language-model pretraining stage (config `pretrain`).

The stage's model, settings, outputs (results/pretrain/{stage}/checkpoints: checkpoints,
metrics.csv, stage.json) are documented in mfoml.nets.pretrain.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

from mfoml.data.store import load_dataset  # noqa: E402
from mfoml.io import atomic_write_json, fresh_partial_dir, replace_dir  # noqa: E402
from mfoml.nets.pretrain import (  # noqa: E402
    pretrain_mlm,
    stage_config,
    stage_model,
    stage_summary,
)
from mfoml.nets.threads import set_training_threads  # noqa: E402
from mfoml.nets.trainjob import log_finished, start_job  # noqa: E402

cfg, out_dir = start_job(
    snakemake.log[0], "pretrain", snakemake.params.cfg, snakemake.output[0], snakemake.threads
)
# Built in a partial directory beside the output, moved into place only when complete (as in
# rule train); pre-training does not resume, so one left by a killed job goes.
work = fresh_partial_dir(out_dir)

ds = load_dataset(snakemake.input.data, mmap_mode="r")
model = stage_model(ds.meta, cfg)  # raises for a data set that is not text
# the intra-op threads that pay for this model's batch (always auto here; mfoml.nets.threads)
set_training_threads(model, ds.x_train, cfg["batch_size"], snakemake.threads, device=cfg["device"])
tokenizer = ds.meta["tokenizer"]
metrics = pretrain_mlm(
    model,
    ds.x_train,
    stage_config(cfg),
    work,
    special_ids=tokenizer["special_ids"],
    ids_test=ds.x_test,
)
atomic_write_json(work / "stage.json", stage_summary(cfg, tokenizer, len(ds.x_train), metrics))
replace_dir(work, out_dir)
log_finished(f"stage {cfg['stage']}", metrics)
