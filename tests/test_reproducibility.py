"""Same configuration and seed, same numbers on the CPU: the tiny workflow's runs made twice.

The first run is the session's complete tiny run; the second is a fresh copy of the workflow,
run from nothing with a different number of cores (so jobs also run in a different order) and
without warm start (``warm_start: false``: every job its own interpreter, where the first run's
jobs were forks of the warm-start server, mfoml.warm), for two of its three runs: the source run and the transfer run that starts from the source's
checkpoint (so the chain data -> folds -> train -> transfer train -> dumps -> probe/NCC is
remade). Every per-run table, every activation dump and every probe curve of those runs must
match the first run exactly; only wall-clock timing columns may differ. (The aggregated tables
are a deterministic function of the per-run tables, tested in tests/test_aggregate.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from workflow_utils import TINY_CONFIG, completed_tiny_run, copy_workflow, run_snakemake

pytestmark = pytest.mark.slow

TIMING_COLUMNS = {"seconds", "train_seconds"}  # wall-clock timings
# the source run and the run transferred from it (config/tests/tiny.yaml)
RUNS = (
    "mnist1d/mlp-d2-w16/relu/ce/noise0/fold0",
    "mnist1d-small/mlp-d2-w16-tl/relu/svsl-l1e-3/noise20/fold0",
)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    first = completed_tiny_run(tmp_path_factory.getbasetemp())
    second = copy_workflow(tmp_path_factory.mktemp("again") / "wd")
    targets = [f"results/runs/{run}/{name}" for run in RUNS for name in ("probe.csv", "ncc.csv")]
    run_snakemake(
        second,
        "--cores",
        "1",
        *targets,
        "--config",
        "warm_start=False",
        configfile=second / TINY_CONFIG,
        check=True,
    )
    assert (first / "logs" / "warm_start.log").exists()
    assert not (second / "logs" / "warm_start.log").exists()
    return first, second


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.glob(pattern))


def test_tables_identical(two_runs):
    first, second = two_runs
    for run in RUNS:
        for name in ("checkpoints/metrics.csv", "probe.csv", "ncc.csv"):
            a = pd.read_csv(first / "results" / "runs" / run / name)
            b = pd.read_csv(second / "results" / "runs" / run / name)
            keep = [c for c in a.columns if c not in TIMING_COLUMNS]
            assert list(a.columns) == list(b.columns), (run, name)
            assert len(a) > 0, (run, name)
            pd.testing.assert_frame_equal(a[keep], b[keep], check_exact=True, obj=f"{run}/{name}")


def test_activation_dumps_bit_identical(two_runs):
    first, second = two_runs
    arrays = [
        a for run in RUNS for a in _files(first / "results" / "runs", f"{run}/activations/**/*.npy")
    ]
    assert len(arrays) > 20, "expected the dumps of two runs, their checkpoints and layers"
    assert sorted(arrays) == _files(second / "results" / "runs", "**/activations/**/*.npy")
    for rel in arrays:
        a = np.load(first / "results" / "runs" / rel)
        b = np.load(second / "results" / "runs" / rel)
        assert a.dtype == b.dtype and a.shape == b.shape, rel
        assert np.array_equal(a, b), f"{rel} differs between two runs of the same config"


def _without_timings(text: str) -> list[dict]:
    """The probe results of a ``probe_curves.json`` without the wall-clock fields."""
    out = []
    for entry in json.loads(text):
        entry = dict(entry)
        meta = {k: v for k, v in entry.pop("metadata", {}).items() if "seconds" not in k}
        out.append({**entry, "metadata": meta})
    return out


def test_probe_curves_identical(two_runs):
    first, second = two_runs
    curves = [Path(run) / "probe_curves.json" for run in RUNS]
    for rel in curves:
        a = _without_timings((first / "results" / "runs" / rel).read_text())
        b = _without_timings((second / "results" / "runs" / rel).read_text())
        assert a == b, rel
