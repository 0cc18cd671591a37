"""Crash safety and recovery on copies of one completed tiny run.

A training job builds its output in ``.checkpoints.partial`` beside it and renames it into place
only when complete, so a job killed during training leaves no ``checkpoints`` directory at all:
after a kill and ``rm -rf .snakemake`` (what a newcomer does about the lock) Snakemake reruns the
training instead of trusting a half-written directory, and the rerun resumes from the last
complete checkpoint. A corrupted result table stops the aggregation with the file named.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from workflow_utils import (
    TINY_CONFIG,
    assert_aggregation_names_corrupt_table,
    completed_tiny_run,
    copy_run,
    dry_run_jobs,
    run_snakemake,
)

pytestmark = pytest.mark.slow

TANH = "mnist1d/mlp-d2-w16/tanh/ce/noise0/fold0"


@pytest.fixture
def run_copy(tmp_path_factory: pytest.TempPathFactory, tmp_path):
    base = completed_tiny_run(tmp_path_factory.getbasetemp())
    return copy_run(base, tmp_path / "wd")


def _remove_downstream(wd):
    """The outputs that follow the tanh run's training (absent while it was still training)."""
    run = wd / "results" / "runs" / TANH
    shutil.rmtree(run / "activations")
    for name in ("probe.csv", "probe_curves.json", "ncc.csv"):
        (run / name).unlink()
    for folder in ("tables", "figures"):
        shutil.rmtree(wd / "results" / folder)


def test_killed_training_reruns_after_rm_snakemake_and_resumes(run_copy):
    wd = run_copy
    run = wd / "results" / "runs" / TANH
    done = run / "checkpoints"
    reference = torch.load(done / "epoch_0002.pt", weights_only=True)["state_dict"]
    # What a job killed during epoch 2 leaves: the partial directory holding the request and the
    # complete epoch-1 checkpoint (its metrics so far inside), and no output directory.
    work = run / ".checkpoints.partial"
    work.mkdir()
    for name in ("request.json", "epoch_0001.pt"):
        shutil.copy2(done / name, work / name)
    (work / ".epoch_0002.pt.x1y2.tmp.pt").write_bytes(b"half-written")  # the killed write
    shutil.rmtree(done)
    _remove_downstream(wd)  # never made: the run was killed in training
    shutil.rmtree(wd / ".snakemake")  # the lock "fix" that also drops the incomplete markers

    jobs = dry_run_jobs(wd, configfile=wd / TINY_CONFIG)
    assert [w["run"] for rule, w in jobs if rule == "train"] == [TANH]

    target = f"results/runs/{TANH}/checkpoints"
    run_snakemake(wd, "--cores", "1", target, configfile=wd / TINY_CONFIG, check=True)
    log = (wd / "logs" / "runs" / TANH / "train.log").read_text()
    assert "resuming from epoch 1" in log
    assert sorted(p.name for p in done.iterdir() if p.name != ".snakemake_timestamp") == [
        "epoch_0001.pt",
        "epoch_0002.pt",
        "metrics.csv",
        "request.json",
        "run.json",
        "split.npz",
    ]
    assert not work.exists()
    resumed = torch.load(done / "epoch_0002.pt", weights_only=True)["state_dict"]
    for key, value in reference.items():  # bit-identical to the uninterrupted run (CPU)
        assert torch.equal(value, resumed[key]), key


def test_partial_directory_of_another_request_is_discarded(run_copy):
    """A partial directory left by a run with other settings is not resumed from."""
    wd = run_copy
    run = wd / "results" / "runs" / TANH
    work = run / ".checkpoints.partial"
    work.mkdir()
    (work / "request.json").write_text('{"params": "of another run"}')
    shutil.copy2(run / "checkpoints" / "epoch_0001.pt", work / "epoch_0001.pt")
    shutil.rmtree(run / "checkpoints")
    target = f"results/runs/{TANH}/checkpoints"
    run_snakemake(wd, "--cores", "1", target, configfile=wd / TINY_CONFIG, check=True)
    log = (wd / "logs" / "runs" / TANH / "train.log").read_text()
    assert "discarding" in log and "resuming" not in log
    assert not work.exists()


@pytest.mark.parametrize(
    ("table", "corrupt", "expected"),
    [
        ("probe.csv", lambda t: t + ",".join("1" * 40) + "\n", "not a readable CSV table"),
        # (ncc.csv and metrics.csv go through the same reader: tests/test_io.py)
    ],
)
def test_corrupted_result_table_is_named_by_the_aggregation(run_copy, table, corrupt, expected):
    path = f"results/runs/{TANH}/{table}"
    assert_aggregation_names_corrupt_table(run_copy, path, corrupt, expected)
