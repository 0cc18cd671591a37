"""Rule `train`: one training run of the run table.

Loads the data set and the fold assignment, trains on the k-1 training folds (labels relabelled
by the configured noise fraction), evaluates on the held-out fold and the official test split
every epoch (fold ``full``: trains on the whole training split, no held-out fold, ``heldout_*``
metrics NaN), and writes checkpoints at the configured epochs plus ``metrics.csv`` (by
mfoml.nets.training), then ``split.npz`` (train/held-out indices, the labels actually trained on, the
relabelled mask), ``run.json`` (run settings, probe layers, penultimate layer) and
``request.json`` (the job's params and code version). All of it is written into
``.checkpoints.partial`` beside the output and renamed onto the output directory only when
complete; a killed run resumes from the last complete checkpoint there.

Training on a subset (``train.subset``: a stratified, seeded subset of the training folds, also
what ``split.npz`` records), full-batch gradient descent (``train.full_batch``: one batch per
epoch) and the sharpness tracked every ``train.sharpness_every`` epochs (top Hessian eigenvalue
of the training loss, mfoml.dynamics.sharpness; columns ``sharpness`` and
``stability_threshold`` = 2/lr for plain gradient descent, 2(1 + momentum)/lr with heavy-ball
momentum, NaN for Adam) make the edge-of-stability study (Cohen et al. 2021). Optional W&B
tracking (``tracking`` in the config, read here so that it never reruns a job) logs each
epoch's row.

Transfer learning (``transfer`` in the sweep): the weights of the source run's checkpoint are
copied into the new model except the head (re-initialized for the new classes), and the
parameters of the first ``freeze`` stages are frozen (``requires_grad = False``; the training
loop also holds their BatchNorm layers in eval mode, so their running statistics stay fixed).

Networks from outside the closed list (``arch: torchvision``, ``arch: module``) load their
``weights`` in the builder (mfoml.nets.tvmodels, mfoml.nets.usermodule); a builder error names
the model's own keys (``models.<name>.layers``). ``train.epochs: 0`` trains nothing: the loaded
weights are checkpoint 0 and ``metrics.csv`` holds their evaluation (train, held-out, test
split) as the row of epoch 0.

A table with categorical columns or missing values (``table`` source, OpenML) reaches the
network one-hot encoded and imputed, fitted on the run's training rows only
(mfoml.tabular.netinput); ``run.json``'s ``input_shape`` is then the encoded width.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mfoml.data.folds import load_folds, split_indices  # noqa: E402
from mfoml.data.noise import flip_labels  # noqa: E402
from mfoml.data.store import load_dataset  # noqa: E402
from mfoml.data.subsample import stratified_subsample  # noqa: E402
from mfoml.io import (  # noqa: E402
    atomic_save_npz,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    partial_dir,
    replace_dir,
)
from mfoml.logs import log_device_environment, setup_logging  # noqa: E402
from mfoml.nets.architectures import build_model, text_model_kwargs  # noqa: E402
from mfoml.nets.checkpoints import list_checkpoints, load_checkpoint  # noqa: E402
from mfoml.nets.training import METRIC_COLUMNS, TrainConfig, evaluate, train  # noqa: E402
from mfoml.tabular.netinput import fold_encoder  # noqa: E402
from mfoml.tracking import tracker_from_config  # noqa: E402

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
if cfg["fold"] == "full":
    # one run on the whole training split, evaluated on the official test split
    if ds.x_test is None:
        raise ValueError(
            f"run {run_id}: sweep folds 'full' needs a data set with an official test split; "
            f"{cfg['dataset']!r} has none (use fold indices instead)"
        )
    train_idx = np.arange(len(ds.y_train), dtype=np.int64)
    heldout_idx = np.zeros(0, dtype=np.int64)
    log.info("fold 'full': training on all %d training samples, no held-out fold", len(train_idx))
else:
    folds = load_folds(snakemake.input.folds)
    train_idx, heldout_idx = split_indices(folds, int(cfg["fold"]))
t = cfg["train"]
if t.get("subset") is not None and int(t["subset"]) < len(train_idx):
    keep = stratified_subsample(np.asarray(ds.y_train)[train_idx], int(t["subset"]), seed=0)
    train_idx = np.asarray(train_idx)[keep]
    log.info("training on a stratified subset of %d samples (train.subset)", len(train_idx))
# a table's categories one-hot, its missing values imputed: fitted on the training rows only
# (mfoml.tabular.netinput; the activations job refits the same transform from split.npz)
encoder = fold_encoder(ds.meta, ds.x_train, train_idx)
input_shape = [encoder.n_features_out_] if encoder is not None else list(ds.meta["input_shape"])
# token ids (text sets) stay integers; everything else is float32
x_dtype = np.int64 if np.issubdtype(ds.x_train.dtype, np.integer) else np.float32
x_rows = ds.x_train[train_idx] if encoder is None else encoder(ds.x_train[train_idx])
x_train = np.asarray(x_rows, dtype=x_dtype)
if x_dtype == np.float32 and np.isnan(x_train).any():
    raise ValueError(f"run {run_id}: data set {cfg['dataset']!r} has missing values (NaN)")
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
if ds.meta.get("kind") == "text":  # vocabulary and special ids come from the data set
    spec.update(text_model_kwargs(arch, ds.meta["tokenizer"]))
try:
    model = build_model(
        arch,
        tuple(input_shape),
        n_classes,
        activation=cfg["activation"],
        seed=int(cfg["seed"]),
        **spec,
    )
except ValueError as exc:  # name the model's own keys (models.<name>.*)
    raise ValueError(
        f"run {run_id}: " + str(exc).replace("models.*", f"models.{run_id.split('/')[1]}")
    ) from exc
if spec.get("weights"):
    log.info("model %s starts from weights %s", arch, spec["weights"])

frozen: list[str] = []
pretrained = cfg.get("pretrained")
if pretrained:
    # only runs starting from an MLM stage execute (and rerun for) mfoml.nets.pretrain
    from mfoml.io import read_json
    from mfoml.nets.pretrain import init_from_pretrained

    stage_dir = Path(snakemake.input.pretrained)
    stage = read_json(stage_dir / "stage.json")
    if stage["tokenizer_sha256"] != ds.meta["tokenizer"]["sha256"]:
        raise ValueError(
            f"run {run_id}: data set {cfg['dataset']!r} was not tokenized with the tokenizer of "
            f"pretraining stage {pretrained['stage']!r} (data set {stage['dataset']!r}); give "
            f"it text.tokenizer_from: {stage['dataset']}"
        )
    ckpts = list_checkpoints(stage_dir)
    epoch = pretrained.get("epoch")
    epoch = max(ckpts) if epoch is None else int(epoch)
    if epoch not in ckpts:
        raise FileNotFoundError(f"{stage_dir}: no checkpoint of epoch {epoch} ({sorted(ckpts)})")
    source_model, _ = load_checkpoint(ckpts[epoch])
    copied, frozen = init_from_pretrained(
        model, source_model.state_dict(), freeze=bool(pretrained["freeze"])
    )
    log.info(
        "encoder from MLM stage %s epoch %d: %d tensors copied, %d parameters frozen",
        pretrained["stage"],
        epoch,
        len(copied),
        len(frozen),
    )

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
    stages = [name for name in model.stages if name != head]  # also with pre-activation probes
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

full_batch = bool(t.get("full_batch", False))
tc = TrainConfig(
    epochs=int(t["epochs"]),
    batch_size=max(2, len(train_idx)) if full_batch else int(t["batch_size"]),
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
evals = {
    # no held-out fold for a 'full' run: its heldout_* metrics are NaN (not evaluated)
    "heldout": (ds.x_train[heldout_idx], ds.y_train[heldout_idx]) if len(heldout_idx) else None,
    "test": (ds.x_test, ds.y_test) if ds.x_test is not None else None,
}
if encoder is not None:
    evals = {k: None if v is None else (encoder(v[0]), v[1]) for k, v in evals.items()}

every = int(t.get("sharpness_every", 0) or 0)
if every:
    # only runs that track the sharpness execute (and rerun for) mfoml.dynamics.sharpness
    from mfoml.dynamics.sharpness import sharpness

    if full_batch:  # the loss gradient descent descends: one batch, BatchNorm in training mode
        sharp_x, sharp_y, sharp_batch, sharp_mode = x_train, y_used, None, "train"
    else:
        keep = stratified_subsample(y_used, t.get("sharpness_samples"), seed=0)
        sharp_x, sharp_y, sharp_batch, sharp_mode = x_train[keep], y_used[keep], 512, "eval"
    if tc.optimizer == "sgd":
        beta = tc.momentum
        threshold_factor = (2 + 2 * beta) / (1 + 2 * beta) if tc.nesterov else 2 + 2 * beta
    else:
        threshold_factor = math.nan
    log.info(
        "sharpness every %d epochs on %d samples (BatchNorm in %s mode)",
        every,
        len(sharp_y),
        sharp_mode,
    )
tracker = tracker_from_config(
    snakemake.config.get("tracking"),
    name=run_id,
    group=snakemake.config.get("name"),
    job_type="train",
    config=cfg,
    default_dir="logs/wandb",
)


def on_epoch(net, row):
    extra = {}
    if every:
        sharp = math.nan
        if row["epoch"] % every == 0 or row["epoch"] == tc.epochs:
            res = sharpness(
                net,
                sharp_x,
                sharp_y,
                subset_size=None,
                n_iter=int(t.get("sharpness_iters", 20)),
                trace_samples=0,
                batch_size=sharp_batch,
                mode=sharp_mode,
                seed=int(cfg["seed"]),
            )
            sharp = res["top_eigenvalue"]
        extra = {"sharpness": sharp, "stability_threshold": threshold_factor / row["lr"]}
    tracker.log_metrics({**row, **extra}, step=int(row["epoch"]))
    return extra


with tracker:
    metrics = train(
        model,
        x_train,
        y_used,
        tc,
        work,
        evals=evals,
        extra_loss=extra_loss,
        epoch_callback=on_epoch,
        resume=True,
        eval_train=True,  # train_eval_acc: the interpolation threshold (METHODS section 11)
        keep_best=t.get("keep_best"),  # also the best held-out epoch's checkpoint
    )
if tc.epochs == 0:
    # analysis without training: the loaded weights are checkpoint 0; metrics.csv holds their
    # evaluation as the row of epoch 0 (no optimizer step: gradient norms NaN, 0 s of training)
    import pandas as pd

    t0 = time.perf_counter()
    row = {"epoch": 0}
    for split, data in {"train": (x_train, y_used), **evals}.items():
        if data is None:
            row[f"{split}_loss"], row[f"{split}_acc"] = math.nan, math.nan
            continue
        row[f"{split}_loss"], row[f"{split}_acc"] = evaluate(
            model, data[0], data[1], batch_size=tc.eval_batch_size, device=tc.device
        )
    row["train_eval_loss"], row["train_eval_acc"] = row["train_loss"], row["train_acc"]
    row |= {"train_seconds": 0.0, "grad_norm_mean": math.nan, "grad_norm_max": math.nan}
    row |= {"n_parameters": int(sum(p.numel() for p in model.parameters())), "lr": tc.lr}
    row["seconds"] = time.perf_counter() - t0
    extra = ["train_eval_loss", "train_eval_acc", "train_seconds"]
    metrics = pd.DataFrame([row])[[*METRIC_COLUMNS[:-2], *extra, *METRIC_COLUMNS[-2:]]]
    atomic_write_csv(work / "metrics.csv", metrics)
    log.info("0 epochs: the given weights evaluated as epoch 0: %s", row)

speed = {}
if ds.meta.get("kind") == "text":  # training throughput in real (non-padding) tokens
    pad = int(ds.meta["tokenizer"]["special_ids"]["pad"])
    tokens = int((x_train != pad).sum()) * len(metrics)
    seconds = float(metrics["train_seconds"].sum()) if len(metrics) else 0.0
    speed = {"train_tokens": tokens, "train_seconds": seconds}
    speed["train_tokens_per_second"] = tokens / seconds if seconds > 0 else None
    log.info(
        "training throughput: %s tokens in %.1f s (%s tokens/s)",
        tokens,
        seconds,
        None if not seconds else round(tokens / seconds),
    )

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
        "input_shape": input_shape,
        "probe_layers": list(model.probe_layers),
        "penultimate_layer": model.penultimate_layer,
        "frozen_stages": frozen,
        "n_relabelled": int(changed.sum()),
        **speed,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "n_train": int(len(train_idx)),
    },
)
replace_dir(work, out_dir)  # request.json stays: the request this output answers
if len(metrics):
    last = metrics.iloc[-1].to_dict()
    log.info("finished %s: %s", run_id, {k: round(float(v), 4) for k, v in last.items()})
else:  # train.epochs 0: the loaded weights, analysed as checkpoint 0
    log.info("finished %s: 0 epochs, the loaded weights are checkpoint 0", run_id)
