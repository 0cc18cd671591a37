"""Rule `tabular_wavelet`: wavelet forest with validation-chosen M on one data set, with the
compression curves (held-out error vs M and vs number of trees)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

from mfoml.data.folds import load_folds  # noqa: E402
from mfoml.io import atomic_write_json  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.tabular.data import forest_params, load_tabular, table_meta  # noqa: E402
from mfoml.tabular.wavelet import wavelet_cv  # noqa: E402

log = setup_logging(snakemake.log[0], "tabular_wavelet")
cfg = json.loads(snakemake.params.cfg)
w = cfg["wavelet"]
data = load_tabular(snakemake.input.data, snakemake.wildcards.dataset)
folds = load_folds(snakemake.input.folds)
params = forest_params(cfg["forest"])
log.info("%s: wavelet forest %s", data.name, params)
res = wavelet_cv(
    data,
    folds,
    params,
    val_fraction=w["val_fraction"],
    select_metric=w["select_metric"],
    curve_points=w["curve_points"],
    trees_grid=w["trees_grid"],
    seed=cfg["seed"],
    n_jobs=snakemake.threads,
)
atomic_write_json(snakemake.output[0], {"meta": table_meta(data), **res})
