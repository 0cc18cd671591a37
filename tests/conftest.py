"""Shared pytest fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# The workflow's own planning modules (workflow/rules/*.py), as the Snakefile puts them on the path.
sys.path.insert(0, str(REPO / "workflow" / "rules"))

# Determinism and a quiet, small CPU footprint for the whole suite.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# OpenMP threads sleep when they wait instead of spinning (as the Snakefile sets for the
# pipeline; issue 27): two workers' spinning threads otherwise hold each other's cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# The whole-workflow modules, longest first (measured under two workers). They run first, so
# that under `make test` (pytest-xdist, --dist loadfile --no-loadscope-reorder: modules are
# handed out in this order, each to the next free worker) the long ones start early and the
# many short modules fill the gaps, instead of one long module ending the run on one worker.
# test_slurm.py mostly waits on the scheduler, so the other worker builds the tiny run meanwhile.
LONGEST_FIRST = (
    "test_workflow.py",  # builds the tiny run shared with crash, reruns, reproducibility
    "test_slurm.py",
    "test_text_workflow.py",
    "test_dynamics_workflow.py",
    "test_reproducibility.py",
    "test_tabular_workflow.py",
    "test_ssl_workflow.py",
    "test_crash.py",
    "test_reruns.py",
    "test_readme_commands.py",  # ten dry runs of the README's commands, on the tiny run too
    "test_tables_checked.py",  # three aggregations of corrupted copies of the tiny run
    "test_warm_workflow.py",  # four small Snakemake runs under faults (about 60 s)
    "test_disk.py",  # activations.keep false: a one-run tiny workflow and two reruns (~90 s)
    "test_warm_faults.py",  # servers, clients and signals (about 35 s)
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run :data:`LONGEST_FIRST` modules first, in that order; the rest keep their order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator."""
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO
