"""Rule `ncc`: NCC mismatch/accuracy and neural-collapse metrics NC1-NC4 per layer and
checkpoint (mfoml.collapse.table.layer_table); class means from the train dump, "test" from
``ncc.test_split``; the classifier weight (NC3) is stored in the dump, so this job needs no torch.
With ``ncc.geometry`` (default) the class-geometry columns of the train split
(mfoml.collapse.geometry_table: CDNV, trace ratio, ETF and self-duality errors, effective rank)
are added. Optional W&B tracking (config ``tracking``, read here so that it never reruns a job)
logs the table.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
from mfoml.collapse.geometry_table import geometry_table  # noqa: E402
from mfoml.collapse.table import layer_table  # noqa: E402
from mfoml.io import atomic_write_csv  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.dumps import dump_epochs, open_activations  # noqa: E402
from mfoml.tracking import tracker_from_config  # noqa: E402

log = setup_logging(snakemake.log[0], "ncc")
cfg = json.loads(snakemake.params.cfg)
act_dir = Path(snakemake.input.activations)
epochs = dump_epochs(act_dir)
frames = []
for epoch in epochs:
    train_dump = open_activations(act_dir / str(epoch) / "train")
    test_dump = open_activations(act_dir / str(epoch) / cfg["test_split"])
    table = layer_table(
        train_dump,
        test_dump,
        classifier_weight=train_dump.classifier_weight(),
        penultimate_layer=train_dump.penultimate_layer,
        n_classes=train_dump.n_classes,
        layers=None if cfg["layers"] == "all" else cfg["layers"],
        chunk_size=int(cfg["chunk_size"]),
    )
    if cfg["geometry"]:
        geo = geometry_table(
            train_dump,
            layers=list(table["layer"]),
            n_classes=train_dump.n_classes,
            classifier_weight=train_dump.classifier_weight(),
            penultimate_layer=train_dump.penultimate_layer,
            chunk_size=int(cfg["chunk_size"]),
            max_dim=int(cfg["erank_max_dim"]),
        )
        table = table.merge(geo, on="layer", how="left", validate="one_to_one")
    table.insert(0, "epoch", epoch)
    table["test_split"] = cfg["test_split"]
    frames.append(table)
    log.info("epoch %d: %d layers", epoch, len(table))
result = pd.concat(frames, ignore_index=True)
atomic_write_csv(snakemake.output[0], result)
with tracker_from_config(
    snakemake.config.get("tracking"),
    name=snakemake.wildcards.run,
    group=snakemake.config.get("name"),
    job_type="ncc",
    config=cfg,
    default_dir="logs/wandb",
) as tracker:
    tracker.log_table("ncc_layers", result)
