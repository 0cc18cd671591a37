"""Rule `tabular_importance`: wavelet vs impurity vs permutation feature importance on one
data set, with rank agreement (Spearman, Kendall) per fold."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

from mfoml.data.folds import load_folds  # noqa: E402
from mfoml.io import atomic_write_json  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.tabular.data import forest_params, load_tabular, table_meta  # noqa: E402
from mfoml.tabular.importance import importance_cv  # noqa: E402

log = setup_logging(snakemake.log[0], "tabular_importance")
cfg = json.loads(snakemake.params.cfg)
imp = cfg["importance"]
data = load_tabular(snakemake.input.data, snakemake.wildcards.dataset)
folds = load_folds(snakemake.input.folds)
log.info("%s: importances, tau %s, %s permutation repeats", data.name, imp["tau"], imp["n_repeats"])
res = importance_cv(
    data,
    folds,
    forest_params(cfg["forest"]),
    tau=imp["tau"],
    n_repeats=imp["n_repeats"],
    seed=cfg["seed"],
    n_jobs=snakemake.threads,
)
atomic_write_json(snakemake.output[0], {"meta": table_meta(data), **res})
