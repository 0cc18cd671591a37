"""One per-data-set job of the tabular track, as its rule script runs it: read the data set and
its folds, compute the record, write it (rules ``tabular_baselines``, ``tabular_rf_search``,
``tabular_xgb_search``, ``tabular_wavelet``, ``tabular_boosting``, ``tabular_importance``,
``tabular_noise``; the computation is the ``*_job`` function of the part's module).

The rule script's Snakemake object is read through its attributes only; the package never
imports Snakemake.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mfoml.data.folds import load_folds
from mfoml.io import atomic_write_json
from mfoml.tabular.data import DatasetJob, load_tabular, table_meta

__all__ = ["run_dataset_job"]


def run_dataset_job(job: Any, compute: Callable[[DatasetJob], dict[str, Any]]) -> dict[str, Any]:
    """Run a rule's computation on one data set and write its JSON record atomically.

    Parameters
    ----------
    job : the rule script's ``snakemake`` object: ``input.data`` (the normalized data set),
        ``input.folds`` (its fold file), ``wildcards.dataset`` (the config's data-set id, which
        names the rows of the tables), ``params.cfg`` (the rule's canonical JSON slice of the
        ``tabular`` section), ``threads`` and ``output[0]`` (the record's path).
    compute : ``compute(DatasetJob) -> result`` (a JSON-serializable dict), e.g.
        :func:`mfoml.tabular.wavelet.wavelet_job` or
        ``functools.partial(mfoml.tabular.search.search_job, model="xgboost")``; it gets the
        data set as a :class:`~mfoml.tabular.data.TabularData`, the fold file's dict, the
        parsed slice and ``threads`` as ``n_jobs``.

    Returns
    -------
    The record written: ``{"meta": table_meta(data), **result}``
    (:func:`mfoml.tabular.data.table_meta`).
    """
    data = load_tabular(job.input.data, job.wildcards.dataset)
    cfg = json.loads(job.params.cfg)
    result = compute(DatasetJob(data, load_folds(job.input.folds), cfg, int(job.threads)))
    record = {"meta": table_meta(data), **result}
    atomic_write_json(job.output[0], record)
    return record
