"""Rule `activations`: dump every probe layer for each checkpoint and configured split.

Output: ``results/runs/{run}/activations/{epoch}/{split}/`` (mfoml.nets.activations format) plus
``sources.json`` describing where each split's samples come from. The splits (``train``,
``heldout``, ``test``, ``analysis``: named for what they are) and the dumps are
mfoml.nets.dump_splits. Every label set of the data set goes into the dumps. A self-supervised
encoder has no classifier: its dumps store no predictions (mfoml.nets.activations). A table's
inputs are encoded as the train job encoded them (mfoml.tabular.netinput, refitted on the
training rows of ``split.npz``), so the ``input`` layer holds the one-hot, imputed columns.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mfoml.data.store import load_dataset  # noqa: E402
from mfoml.io import atomic_write_json, fresh_partial_dir, replace_dir  # noqa: E402
from mfoml.logs import log_device_environment, setup_logging  # noqa: E402
from mfoml.nets.checkpoints import list_checkpoints  # noqa: E402
from mfoml.nets.dump_splits import dump_checkpoints, plan_splits, subsample_splits  # noqa: E402
from mfoml.tabular.netinput import fold_encoder  # noqa: E402

log = setup_logging(snakemake.log[0], "activations")
log_device_environment(log)
cfg = json.loads(snakemake.params.cfg)
torch.set_num_threads(max(1, int(snakemake.threads)))
out = Path(snakemake.output[0])
ckpt_dir = Path(snakemake.input.checkpoints)
ds = load_dataset(snakemake.input.data, mmap_mode="r")  # the run's training data set
other = cfg["analysis_dataset"] != cfg["dataset"]
ana = load_dataset(snakemake.input.analysis_data, mmap_mode="r") if other else ds
split = np.load(ckpt_dir / "split.npz")
splits, sources = plan_splits(
    cfg["splits"],
    ds,
    ana,
    split,
    dataset=cfg["dataset"],
    analysis_dataset=cfg["analysis_dataset"],
    run=snakemake.wildcards.run,
)
# a table's inputs as the train job encoded them: refitted on the same training rows
encoder = fold_encoder(ds.meta, ds.x_train, split["train_idx"])  # None for every other data set
ckpts = list_checkpoints(ckpt_dir)
if not ckpts:
    raise FileNotFoundError(f"{ckpt_dir}: no checkpoint to dump")
# Built beside the output and renamed into place when complete (a killed job leaves no partial
# output that a later run could trust).
final, out = out, fresh_partial_dir(out)
splits = subsample_splits(splits, sources, cfg["max_samples"])
dump_checkpoints(ckpts, splits, out, cfg, encoder=encoder)
atomic_write_json(
    out / "sources.json",
    {
        "dataset": cfg["dataset"],
        "analysis_dataset": cfg["analysis_dataset"],
        "splits": sources,
        "epochs": list(ckpts),
    },
)
replace_dir(out, final)
