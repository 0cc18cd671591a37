"""Rule `pretrain`: one masked-language-model pretraining stage (config `pretrain`).

The stage's model, settings, outputs (results/pretrain/{stage}/checkpoints: checkpoints,
metrics.csv, stage.json) are documented in mfoml.nets.pretrain.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from mfoml.data.store import load_dataset  # noqa: E402
from mfoml.io import atomic_write_json, fresh_partial_dir, replace_dir  # noqa: E402
from mfoml.logs import log_device_environment, setup_logging  # noqa: E402
from mfoml.nets.pretrain import (  # noqa: E402
    pretrain_mlm,
    stage_config,
    stage_model,
    stage_summary,
)
from mfoml.nets.trainjob import log_finished  # noqa: E402

log = setup_logging(snakemake.log[0], "pretrain")
log_device_environment(log)
cfg = json.loads(snakemake.params.cfg)
out_dir = Path(snakemake.output[0])
torch.set_num_threads(max(1, int(snakemake.threads)))
log.info("MLM stage %s: %s", cfg["stage"], json.dumps(cfg, sort_keys=True))
# Built in a partial directory beside the output, moved into place only when complete (as in
# rule train); pre-training does not resume, so one left by a killed job goes.
work = fresh_partial_dir(out_dir)

ds = load_dataset(snakemake.input.data, mmap_mode="r")
model = stage_model(ds.meta, cfg)  # raises for a data set that is not text
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
