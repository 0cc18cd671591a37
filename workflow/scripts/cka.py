"""Rule `cka`: linear CKA with the unbiased HSIC estimator (mfoml.similarity) within one run:
layer x layer at each checkpoint and each layer across checkpoints, on the seeded stratified
subsample of the ``similarity.split`` dump (``max_samples``, ``seed``).

Output ``cka.csv`` (mfoml.similarity.tables.CKA_COLUMNS): ``kind`` (``layers`` or
``checkpoints``), ``epoch_a, layer_a, layer_index_a, epoch_b, layer_b, layer_index_b,
n_samples, cka``.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from mfoml.io import atomic_write_csv  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.dumps import dump_epochs, open_activations  # noqa: E402
from mfoml.similarity.tables import run_cka_table  # noqa: E402

log = setup_logging(snakemake.log[0], "cka")
cfg = json.loads(snakemake.params.cfg)
act_dir = Path(snakemake.input.activations)
epochs = dump_epochs(act_dir)
dumps = {e: open_activations(act_dir / str(e) / cfg["split"]) for e in epochs}
table = run_cka_table(
    dumps,
    layers=cfg["layers"],
    max_samples=cfg["max_samples"],
    seed=int(cfg["seed"]),
    across_layers=bool(cfg["across_layers"]),
    across_checkpoints=bool(cfg["across_checkpoints"]),
)
atomic_write_csv(snakemake.output[0], table)
log.info("%d epochs, %d CKA values", len(epochs), len(table))
