"""Rule `train_ssl`: one self-supervised training run (loss type simclr, vicreg, barlow, byol, dino).

Loads the data set and the fold assignment (none for a ``full`` run) and trains an SSL encoder (the configured backbone
without its head, plus the loss's projection head; mfoml.nets.ssl_model) on the inputs of the
k-1 training folds, without their labels: every mini-batch gives two augmented views (the
``ssl.augment`` section of the data set's kind, mfoml.nets.augment) and the objective
(mfoml.nets.ssl) is minimised by mfoml.nets.ssl_training, which writes the checkpoints at the
configured epochs and ``metrics.csv`` (the SSL loss and its terms per epoch). Then, as the
supervised `train` rule does, ``split.npz`` (train/held-out indices and their labels, for the
activation dumps) and ``run.json`` (run settings, probe layers, the representation layer).
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mfoml.data.folds import load_folds, split_indices  # noqa: E402
from mfoml.data.store import load_dataset  # noqa: E402
from mfoml.io import (  # noqa: E402
    atomic_save_npz,
    atomic_write_json,
    fresh_partial_dir,
    replace_dir,
)
from mfoml.logs import log_device_environment, setup_logging  # noqa: E402
from mfoml.nets.augment import make_augmenter  # noqa: E402
from mfoml.nets.ssl import build_objective, objective_spec  # noqa: E402
from mfoml.nets.ssl_model import build_ssl_model  # noqa: E402
from mfoml.nets.ssl_training import train_ssl  # noqa: E402
from mfoml.nets.trainconfig import TrainConfig  # noqa: E402

log = setup_logging(snakemake.log[0], "train_ssl")
log_device_environment(log)
cfg = json.loads(snakemake.params.cfg)
run_id = cfg["run"]
out_dir = Path(snakemake.output[0])
torch.set_num_threads(max(1, int(snakemake.threads)))
log.info("run %s: %s", run_id, json.dumps(cfg, sort_keys=True))
# Built in a partial directory beside the output, moved into place only when complete (as in
# rule train); self-supervised training does not resume, so one left by a killed job goes.
work = fresh_partial_dir(out_dir)

ds = load_dataset(snakemake.input.data)
kind = ds.meta.get("kind")
if kind not in cfg["ssl_augment"]:
    raise ValueError(
        f"run {run_id}: data set {cfg['dataset']!r} is of kind {kind!r}; self-supervised "
        f"training has augmentations for {sorted(cfg['ssl_augment'])} only"
    )
if cfg["fold"] == "full":  # the whole training split (no held-out fold), as rule train does
    if ds.x_test is None:
        raise ValueError(
            f"run {run_id}: sweep folds 'full' needs a data set with an official test split; "
            f"{cfg['dataset']!r} has none (use fold indices instead)"
        )
    train_idx = np.arange(len(ds.y_train), dtype=np.int64)
    heldout_idx = np.zeros(0, dtype=np.int64)
else:
    folds = load_folds(snakemake.input.folds)
    train_idx, heldout_idx = split_indices(folds, int(cfg["fold"]))
x_train = np.asarray(ds.x_train[train_idx], dtype=np.float32)

spec = dict(cfg["model"])
arch = spec.pop("arch")
backbone = {
    "arch": arch,
    "input_shape": list(ds.meta["input_shape"]),
    "n_classes": 1,  # the head is dropped
    "activation": cfg["activation"],
    **spec,
}
loss = cfg["loss"]
model = build_ssl_model(backbone, loss.get("projector"), seed=int(cfg["seed"]))
objective = build_objective(objective_spec(loss), model.out_dim, model, seed=int(cfg["seed"]))
augmenter = make_augmenter(kind, cfg["ssl_augment"][kind])
log.info(
    "%s on %d unlabelled samples; probe layers %s (representation %s); augment %s: %s",
    objective_spec(loss),
    len(x_train),
    model.probe_layers,
    model.representation_layer,
    kind,
    augmenter.params,
)

t = cfg["train"]
tc = TrainConfig(
    epochs=int(t["epochs"]),
    batch_size=int(t["batch_size"]),
    optimizer=t["optimizer"],
    lr=float(t["lr"]),
    momentum=float(t["momentum"]),
    nesterov=bool(t["nesterov"]),
    weight_decay=float(t["weight_decay"]),
    schedule=t["schedule"],
    step_size=int(t["step_size"]),
    gamma=float(t["gamma"]),
    milestones=[int(m) for m in t["milestones"]],
    seed=int(cfg["seed"]),
    checkpoint_epochs=[int(e) for e in t["checkpoints"]],
    device=cfg["device"],
    mixed_precision=bool(t["mixed_precision"]),
    eval_batch_size=int(t["eval_batch_size"]),
    warmup_fraction=float(t["warmup_fraction"]),
    grad_clip=None if t["grad_clip"] is None else float(t["grad_clip"]),
)
# the per-sample image pipeline is CPU bound: the job's other threads make the views
workers = max(0, int(snakemake.threads) - 1) if kind == "image" else 0
metrics = train_ssl(model, objective, augmenter, x_train, tc, work, workers=workers)

y_train = np.asarray(ds.y_train[train_idx], dtype=np.int64)
atomic_save_npz(
    work / "split.npz",
    train_idx=np.asarray(train_idx, dtype=np.int64),
    heldout_idx=np.asarray(heldout_idx, dtype=np.int64),
    y_train=y_train,
    y_train_clean=y_train,
    relabelled=np.zeros(len(y_train), dtype=bool),
)
atomic_write_json(
    work / "run.json",
    {
        **cfg,
        "self_supervised": True,
        "n_classes": int(ds.meta["n_classes"]),
        "label_sets": ds.label_set_classes(),
        "input_shape": list(ds.meta["input_shape"]),
        "probe_layers": list(model.probe_layers),
        "backbone_layers": model.backbone_layers,
        "penultimate_layer": model.representation_layer,
        "representation_layer": model.representation_layer,
        "frozen_stages": [],
        "n_relabelled": 0,
    },
)
replace_dir(work, out_dir)
if len(metrics):
    last = metrics.iloc[-1].to_dict()
    log.info("finished %s: %s", run_id, {k: round(float(v), 4) for k, v in last.items()})
