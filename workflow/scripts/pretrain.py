"""Rule `pretrain`: one masked-language-model pretraining stage (config `pretrain`).

Builds the stage's arch-transformer model (vocabulary and special ids from the data set's
tokenizer, the stage's activation and seed), trains it with mfoml.nets.pretrain.pretrain_mlm on
the token ids of the data set's training split (labels unused; the test split gives the
per-epoch test MLM loss and accuracy), and writes results/pretrain/{stage}/checkpoints:
``epoch_{e:04d}.pt`` for the configured epochs and the last, ``metrics.csv``, and
``stage.json`` (the settings, the data set and its tokenizer's sha256, which the runs starting
from the stage check against their own data set, and the measured tokens per second).
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
from mfoml.nets.architectures import build_model, text_model_kwargs  # noqa: E402
from mfoml.nets.pretrain import MLMConfig, pretrain_mlm  # noqa: E402

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
if ds.meta.get("kind") != "text":
    raise ValueError(f"stage {cfg['stage']}: data set {cfg['dataset']!r} is not a text data set")
tok = ds.meta["tokenizer"]
spec = dict(cfg["model_spec"])
arch = spec.pop("arch")
spec.update(text_model_kwargs(arch, tok))
model = build_model(
    arch,
    tuple(ds.meta["input_shape"]),
    int(ds.meta["n_classes"] or 2),  # the classifier is not trained here
    activation=cfg["activation"],
    seed=int(cfg["seed"]),
    **spec,
)
mc = MLMConfig(
    epochs=int(cfg["epochs"]),
    batch_size=int(cfg["batch_size"]),
    lr=float(cfg["lr"]),
    weight_decay=float(cfg["weight_decay"]),
    warmup_fraction=float(cfg["warmup_fraction"]),
    mask_prob=float(cfg["mask_prob"]),
    grad_clip=None if cfg["grad_clip"] is None else float(cfg["grad_clip"]),
    seed=int(cfg["seed"]),
    checkpoint_epochs=[int(e) for e in cfg["checkpoints"]],
    device=cfg["device"],
)
metrics = pretrain_mlm(
    model,
    ds.x_train,
    mc,
    work,
    special_ids=tok["special_ids"],
    ids_test=ds.x_test,
)
tokens = int(metrics["tokens"].sum()) if len(metrics) else 0
seconds = float((metrics["tokens"] / metrics["tokens_per_second"]).sum()) if len(metrics) else 0.0
atomic_write_json(
    work / "stage.json",
    {
        **cfg,
        "tokenizer_sha256": tok["sha256"],
        "vocab_size": int(tok["vocab_size"]),
        "n_sequences": int(len(ds.x_train)),
        "train_tokens": tokens,
        "train_tokens_per_second": tokens / seconds if seconds > 0 else None,
    },
)
replace_dir(work, out_dir)
if len(metrics):
    last = metrics.iloc[-1].to_dict()
    log.info(
        "finished stage %s: %s", cfg["stage"], {k: round(float(v), 4) for k, v in last.items()}
    )
