"""Rule `intrinsic_dim`: the TwoNN intrinsic dimension (mfoml.similarity.intrinsic) of every
layer at every checkpoint, on the seeded stratified subsample of the ``intrinsic_dim.split``
dump (``max_samples``, ``seed``; mfoml.data.subsample, as the probe draws its samples).

Output ``intrinsic_dim.csv``: one row per epoch and layer with ``layer_index, dim, n_samples,
intrinsic_dim, intrinsic_dim_n_used, intrinsic_dim_duplicates, intrinsic_dim_status``; the
aggregate rule merges it into results/tables/layers.csv.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mfoml.data.subsample import stratified_subsample  # noqa: E402
from mfoml.io import atomic_write_csv  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.dumps import dump_epochs, open_activations  # noqa: E402
from mfoml.similarity.intrinsic import twonn_dimension  # noqa: E402

log = setup_logging(snakemake.log[0], "intrinsic_dim")
cfg = json.loads(snakemake.params.cfg)
act_dir = Path(snakemake.input.activations)
epochs = dump_epochs(act_dir)
rows = []
for epoch in epochs:
    dump = open_activations(act_dir / str(epoch) / cfg["split"])
    layers = dump.layers if cfg["layers"] == "all" else cfg["layers"]
    missing = [la for la in layers if la not in dump.layers]
    if missing:
        raise KeyError(
            f"config key 'intrinsic_dim.layers': {missing} not in the dump {dump.path} "
            f"(layers: {dump.layers})"
        )
    idx = stratified_subsample(np.asarray(dump.labels), cfg["max_samples"], seed=int(cfg["seed"]))
    for name in layers:
        entry = dump.entry(name)
        x = dump.layer(name)
        res = twonn_dimension(x if len(idx) == len(x) else x[idx], discard=float(cfg["discard"]))
        rows.append(
            {
                "epoch": epoch,
                "layer": name,
                "layer_index": int(entry["index"]),
                "dim": int(entry["dim"]),
                "n_samples": res.n_samples,
                "intrinsic_dim": res.dimension,
                "intrinsic_dim_n_used": res.n_used,
                "intrinsic_dim_duplicates": res.n_duplicates,
                "intrinsic_dim_status": res.status,
            }
        )
        log.info(
            "epoch %d %-10s TwoNN dimension %.2f (%d points, %d duplicates) %s",
            epoch,
            name,
            res.dimension,
            res.n_samples,
            res.n_duplicates,
            res.status,
        )
atomic_write_csv(snakemake.output[0], pd.DataFrame(rows))
