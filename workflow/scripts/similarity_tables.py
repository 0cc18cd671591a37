"""Rule `similarity_tables`: the CKA tables over all runs with their summaries over folds
(mean, std, n), and the CKA of the same layer between the runs of each group of
``cfg["groups"]`` (same sweep, data sets, fold and seed:
mfoml.similarity.tables.cross_run_cka_table); the tables are mfoml.similarity.cka_summary.

Outputs (results/tables):
- ``cka_layers``: run columns, ``epoch, layer_a, layer_index_a, layer_b, layer_index_b,
  n_samples, cka`` (the layer x layer heat map of each checkpoint);
- ``cka_checkpoints``: run columns, ``layer, layer_index, epoch_a, epoch_b, n_samples, cka``;
- ``cka_runs``: ``experiment, dataset, seed, fold``, the two runs' ``run, model, activation,
  loss, noise`` (suffixes ``_a``, ``_b``), ``epoch, layer, layer_index_a, layer_index_b,
  n_samples, cka, status``;
- each ``*_summary``: ``cka_mean, cka_std, cka_n`` over folds.
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
from mfoml.similarity.cka_summary import cross_run_tables, run_cka_tables  # noqa: E402
from mfoml.similarity.tables import cross_run_cka_table  # noqa: E402

log = setup_logging(snakemake.log[0], "similarity_tables")
cfg = json.loads(snakemake.params.cfg)
runs, groups = cfg["runs"], cfg["groups"]
tables = run_cka_tables(runs, snakemake.input.cka, cfg["name"])
# the same layer across the runs of a group (the same samples: same data set, fold and seed)
act_dirs = dict(zip([r["run"] for r in runs], snakemake.input.activations, strict=False))
run_dumps = {
    rid: {
        e: open_activations(Path(act_dirs[rid]) / str(e) / cfg["split"])
        for e in dump_epochs(act_dirs[rid])
    }
    for rid in sorted({rid for g in groups for rid in g})
}
pairs = cross_run_cka_table(
    run_dumps, groups, layers=cfg["layers"], max_samples=cfg["max_samples"], seed=int(cfg["seed"])
)
tables.update(cross_run_tables(pairs, runs, cfg["name"]))
for name, table in tables.items():
    atomic_write_csv(getattr(snakemake.output, name), table)
log.info(
    "%d runs: %d layer x layer, %d checkpoint, %d cross-run CKA values (%d groups)",
    len(runs),
    len(tables["cka_layers"]),
    len(tables["cka_checkpoints"]),
    len(pairs),
    len(groups),
)
