"""Rule `tabular_synthetic`: on a synthetic data set with known relevant features, how many of
them each importance method (wavelet, impurity, permutation) ranks on top."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

from mfoml.io import atomic_write_json  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.tabular.data import forest_params  # noqa: E402
from mfoml.tabular.importance import synthetic_importance  # noqa: E402

log = setup_logging(snakemake.log[0], "tabular_synthetic")
cfg = json.loads(snakemake.params.cfg)
s = cfg["importance"]["synthetic"]
log.info("synthetic importance check: %s", s)
res = synthetic_importance(
    s["kind"],
    n_samples=s["n_samples"],
    n_features=s["n_features"],
    n_informative=s["n_informative"],
    noise=s["noise"],
    params=forest_params(cfg["forest"]),
    n_splits=s["n_splits"],
    tau=cfg["importance"]["tau"],
    n_repeats=cfg["importance"]["n_repeats"],
    seed=cfg["seed"],
    n_jobs=snakemake.threads,
)
atomic_write_json(snakemake.output[0], res)
