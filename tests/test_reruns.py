"""Rerunning only what changed: Snakemake's own dry run on copies of one completed tiny run.

The tiny configuration has three runs: relu and tanh (two sweeps), and an SVSL transfer run
whose source is the relu run. Each test copies the
finished working directory (modification times and .snakemake metadata preserved), changes
one thing, and checks the jobs Snakemake schedules.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
import yaml
from workflow_utils import TINY_CONFIG, completed_tiny_run, copy_run, dry_run_jobs

pytestmark = pytest.mark.slow

RELU = "mnist1d/mlp-d2-w16/relu/ce/noise0/fold0"
TANH = "mnist1d/mlp-d2-w16/tanh/ce/noise0/fold0"
SVSL = "mnist1d-small/mlp-d2-w16-tl/relu/svsl-l1e-3/noise20/fold0"
# lenses_figures draws the intrinsic dimension from layers_summary (similarity.smk)
DOWNSTREAM = {"aggregate", "figures", "dynamics_figures", "lenses_figures", "all"}
# the per-run lenses of similarity.smk (on by default) and their tables
LENSES = {"cka", "intrinsic_dim"}


@pytest.fixture
def run_copy(tmp_path_factory: pytest.TempPathFactory, tmp_path):
    base = completed_tiny_run(tmp_path_factory.getbasetemp())
    return copy_run(base, tmp_path / "wd")


def _write_config(wd, edit=None):
    cfg = yaml.safe_load((wd / TINY_CONFIG).read_text())
    if edit is not None:
        edit(cfg)
    path = wd / "config" / "tests" / "edited.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _jobs(wd, configfile):
    return dry_run_jobs(wd, configfile=configfile)


def test_complete_run_has_nothing_to_do(run_copy):
    assert _jobs(run_copy, run_copy / TINY_CONFIG) == []


def test_identical_config_rewritten_schedules_nothing(run_copy):
    cfg_path = run_copy / TINY_CONFIG
    text = cfg_path.read_text()
    cfg_path.write_text(text)  # new modification time, same content
    assert _jobs(run_copy, cfg_path) == []
    # the same settings written in another key order and style are the same config
    assert _jobs(run_copy, _write_config(run_copy)) == []


def test_probe_setting_reruns_probe_and_downstream_only(run_copy):
    def edit(cfg):
        cfg["probe"]["max_depth"] = 5

    jobs = _jobs(run_copy, _write_config(run_copy, edit))
    rules = Counter(rule for rule, _ in jobs)
    assert rules == Counter({"probe": 3, **dict.fromkeys(DOWNSTREAM, 1)})
    assert {w["run"] for rule, w in jobs if rule == "probe"} == {RELU, TANH, SVSL}


def test_training_setting_of_one_run_reruns_that_run_only(run_copy):
    def edit(cfg):
        tanh = next(s for s in cfg["sweeps"] if s["name"] == "tanh")
        tanh["train"] = {"lr": 0.02}

    jobs = _jobs(run_copy, _write_config(run_copy, edit))
    per_run = {rule: {w.get("run") for r, w in jobs if r == rule} for rule, _ in jobs}
    for rule in ("train", "activations", "probe", "ncc", *LENSES):
        assert per_run[rule] == {TANH}, rule
    assert {rule for rule, _ in jobs} == {
        "train",
        "activations",
        "probe",
        "ncc",
        "similarity_tables",
    } | LENSES | DOWNSTREAM
    assert not any(w.get("run") == RELU for _, w in jobs)
    assert "data" not in per_run and "folds" not in per_run


def _by_run(jobs):
    by_run: dict = {}
    for rule, w in jobs:
        by_run.setdefault(w.get("run"), set()).add(rule)
    return by_run


def test_touch_checkout_comment_and_docstring_edits_rerun_nothing(run_copy):
    scripts = run_copy / "workflow" / "scripts"
    # a checkout / touch: every code file gets a new modification time, same content
    later = time.time() + 60
    for path in [*scripts.rglob("*.py"), *(run_copy / "workflow" / "rules").iterdir()]:
        os.utime(path, (later, later))
    # comments and a docstring in the NCC code, a comment in a rule script, reformatting
    acc = scripts / "mfoml" / "collapse" / "accumulators.py"
    acc.write_text(acc.read_text().replace("\n\n\n", "\n\n\n# a comment\n", 1) + "\n# end\n")
    measures = scripts / "mfoml" / "collapse" / "measures.py"
    text = measures.read_text()
    assert text.startswith('"""')
    measures.write_text('"""Edited docstring. ' + text[3:])
    train = scripts / "train.py"
    train.write_text(train.read_text() + "\n\n# edited by the rerun test\n")
    assert _jobs(run_copy, run_copy / TINY_CONFIG) == []


def test_changing_ncc_code_reruns_ncc_jobs_and_svsl_training_only(run_copy):
    collapse = run_copy / "workflow" / "scripts" / "mfoml" / "collapse"
    # ClassMeans (accumulators): used by the NCC analysis and by the SVSL loss in training
    acc = collapse / "accumulators.py"
    original = acc.read_text()
    acc.write_text(original + "\n_CHANGED_BY_THE_RERUN_TEST = 1\n")
    by_run = _by_run(_jobs(run_copy, run_copy / TINY_CONFIG))
    # the cross-entropy runs: only their NCC analysis
    assert by_run[RELU] == {"ncc"} and by_run[TANH] == {"ncc"}
    # the SVSL run executes mfoml.collapse in training (SVSLLoss uses its class means)
    assert by_run[SVSL] == {"train", "activations", "probe", "ncc"} | LENSES
    assert by_run[None] == DOWNSTREAM | {"similarity_tables"}
    # the NC1-NC4 measures are used by the NCC jobs alone
    acc.write_text(original)
    measures = collapse / "measures.py"
    measures.write_text(measures.read_text() + "\n_CHANGED_BY_THE_RERUN_TEST = 1\n")
    jobs = _jobs(run_copy, run_copy / TINY_CONFIG)
    assert Counter(rule for rule, _ in jobs) == Counter(
        {"ncc": 3, **dict.fromkeys(DOWNSTREAM, 1)}
    )  # dynamics_figures draws the class-geometry columns of the NCC tables


def test_changing_smoothness_code_reruns_only_probe_jobs(run_copy):
    module = run_copy / "workflow" / "scripts" / "mfoml" / "wavelets" / "smoothness.py"
    module.write_text(module.read_text().replace("_LOGLOG_ZERO = 1e-6", "_LOGLOG_ZERO = 2e-6"))
    jobs = _jobs(run_copy, run_copy / TINY_CONFIG)
    assert Counter(rule for rule, _ in jobs) == Counter(
        {"probe": 3, **dict.fromkeys(DOWNSTREAM, 1)}
    )


def test_download_location_and_resources_schedule_nothing(run_copy):
    def edit(cfg):
        cfg["data"]["download_dir"] = "elsewhere/downloads"
        cfg["data"]["mirror"] = "http://127.0.0.1:9/mirror"
        cfg["resources"] = {"train": {"threads": 2, "mem_mb": 4000, "runtime": 5}}

    assert _jobs(run_copy, _write_config(run_copy, edit)) == []
