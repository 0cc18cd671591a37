"""Shared pytest fixtures."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """torch with one intra-op thread during the test, restored after: on tiny models more
    threads only add overhead (and noise) on a shared CPU. Modules of small torch tests use it
    for every test: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch  # here: most test modules never import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _sklearn_table(name: str, n_rows: int | None = None) -> tuple[Any, np.ndarray]:
    """A scikit-learn set as a ``TabularData`` (its first ``n_rows``) and 3 folds, seed 0."""
    from mfoml.data.folds import make_folds  # here: conftest stays light for every module
    from mfoml.tabular.data import TabularData
    from sklearn import datasets

    task, n_classes = {"iris": ("classification", 3), "diabetes": ("regression", 0)}[name]
    bunch = getattr(datasets, f"load_{name}")()
    data = TabularData(bunch.data[:n_rows], bunch.target[:n_rows], task, n_classes, name=name)
    return data, make_folds(data.y, n_splits=3, seed=0, stratified=n_classes > 0)


@pytest.fixture(scope="module")
def iris() -> tuple[Any, np.ndarray]:
    """Iris as a table (150 x 4, 3 classes) and 3 stratified folds (seed 0)."""
    return _sklearn_table("iris")


@pytest.fixture(scope="module")
def diabetes(request: pytest.FixtureRequest) -> tuple[Any, np.ndarray]:
    """The first ``DIABETES_ROWS`` rows (a constant of the test module; default 240) of the
    diabetes regression set as a table, and 3 plain folds (seed 0)."""
    return _sklearn_table("diabetes", getattr(request.module, "DIABETES_ROWS", 240))


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    """A private copy of workflow/scripts/mfoml under ``tmp_path`` for a warm-start server
    (``warm_utils.copy_scripts``: the test may edit its files)."""
    from warm_utils import copy_scripts

    return copy_scripts(tmp_path)


def pytest_configure(config: pytest.Config) -> None:
    """Give the suite a terminal's signal dispositions. A shell that starts it in the background
    without job control (``make test &``, ``nohup``, some CI runners) makes it ignore SIGINT and
    SIGQUIT, every process it starts inherits that, and mfoml.warm reproduces ignored signals
    in the warm jobs on purpose: the Ctrl-C and Ctrl-Z tests (tests/test_warm_faults.py,
    tests/test_warm_workflow.py) would then test a background job instead of a terminal's
    foreground one. Runs in every xdist worker too."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
