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
