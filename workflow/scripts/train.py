"""Rule `train`: one training run of the run table.

Loads the data set and the fold assignment, trains on the k-1 training folds (labels relabelled
by the configured noise fraction), evaluates on the held-out fold and the official test split
every epoch, and writes checkpoints at the configured epochs plus ``metrics.csv`` (by
mfoml.nets.training), then ``split.npz`` (train/held-out indices, the labels actually trained on, the
relabelled mask), ``run.json`` (run settings, probe layers, penultimate layer) and
``request.json`` (the job's params and code version). All of it is written into
``.checkpoints.partial`` beside the output and renamed onto the output directory only when
complete; a killed run resumes from the last complete checkpoint there.

Transfer learning (``transfer`` in the sweep): the weights of the source run's checkpoint are
copied into the new model except the head (re-initialized for the new classes), and the
parameters of the first ``freeze`` stages are frozen (``requires_grad = False``; the training
loop also holds their BatchNorm layers in eval mode, so their running statistics stay fixed).
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mfoml.data.folds import load_folds, split_indices  # noqa: E402
from mfoml.data.noise import flip_labels  # noqa: E402
from mfoml.data.store import load_dataset  # noqa: E402
from mfoml.io import (  # noqa: E402
    atomic_save_npz,
    atomic_write_json,
    atomic_write_text,
    partial_dir,
    replace_dir,
)
from mfoml.logs import log_device_environment, setup_logging  # noqa: E402
from mfoml.nets.checkpoints import list_checkpoints, load_checkpoint  # noqa: E402
from mfoml.nets.models import build_model  # noqa: E402
from mfoml.nets.training import TrainConfig, train  # noqa: E402

log = setup_logging(snakemake.log[0], "train")
log_device_environment(log)
cfg = json.loads(snakemake.params.cfg)
run_id = cfg["run"]
out_dir = Path(snakemake.output[0])
torch.set_num_threads(max(1, int(snakemake.threads)))
log.info("run %s: %s", run_id, json.dumps(cfg, sort_keys=True))

# Crash safety: everything is written into a partial directory beside the output and moved into
# place only when complete, so a killed job never leaves a half-written output that a later run
# (after `rm -rf .snakemake`, say) would trust. A rerun of the same request resumes from the
# last complete checkpoint there; a changed request (other params, other code) starts afresh.
work = partial_dir(out_dir)
request = json.dumps({"params": cfg, "code": snakemake.params.code}, sort_keys=True)
stamp = work / "request.json"
if work.exists() and (not stamp.is_file() or stamp.read_text() != request):
    log.info("discarding %s (left by a run of another request)", work)
    shutil.rmtree(work)
work.mkdir(parents=True, exist_ok=True)
atomic_write_text(stamp, request)

ds = load_dataset(snakemake.input.data)
if ds.meta["task"] != "classification":
    raise ValueError(
        f"run {run_id}: data set {cfg['dataset']!r} is a {ds.meta['task']} task; the "
        "network track needs a classification data set"
    )
n_classes = int(ds.meta["n_classes"])
folds = load_folds(snakemake.input.folds)
train_idx, heldout_idx = split_indices(folds, int(cfg["fold"]))
x_train = np.asarray(ds.x_train[train_idx], dtype=np.float32)
y_clean = np.asarray(ds.y_train[train_idx], dtype=np.int64)
y_used, changed = y_clean.copy(), np.zeros(len(y_clean), dtype=bool)
if cfg["noise"] > 0:
    y_used, changed = flip_labels(y_clean, cfg["noise"], n_classes, seed=int(cfg["seed"]))
    log.info(
        "label noise %.3f: %d of %d training labels relabelled",
        cfg["noise"],
        changed.sum(),
        len(y_used),
    )

spec = dict(cfg["model"])
arch = spec.pop("arch")
model = build_model(
    arch,
    tuple(ds.meta["input_shape"]),
    n_classes,
    activation=cfg["activation"],
    seed=int(cfg["seed"]),
    **spec,
)

frozen: list[str] = []
transfer = cfg.get("transfer")
if transfer:
    ckpts = list_checkpoints(snakemake.input.source)
    if not ckpts:
        raise FileNotFoundError(f"{snakemake.input.source}: the source run has no checkpoint")
    epoch = transfer.get("source_epoch")
    epoch = max(ckpts) if epoch is None else int(epoch)
    if epoch not in ckpts:
        raise FileNotFoundError(
            f"{snakemake.input.source}: no checkpoint of epoch {epoch} (have {sorted(ckpts)})"
        )
    source_model, _ = load_checkpoint(ckpts[epoch])
    head = model.probe_layers[-1]
    src_state = source_model.state_dict()
    state = model.state_dict()
    copied = []
    for key, value in src_state.items():
        if key.startswith(f"stages.{head}."):
            continue
        if key not in state or state[key].shape != value.shape:
            raise ValueError(
                f"run {run_id}: source run {transfer['source_run']!r} is not compatible "
                f"(parameter {key!r}: {tuple(value.shape)} vs "
                f"{tuple(state[key].shape) if key in state else 'missing'})"
            )
        state[key] = value
        copied.append(key)
    model.load_state_dict(state)
    stages = [name for name in model.probe_layers if name not in ("input", head)]
    n_freeze = int(transfer.get("freeze", 0))
    if n_freeze > len(stages):
        raise ValueError(
            f"run {run_id}: transfer.freeze = {n_freeze} but the model has only "
            f"{len(stages)} stages before the head ({stages})"
        )
    for name in stages[:n_freeze]:
        for p in model.stages[name].parameters():
            p.requires_grad_(False)
        frozen.append(name)
    log.info(
        "transfer from %s epoch %d: %d tensors copied, head re-initialized, frozen stages %s",
        transfer["source_run"],
        epoch,
        len(copied),
        frozen,
    )

extra_loss = None
loss = cfg["loss"]
if loss.get("type", "ce") == "svsl":
    # only SVSL runs execute (and rerun for) mfoml.nets.losses
    from mfoml.nets.losses import SVSLLoss

    inner = [name for name in model.probe_layers if name not in ("input", "logits")]
    gamma = int(loss["gamma"])
    layers = inner[gamma - 1 :]
    if not layers:
        raise ValueError(
            f"run {run_id}: SVSL gamma = {gamma} leaves no layer (inner layers: {inner})"
        )
    extra_loss = SVSLLoss(
        layers, float(loss["lam"]), n_classes=n_classes, batched=bool(loss["batched"])
    )
    log.info("SVSL on layers %s, lambda %g, batched %s", layers, loss["lam"], loss["batched"])

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
)
evals = {
    "heldout": (ds.x_train[heldout_idx], ds.y_train[heldout_idx]),
    "test": (ds.x_test, ds.y_test) if ds.x_test is not None else None,
}
metrics = train(model, x_train, y_used, tc, work, evals=evals, extra_loss=extra_loss, resume=True)

atomic_save_npz(
    work / "split.npz",
    train_idx=np.asarray(train_idx, dtype=np.int64),
    heldout_idx=np.asarray(heldout_idx, dtype=np.int64),
    y_train=y_used,
    y_train_clean=y_clean,
    relabelled=changed,
)
atomic_write_json(
    work / "run.json",
    {
        **cfg,
        "n_classes": n_classes,
        "input_shape": list(ds.meta["input_shape"]),
        "probe_layers": list(model.probe_layers),
        "penultimate_layer": model.penultimate_layer,
        "frozen_stages": frozen,
        "n_relabelled": int(changed.sum()),
    },
)
replace_dir(work, out_dir)  # request.json stays: the request this output answers
last = metrics.iloc[-1].to_dict()
log.info("finished %s: %s", run_id, {k: round(float(v), 4) for k, v in last.items()})
