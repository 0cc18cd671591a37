"""Rule `ssl_eval`: per layer, checkpoint and label set of a self-supervised run, NCC accuracy
(class means of the train split; train and test), NC1, linear-probe and k-NN accuracy
(mfoml.collapse.probes.layer_probe_table), and the Besov smoothness alpha of the train split
(mfoml.wavelets.probe.sparsity_probe with the forest settings of `probe`); see
mfoml.nets.ssl_eval.

Output ``ssl_eval.csv``: one row per (epoch, layer, label set). There is no classifier, so the NCC
mismatch against predictions does not apply: ``ncc_mismatch`` is empty and
``ncc_mismatch_status`` says why (never a zero).
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

from mfoml.io import atomic_write_csv  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.nets.ssl_eval import ssl_eval_table  # noqa: E402

setup_logging(snakemake.log[0], "ssl_eval")
cfg = json.loads(snakemake.params.cfg)
table = ssl_eval_table(snakemake.input.activations, cfg, n_jobs=int(snakemake.threads))
atomic_write_csv(snakemake.output[0], table)
