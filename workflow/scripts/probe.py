"""Rule `probe`: Besov smoothness alpha (mfoml.wavelets.probe.sparsity_probe) per layer, checkpoint
and split (mfoml.nets.layer_probe.probe_table).

Splits: ``probe.splits``, plus ``analysis`` where the run has an analysis data set (its dump
exists). Outputs ``probe.csv`` (one row per epoch, split and layer: ``alpha, alpha_min,
alpha_max, status, n_tau, n_wavelets``, the forest ``backend``...) and ``probe_curves.json``
(the full results, with the tau grid and the angle curve). With ``probe.random_label_baseline``
the same probe (same samples, same forest settings and seed) also runs on the layer with the
labels permuted, one permutation per checkpoint and split shared by all layers (seeded by
``probe.seed``, the epoch and the split): columns ``alpha_random, alpha_random_status,
n_wavelets_random``.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

from mfoml.io import atomic_write_csv, atomic_write_json  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.layer_probe import probe_table  # noqa: E402

setup_logging(snakemake.log[0], "probe")
cfg = json.loads(snakemake.params.cfg)
table, curves = probe_table(snakemake.input.activations, cfg, n_jobs=int(snakemake.threads))
atomic_write_json(snakemake.output.curves, curves)
atomic_write_csv(snakemake.output.table, table)
