"""Same configuration and seed, same numbers on the CPU: the whole tiny workflow run twice.

The second run is a fresh copy of the workflow, run from nothing with a different number of
cores (so jobs also run in a different order); every table, every activation dump and every
probe curve must match the first run exactly. Only wall-clock timing columns may differ.
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


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    first = completed_tiny_run(tmp_path_factory.getbasetemp())
    second = copy_workflow(tmp_path_factory.mktemp("again") / "wd")
    run_snakemake(second, "--cores", "1", configfile=second / TINY_CONFIG, check=True)
    return first, second


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.glob(pattern))


def test_tables_identical(two_runs):
    first, second = two_runs
    tables = _files(first / "results" / "tables", "*.csv")
    assert tables, "the first run wrote no tables"
    assert tables == _files(second / "results" / "tables", "*.csv")
    for name in tables:
        a = pd.read_csv(first / "results" / "tables" / name)
        b = pd.read_csv(second / "results" / "tables" / name)
        keep = [c for c in a.columns if c not in TIMING_COLUMNS]
        assert list(a.columns) == list(b.columns), name
        pd.testing.assert_frame_equal(a[keep], b[keep], check_exact=True, obj=str(name))


def test_activation_dumps_bit_identical(two_runs):
    first, second = two_runs
    arrays = _files(first / "results" / "runs", "**/activations/**/*.npy")
    assert len(arrays) > 20, "expected the dumps of several runs, checkpoints and layers"
    assert arrays == _files(second / "results" / "runs", "**/activations/**/*.npy")
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
    curves = _files(first / "results" / "runs", "**/probe_curves.json")
    assert curves
    for rel in curves:
        a = _without_timings((first / "results" / "runs" / rel).read_text())
        b = _without_timings((second / "results" / "runs" / rel).read_text())
        assert a == b, rel
