"""Rule `tabular_noise`: scores and smoothness alpha as label noise (classification) or
Gaussian target noise (regression) grows, on one data set."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

from mfoml.data.folds import load_folds  # noqa: E402
from mfoml.io import atomic_write_json  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.tabular.data import forest_params, load_tabular, table_meta  # noqa: E402
from mfoml.tabular.noise import noise_study  # noqa: E402

log = setup_logging(snakemake.log[0], "tabular_noise")
cfg = json.loads(snakemake.params.cfg)
n = cfg["noise"]
data = load_tabular(snakemake.input.data, snakemake.wildcards.dataset)
folds = load_folds(snakemake.input.folds)
levels = n["levels"] if data.is_classification else n["regression_levels"]
log.info("%s: noise levels %s", data.name, levels)
res = noise_study(
    data,
    folds,
    levels,
    forest_params({**cfg["forest"], "n_estimators": n["n_estimators"]}),
    alpha_params=n["probe"],
    seed=cfg["seed"],
    n_jobs=snakemake.threads,
)
atomic_write_json(snakemake.output[0], {"meta": table_meta(data), **res})
