"""Rule `activations`: dump every probe layer for each checkpoint and configured split.

Output: ``results/runs/{run}/activations/{epoch}/{split}/`` (mfoml.nets.activations format) plus
``sources.json`` describing where each split's samples come from.

Splits: ``train`` = the run's training folds with the labels it was trained on (relabelled under
label noise; the true labels go to ``labels_true.npy`` for the NCC class means), ``heldout`` =
its held-out fold, ``test`` = the official test split (the held-out fold when the data set has
none). With ``analysis_dataset`` (a different data set, e.g. the full
CIFAR100 for a model trained on a small subset) ``train``/``test`` are that set's splits and
``heldout`` is its test split.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mfoml.data.store import load_dataset  # noqa: E402
from mfoml.data.subsample import stratified_subsample  # noqa: E402
from mfoml.io import atomic_write_json, partial_dir, replace_dir  # noqa: E402
from mfoml.logs import log_device_environment, setup_logging  # noqa: E402
from mfoml.nets.activations import dump_activations  # noqa: E402
from mfoml.nets.checkpoints import list_checkpoints, load_checkpoint  # noqa: E402

log = setup_logging(snakemake.log[0], "activations")
log_device_environment(log)
cfg = json.loads(snakemake.params.cfg)
torch.set_num_threads(max(1, int(snakemake.threads)))
run = snakemake.wildcards.run
out = Path(snakemake.output[0])
ckpt_dir = Path(snakemake.input.checkpoints)
ds = load_dataset(snakemake.input.data, mmap_mode="r")


splits: dict[str, tuple] = {}
sources: dict[str, dict] = {}
if cfg["own_folds"]:
    sp = np.load(ckpt_dir / "split.npz")
    train_idx, heldout_idx = sp["train_idx"], sp["heldout_idx"]
    for name in cfg["splits"]:
        if name == "train":
            splits[name] = (train_idx, sp["y_train"], "x_train", sp["y_train_clean"])
            sources[name] = {
                "data": "train",
                "indices": "training folds",
                "labels": "as trained (true labels in labels_true.npy)",
            }
        elif name == "heldout" or ds.x_test is None:
            splits[name] = (heldout_idx, np.asarray(ds.y_train)[heldout_idx], "x_train", None)
            sources[name] = {"data": "train", "indices": "held-out fold", "labels": "true"}
        else:
            splits[name] = (np.arange(len(ds.y_test)), np.asarray(ds.y_test), "x_test", None)
            sources[name] = {"data": "test", "indices": "all", "labels": "true"}
else:
    if ds.x_test is None and set(cfg["splits"]) - {"train"}:
        raise ValueError(
            f"run {run}: analysis data set {cfg['analysis_dataset']!r} has no test split"
        )
    for name in cfg["splits"]:
        if name == "train":
            splits[name] = (np.arange(len(ds.y_train)), np.asarray(ds.y_train), "x_train", None)
            sources[name] = {"data": "train", "indices": "all", "labels": "true"}
        else:
            splits[name] = (np.arange(len(ds.y_test)), np.asarray(ds.y_test), "x_test", None)
            sources[name] = {"data": "test", "indices": "all", "labels": "true"}

ckpts = list_checkpoints(ckpt_dir)
if not ckpts:
    raise FileNotFoundError(f"{ckpt_dir}: no checkpoint to dump")
# Built beside the output and renamed into place when complete (a killed job leaves no partial
# output that a later run could trust).
final, out = out, partial_dir(out)
shutil.rmtree(out, ignore_errors=True)
out.mkdir(parents=True)
for name, (idx, y, which, y_true) in splits.items():
    keep = stratified_subsample(np.asarray(y), cfg["max_samples"], seed=0)
    y_true = None if y_true is None else np.asarray(y_true)[keep]
    splits[name] = (np.asarray(idx)[keep], np.asarray(y)[keep], which, y_true)
    sources[name]["n_samples"] = int(len(keep))
for epoch, path in ckpts.items():
    model, _ = load_checkpoint(path)
    for name, (idx, y, which, y_true) in splits.items():
        x = getattr(ds, which)
        x_sel = np.asarray(x[idx], dtype=np.float32)
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
    {"dataset": cfg["analysis_dataset"], "splits": sources, "epochs": list(ckpts)},
)
replace_dir(out, final)
