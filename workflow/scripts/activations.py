"""Rule `activations`: dump every probe layer for each checkpoint and configured split.

Output: ``results/runs/{run}/activations/{epoch}/{split}/`` (mfoml.nets.activations format) plus
``sources.json`` describing where each split's samples come from.

Splits are named for what they are:

- ``train``: always the run's own training samples (its k-1 training folds, or the whole
  training split for a ``full`` run) with the labels it was trained on (relabelled under label
  noise; the true labels go to ``labels_true.npy`` for the NCC class means);
- ``heldout``: its held-out fold (skipped, and recorded so in ``sources.json``, for a ``full``
  run, which has none);
- ``test``: the official test split (the held-out fold when the data set has none); with an
  ``analysis_dataset``, that data set's test split;
- ``analysis`` (only with an ``analysis_dataset`` other than the training data set, e.g. the
  full CIFAR100 for a model trained on a 50-per-class subset): the analysis data set's training
  split with its true labels. Most of these samples were never trained on, so they are not
  called ``train``.

Every label set of the data set goes into the dumps (``labels_{set}.npy`` beside ``labels.npy``,
e.g. CIFAR-100's ``coarse`` labels beside the ``fine`` ones). A self-supervised encoder has no
classifier: its dumps store no predictions (mfoml.nets.activations). A table's inputs are
encoded as the train job encoded them (mfoml.tabular.netinput, refitted on the training rows of
``split.npz``), so the ``input`` layer holds the one-hot, imputed columns.
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
from mfoml.data.subsample import stratified_subsample  # noqa: E402
from mfoml.io import atomic_write_json, fresh_partial_dir, replace_dir  # noqa: E402
from mfoml.logs import log_device_environment, setup_logging  # noqa: E402
from mfoml.nets.activations import dump_activations  # noqa: E402
from mfoml.nets.checkpoints import list_checkpoints, load_checkpoint  # noqa: E402
from mfoml.tabular.netinput import fold_encoder  # noqa: E402

log = setup_logging(snakemake.log[0], "activations")
log_device_environment(log)
cfg = json.loads(snakemake.params.cfg)
torch.set_num_threads(max(1, int(snakemake.threads)))
run = snakemake.wildcards.run
out = Path(snakemake.output[0])
ckpt_dir = Path(snakemake.input.checkpoints)
ds = load_dataset(snakemake.input.data, mmap_mode="r")  # the run's training data set
other = cfg["analysis_dataset"] != cfg["dataset"]
ana = load_dataset(snakemake.input.analysis_data, mmap_mode="r") if other else ds

# name -> (dataset, indices, labels, "x_train"/"x_test", true labels or None)
splits: dict[str, tuple] = {}
sources: dict[str, dict] = {}
sp = np.load(ckpt_dir / "split.npz")
train_idx, heldout_idx = sp["train_idx"], sp["heldout_idx"]
own = {"dataset": cfg["dataset"]}
for name in cfg["splits"]:
    if name == "train":
        splits[name] = (ds, train_idx, sp["y_train"], "x_train", sp["y_train_clean"])
        sources[name] = {
            **own,
            "data": "train",
            "indices": "the run's training samples",
            "labels": "as trained (true labels in labels_true.npy)",
        }
    elif name == "heldout" and len(heldout_idx) == 0:
        log.info("no held-out fold (the run trained on the whole training split): not dumped")
        sources[name] = {**own, "skipped": "no held-out fold: trained on the whole training split"}
    elif name == "heldout" or (ana.x_test is None and not other):
        splits[name] = (ds, heldout_idx, np.asarray(ds.y_train)[heldout_idx], "x_train", None)
        sources[name] = {**own, "data": "train", "indices": "held-out fold", "labels": "true"}
    elif ana.x_test is None:
        raise ValueError(
            f"run {run}: analysis data set {cfg['analysis_dataset']!r} has no test split"
        )
    else:
        splits[name] = (ana, np.arange(len(ana.y_test)), np.asarray(ana.y_test), "x_test", None)
        sources[name] = {
            "dataset": cfg["analysis_dataset"],
            "data": "test",
            "indices": "all",
            "labels": "true",
        }
if other:
    y_ana = np.asarray(ana.y_train)
    splits["analysis"] = (ana, np.arange(len(y_ana)), y_ana, "x_train", None)
    sources["analysis"] = {
        "dataset": cfg["analysis_dataset"],
        "data": "train",
        "indices": "all (mostly samples the run never trained on)",
        "labels": "true",
    }

# a table's inputs as the train job encoded them: refitted on the same training rows
encoder = fold_encoder(ds.meta, ds.x_train, train_idx)  # None for every other data set
ckpts = list_checkpoints(ckpt_dir)
if not ckpts:
    raise FileNotFoundError(f"{ckpt_dir}: no checkpoint to dump")
# Built beside the output and renamed into place when complete (a killed job leaves no partial
# output that a later run could trust).
final, out = out, fresh_partial_dir(out)
for name, (data, idx, y, which, y_true) in splits.items():
    keep = stratified_subsample(np.asarray(y), cfg["max_samples"], seed=0)
    y_true = None if y_true is None else np.asarray(y_true)[keep]
    splits[name] = (data, np.asarray(idx)[keep], np.asarray(y)[keep], which, y_true)
    sources[name]["n_samples"] = int(len(keep))
for epoch, path in ckpts.items():
    model, _ = load_checkpoint(path)
    for name, (data, idx, y, which, y_true) in splits.items():
        x = getattr(data, which)
        # token ids (text sets) stay integers
        x_sel = np.asarray(
            x[idx], dtype=np.int64 if np.issubdtype(x.dtype, np.integer) else np.float32
        )
        if encoder is not None:
            x_sel = encoder(x_sel)
        # further label sets of the same samples (e.g. CIFAR-100's coarse labels)
        extra = {
            s: np.asarray(pair[0 if which == "x_train" else 1])[idx]
            for s, pair in getattr(data, "extra_labels", {}).items()
        }
        manifest = dump_activations(
            model,
            x_sel,
            np.asarray(y, dtype=np.int64),
            out / str(epoch) / name,
            max_features=cfg["max_features"],
            batch_size=int(cfg["batch_size"]),
            device=cfg["device"],
            split=name,
            epoch=epoch,
            checkpoint=path,
            true_labels=None if y_true is None else np.asarray(y_true, dtype=np.int64),
            label_set=getattr(data, "label_set", "class"),
            label_sets=extra,
        )
        log.info(
            "epoch %d split %s: %d samples, %d layers",
            epoch,
            name,
            manifest["n_samples"],
            len(manifest["layers"]),
        )
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
