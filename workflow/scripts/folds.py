"""Rule `folds`: seeded k-fold assignment of a data set's training split.

Stratified for classification, plain (shuffled) KFold for regression; the task comes from the
data set's meta.json. A data set with group ids (groups_train.npy: a file source's `group`
column, the sentence pairs of textorder) keeps every group in one fold.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # this workflow's mfoml

from mfoml.warm import delegate  # noqa: E402

delegate(snakemake)  # the job runs in the warm-start server when one serves this run (mfoml.warm)

import json  # noqa: E402

from mfoml.data.folds import make_folds, save_folds  # noqa: E402
from mfoml.data.store import load_dataset  # noqa: E402
from mfoml.logs import setup_logging  # noqa: E402

log = setup_logging(snakemake.log[0], "folds")
cfg = json.loads(snakemake.params.cfg)
ds = load_dataset(snakemake.input.data)
stratified = ds.meta["task"] == "classification"
n_splits = int(cfg["n_splits"])
if len(ds.y_train) < n_splits:
    raise ValueError(
        f"config key 'folds.n_splits': {n_splits} folds for data set "
        f"{snakemake.wildcards.dataset!r} with only {len(ds.y_train)} training samples"
    )
groups = ds.groups_train
try:
    folds = make_folds(
        ds.y_train, n_splits=n_splits, seed=int(cfg["seed"]), stratified=stratified, groups=groups
    )
except ValueError as exc:
    raise ValueError(
        f"config key 'folds.n_splits' ({n_splits}) for data set "
        f"{snakemake.wildcards.dataset!r} ({snakemake.input.data}): {exc}"
    ) from exc
save_folds(
    snakemake.output[0],
    folds,
    n_splits=n_splits,
    seed=int(cfg["seed"]),
    stratified=stratified,
    grouped=groups is not None,
)
log.info(
    "%s: %d samples in %d %s%s folds (seed %d)",
    snakemake.wildcards.dataset,
    len(folds),
    n_splits,
    "stratified" if stratified else "plain",
    "" if groups is None else f", grouped ({len(set(groups.tolist()))} groups)",
    int(cfg["seed"]),
)
