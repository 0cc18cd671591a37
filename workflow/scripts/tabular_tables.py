"""Rule `tabular_tables`: the tabular track's tables (mean and std over folds) from the
per-data-set results: results/tables/tabular_<name>.csv."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

import pandas as pd  # noqa: E402
from mfoml.io import atomic_write_csv, read_json  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402
from mfoml.tabular.tables import aggregate  # noqa: E402

log = setup_logging(snakemake.log[0], "tabular_tables")
cfg = json.loads(snakemake.params.cfg)
results = {}
metas = {}
for part in (
    "baselines",
    "rf_search",
    "xgb_search",
    "wavelet",
    "boosting",
    "importance",
    "noise",
    "synthetic",
):
    files = snakemake.input.get(part, [])
    files = [files] if isinstance(files, str) else list(files)
    results[part] = [read_json(f) for f in files]
    for r in results[part]:
        if "meta" in r:
            metas.setdefault(r["meta"]["dataset"], r["meta"])
for m in metas.values():
    m["size"] = "small" if m["n_samples"] < cfg["size_threshold"] else "large"
results["meta"] = [metas[d] for d in cfg["datasets"] if d in metas]
tables = aggregate(results)
for name, path in snakemake.output.items():
    frame = tables.get(name, pd.DataFrame())
    atomic_write_csv(path, frame)
    log.info("wrote %s (%d rows)", path, len(frame))
