"""`activations.keep: false` (issue 27): the dumps are temp(), deleted once every consumer ran,
and rebuilt from the checkpoints when a rerun needs them, giving the same tables.

A real Snakemake run of the tiny configuration reduced to its relu sweep (about a minute on 2
cores), in a copy of the workflow.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from workflow_utils import REPO, TINY_CONFIG, copy_workflow, run_snakemake

RUN = "mnist1d/mlp-d2-w16/relu/ce/noise0/fold0"


def _tables(wd: Path) -> dict[str, bytes]:
    """Every CSV table of the run (probe, NCC, training metrics), by relative path."""
    files = sorted((wd / "results" / "runs" / RUN).glob("*.csv"))
    return {str(f.relative_to(wd)): f.read_bytes() for f in files}


@pytest.fixture(scope="module")
def keep_false_run(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("keep-false"))
    cfg = yaml.safe_load((wd / TINY_CONFIG).read_text())
    cfg["name"] = "tiny-keep-false"
    cfg["sweeps"] = [s for s in cfg["sweeps"] if s["name"] == "relu"]
    cfg["activations"]["keep"] = False
    cfg_path = wd / "config" / "tests" / "keep_false.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(wd, "--cores", "2", configfile=cfg_path, check=True)
    return wd, cfg_path, proc


def test_keep_false_deletes_dumps_after_their_consumers(keep_false_run):
    wd, _, proc = keep_false_run
    run_dir = wd / "results" / "runs" / RUN
    assert (run_dir / "probe.csv").is_file()
    assert (run_dir / "ncc.csv").is_file()
    assert not (run_dir / "activations").exists(), "temp() dumps were not deleted"
    assert "Removing temporary output" in proc.stdout + proc.stderr
    # nothing is left to do: a deleted temp() dump does not make its consumers stale
    again = run_snakemake(wd, "-n", "--cores", "1", configfile=keep_false_run[1], check=True)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_rerun_needing_deleted_dumps_rebuilds_equal_tables(keep_false_run):
    wd, cfg_path, _ = keep_false_run
    before = _tables(wd)
    assert any(k.endswith("probe.csv") for k in before)
    ckpt = sorted((wd / "results" / "runs" / RUN / "checkpoints").iterdir())
    ckpt_mtimes = [p.stat().st_mtime_ns for p in ckpt]
    # the probe and NCC jobs must run again (as after a change of their code): they need the
    # deleted dumps (only the run's own tables are asked for, to keep the test short)
    targets = [f"results/runs/{RUN}/{name}" for name in ("probe.csv", "ncc.csv")]
    proc = run_snakemake(
        wd, "--forcerun", "probe", "ncc", "--cores", "2", *targets, configfile=cfg_path, check=True
    )
    log = proc.stdout + proc.stderr
    assert "rule activations:" in log, "the deleted dumps were not rebuilt"
    assert "rule train:" not in log, "rebuilding the dumps retrained the network"
    assert [p.stat().st_mtime_ns for p in ckpt] == ckpt_mtimes
    assert not (wd / "results" / "runs" / RUN / "activations").exists()
    after = _tables(wd)
    assert after.keys() == before.keys()
    for name, data in before.items():
        assert after[name] == data, f"{name} differs after rebuilding the dumps"


def test_disk_plan_predicts_the_dump_size(keep_false_run):
    """benchmarks/disk_plan.py against a real dump directory (asked for as a target, so kept)."""
    wd, cfg_path, _ = keep_false_run
    run_snakemake(
        wd, "--cores", "1", f"results/runs/{RUN}/activations", configfile=cfg_path, check=True
    )
    dump = wd / "results" / "runs" / RUN / "activations"
    npy = list(dump.rglob("*.npy"))
    # each .npy file has a 128-byte header; manifests are left out of the plan
    on_disk = sum(f.stat().st_size - 128 for f in npy)
    spec = importlib.util.spec_from_file_location("disk_plan", REPO / "benchmarks" / "disk_plan.py")
    disk_plan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(disk_plan)
    result = disk_plan.main(
        ["--configfile", str(cfg_path), "--data-dir", str(wd / "resources/data")]
    )
    (row,) = result["runs"]
    # by hand: MLP-2-16 on MNIST-1D stores input 40 + 16 + 16 + logits 10 = 82 float16 features;
    # train 1500 samples (3 int64 label arrays), test 1000 (2), a 10 x 16 float32 classifier
    # per split; checkpoints 1 and 2
    assert row["features"] == 82
    assert row["splits"] == {"train": 1500, "test": 1000}
    by_hand = 2 * (1500 * (2 * 82 + 3 * 8) + 1000 * (2 * 82 + 2 * 8) + 2 * 4 * 10 * 16)
    assert row["total"] == by_hand
    assert on_disk == by_hand, f"{len(npy)} arrays hold {on_disk} bytes, planned {by_hand}"
    assert result["peak_bytes"] == by_hand  # one run: keep false or not, its dumps are the peak


def test_keep_is_not_a_dump_parameter():
    """Toggling activations.keep changes no dump, so it must not rerun the activations jobs."""
    from mfoml.config import load_config, rule_params, run_table

    config = load_config(REPO / TINY_CONFIG)
    assert config["activations"]["keep"] is True  # the schema default
    run = run_table(config)[0]
    kept = rule_params(config, "activations", run)
    config["activations"]["keep"] = False
    assert rule_params(config, "activations", run) == kept
    config["activations"]["max_samples"] = 99  # a real dump setting does change them
    assert rule_params(config, "activations", run) != kept
