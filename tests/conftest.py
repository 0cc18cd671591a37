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


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator."""
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs ``-n auto --dist loadgroup``) keep each test module
    on one worker, so that its module-scoped fixtures (a whole-workflow run, a trained network)
    are built once; modules are then spread over the workers. Without xdist the mark is inert.
    The tiny workflow run shared by several modules is built once per session across workers
    (``workflow_utils.completed_tiny_run`` holds a file lock)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
