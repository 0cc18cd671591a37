"""Cluster submission for real: Snakemake with profiles/slurm on a local single-node SLURM cluster.

A module-scoped fixture brings up SLURM on loopback with two fake GPUs (tests/slurm_cluster.py)
and stops exactly the daemons it started. The profile under test is profiles/slurm as shipped;
the command line adds only what this cluster needs: job status through ``squeue`` (there is no
accounting daemon, so no ``sacct``) and a short first status check to keep the test quick.

Checked, per submitted job: it completed with exit code 0; GPU rules (``resources: gpu=1``) were
submitted with ``--gpus=1``, SLURM allocated them a GPU (``gres:gpu:1``) and the job saw
``CUDA_VISIBLE_DEVICES``; other rules asked for no GPU, got none and saw no
``CUDA_VISIBLE_DEVICES``; SLURM's job logs of successful jobs were kept.

The two cluster tests are skipped (with the reason printed in the summary) only where a cluster
cannot be started: SLURM/MUNGE programs missing (.ci/run installs them as root) or not running
as root. A quick test without a cluster checks that Snakemake finds both profiles and that the
workflow profile (profiles/default, loaded for every run) sets nothing that would override the
cluster profile.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from slurm_cluster import SlurmCluster, missing_requirements, slurm_cluster
from workflow_utils import TINY_CONFIG, copy_workflow, snakemake_command

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm"
# Settings for this cluster only. The profile leaves the status command to auto-detection, which
# picks sacct whenever the sacct binary exists, and sacct needs slurmdbd.
CLUSTER_ARGS = ("--slurm-status-command", "squeue")
# The plugin checks job states N s after submitting, then waits 10 s longer each time no job has
# finished (checks at N, 2N+10, 3N+30, ... s; back to N after a job ends). Chosen so that the
# first or second check comes just after the typical job of each test ends: the shell jobs of
# the minimal workflow take 5-10 s (checks at 3, 16 s), the tiny workflow's jobs 10-22 s on a
# busy 2-core machine (checks at 6, 22 s).
FIRST_CHECK_MINIMAL_S = 3
FIRST_CHECK_TINY_S = 6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    reason = missing_requirements()
    if reason:
        print(f"\nSLURM tests skipped: {reason}", file=sys.stderr)
        pytest.skip(reason)
    started = time.monotonic()
    with slurm_cluster(
        tmp_path_factory.mktemp("slurm"), cpus=4, memory_mb=32000, gpus=2
    ) as running:
        print(f"local SLURM cluster up in {time.monotonic() - started:.1f} s", file=sys.stderr)
        yield running


def test_profiles_found_and_consistent() -> None:
    """Snakemake finds both profiles, and the workflow profile cannot spoil the cluster profile.

    profiles/default is loaded for every run and its keys override those of ``--profile``, so it
    must not set what profiles/slurm or the machine decides (no cluster needed for this test).
    """
    from snakemake.cli import get_profile_dir

    for name in ("default", "slurm"):
        found = get_profile_dir(str(REPO / "profiles" / name))
        assert found is not None, f"snakemake finds no profile file in profiles/{name}"
        assert found[1].name == "config.v8+.yaml", found
    default = yaml.safe_load((REPO / "profiles" / "default" / "config.v8+.yaml").read_text())
    machine_keys = {
        "executor",
        "jobs",
        "cores",
        "resources",
        "default-resources",
        "set-resources",
        "latency-wait",
        "software-deployment-method",
    }
    assert not machine_keys & set(default), (
        f"profiles/default sets {sorted(machine_keys & set(default))}, which would override "
        "profiles/slurm and the command line"
    )
    slurm = yaml.safe_load(PROFILE.joinpath("config.v8+.yaml").read_text())
    assert slurm["executor"] == "slurm"
    assert slurm["slurm-keep-successful-logs"] is True
    assert slurm["slurm-logdir"] == "logs/slurm"
    res = slurm["default-resources"]
    assert isinstance(res["mem_mb"], int) and isinstance(res["runtime"], int), res
    # The partition/account placeholders are comments, never live "<...>" values.
    assert not any("<" in str(v) for v in res.values()), res


@dataclass
class Submission:
    """One job as submitted by Snakemake and as remembered by slurmctld."""

    rule: str
    sbatch: str  # the sbatch command line Snakemake logged
    job: dict[str, str]  # `scontrol show job` fields

    @property
    def gpu_requested(self) -> bool:
        return any(a.startswith("--gpus") for a in shlex.split(self.sbatch))

    @property
    def gpu_allocated(self) -> bool:
        return "gpu" in self.job.get("TresPerJob", "") or "gpu" in self.job.get("TRES", "")


def run_with_profile(
    cluster: SlurmCluster,
    workdir: Path,
    snakefile: Path,
    *extra: str,
    first_check_s: int,
    timeout: float = 300,
) -> tuple[subprocess.CompletedProcess, list[Submission]]:
    """Run Snakemake with profiles/slurm; return its result and the jobs it submitted."""
    env = dict(cluster.env)
    env.pop("CUDA_VISIBLE_DEVICES", None)  # jobs inherit the environment (--export=ALL)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
    cmd = [
        *snakemake_command(),
        "--profile",
        str(PROFILE),
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
        *CLUSTER_ARGS,
        "--slurm-init-seconds-before-status-checks",
        str(first_check_s),
        "--verbose",
        *extra,
    ]
    try:
        res = subprocess.run(
            cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(
            errors="replace"
        )
        raise AssertionError(
            f"snakemake on SLURM did not finish in {timeout} s; jobs: {cluster.jobs()}\n"
            f"{out[-6000:]}\n{cluster.diagnostics()}"
        ) from None
    out = res.stdout + res.stderr
    assert res.returncode == 0, (
        f"snakemake --profile profiles/slurm failed ({res.returncode}):\n{out[-8000:]}\n"
        + "\n".join(
            f"{j.get('JobId')} {j.get('Comment')} {j.get('JobState')}" for j in cluster.jobs()
        )
    )
    done = re.findall(r"(\d+) of (\d+) steps \(100%\) done", out)
    assert done and done[-1][0] == done[-1][1], f"not every job completed:\n{out[-3000:]}"
    m = re.search(r"SLURM run ID: ([0-9a-f-]+)", out)
    assert m, f"no 'SLURM run ID' in the snakemake output:\n{out[-3000:]}"
    run_id = m.group(1)
    calls = {}
    for line in out.splitlines():
        if "sbatch call:" in line:
            call = line.split("sbatch call:", 1)[1].strip()
            args = shlex.split(call)
            assert "--comment" in args, f"no --comment in sbatch call {call}"
            calls[args[args.index("--comment") + 1]] = call
    jobs = [j for j in cluster.jobs() if j.get("JobName") == run_id]
    assert len(jobs) == len(calls), (
        f"{len(calls)} sbatch calls logged but slurmctld knows {len(jobs)} jobs of run {run_id}"
    )
    subs = []
    for job in jobs:
        comment = job.get("Comment", "")
        assert comment in calls, f"job {job.get('JobId')} ({comment}) has no logged sbatch call"
        rule = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", comment)
        assert rule, f"unexpected job comment {comment!r}"
        subs.append(Submission(rule=rule.group(1), sbatch=calls[comment], job=job))
        print(
            f"slurm job {job.get('JobId')} {rule.group(1)}: submitted {job.get('SubmitTime')} "
            f"started {job.get('StartTime')} ended {job.get('EndTime')} {job.get('JobState')}"
        )
    return res, subs


def job_environment_gpus(sub: Submission) -> str | None:
    """CUDA_VISIBLE_DEVICES inside the job, or None when it was not set.

    Read from the job's SLURM log: with ``--verbose`` the plugin's job-step executor (the
    Snakemake process SLURM starts for the job, which then runs the rule with ``srun``) logs
    its environment.
    """
    text = Path(sub.job["StdOut"]).read_text(errors="replace")
    env = re.search(r"environment: environ\(\{.*?\}\)", text)
    assert env, f"job {sub.job['JobId']} ({sub.rule}): no environment dump in {sub.job['StdOut']}"
    m = re.search(r"'CUDA_VISIBLE_DEVICES': '([^']*)'", env.group(0))
    return m.group(1) if m else None


def assert_completed_and_logged(subs: list[Submission]) -> None:
    """Every job COMPLETED with exit code 0, and its SLURM log was kept (profile setting)."""
    for s in subs:
        assert s.job["JobState"] == "COMPLETED" and s.job["ExitCode"] == "0:0", (
            f"job {s.job['JobId']} of rule {s.rule}: {s.job['JobState']} exit {s.job['ExitCode']}"
        )
        log = Path(s.job["StdOut"])
        assert log.is_file() and log.stat().st_size > 0, f"SLURM log {log} of rule {s.rule} missing"
        assert "logs/slurm" in log.as_posix(), f"SLURM log {log} not under logs/slurm"


MINIMAL_SNAKEFILE = """\
localrules:
    all,


rule all:
    input:
        expand("gpu_{i}.txt", i=[1, 2]),
        "cpu.txt",


rule gpu_job:
    output:
        "gpu_{i}.txt",
    resources:
        gpu=1,
    shell:
        "echo CUDA_VISIBLE_DEVICES=${{CUDA_VISIBLE_DEVICES-unset}} > {output}"


rule cpu_job:
    output:
        "cpu.txt",
    shell:
        "echo CUDA_VISIBLE_DEVICES=${{CUDA_VISIBLE_DEVICES-unset}} > {output}"
"""


@pytest.mark.slurm
@pytest.mark.slow
def test_profile_maps_gpu_resource_to_gpus(cluster: SlurmCluster, tmp_path: Path) -> None:
    """A minimal workflow (two gpu=1 jobs, one plain job) through profiles/slurm."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(textwrap.dedent(MINIMAL_SNAKEFILE))
    _, subs = run_with_profile(cluster, tmp_path, snakefile, first_check_s=FIRST_CHECK_MINIMAL_S)

    assert sorted(s.rule for s in subs) == ["cpu_job", "gpu_job", "gpu_job"]
    assert_completed_and_logged(subs)
    for s in subs:
        if s.rule == "gpu_job":
            assert "--gpus=1" in shlex.split(s.sbatch), s.sbatch
            assert s.job.get("TresPerJob") == "gres:gpu:1", s.job
            assert job_environment_gpus(s) in {"0", "1"}
        else:
            assert not s.gpu_requested, s.sbatch
            assert not s.gpu_allocated, s.job
            assert job_environment_gpus(s) is None
    seen = {p.name: p.read_text().strip() for p in tmp_path.glob("*.txt")}
    assert seen["cpu.txt"] == "CUDA_VISIBLE_DEVICES=unset"
    for name in ("gpu_1.txt", "gpu_2.txt"):
        assert seen[name] in {"CUDA_VISIBLE_DEVICES=0", "CUDA_VISIBLE_DEVICES=1"}, seen


# Rules that declare `resources: gpu=1` unless the configuration's device is "cpu".
GPU_RULES = {"train", "activations"}


@pytest.mark.slurm
@pytest.mark.slow
def test_tiny_config_through_slurm_profile(cluster: SlurmCluster, tmp_path: Path) -> None:
    """The real workflow on the tiny configuration, every non-local job submitted to SLURM.

    Two changes to config/tests/tiny.yaml keep this quick and make it ask for GPUs: only its
    first sweep (one training run: each stage is then a single wave of jobs), and
    ``device: auto`` instead of ``cpu``, so the training and activation rules request a GPU as
    on a real cluster. The fake GPUs are not usable by torch, so "auto" trains on the CPU
    inside the GPU allocation.
    """
    work = copy_workflow(tmp_path / "wf")
    tiny = yaml.safe_load((work / TINY_CONFIG).read_text())
    tiny["device"] = "auto"
    tiny["sweeps"] = tiny["sweeps"][:1]
    configfile = work / "config" / "tests" / "tiny_slurm.yaml"
    configfile.write_text(yaml.safe_dump(tiny, sort_keys=False))
    started = time.monotonic()
    _, subs = run_with_profile(
        cluster,
        work,
        work / "Snakefile",
        "--configfile",
        str(configfile),
        first_check_s=FIRST_CHECK_TINY_S,
    )
    print(f"tiny workflow on SLURM: {len(subs)} jobs in {time.monotonic() - started:.0f} s")

    rules = {s.rule for s in subs}
    assert GPU_RULES <= rules, f"no {GPU_RULES - rules} job was submitted to SLURM"
    assert {"probe", "ncc"} <= rules, f"probe/ncc jobs missing from the submissions: {rules}"
    assert_completed_and_logged(subs)
    for s in subs:
        gpus_in_job = job_environment_gpus(s)
        if s.rule in GPU_RULES:
            assert "--gpus=1" in shlex.split(s.sbatch), f"{s.rule}: {s.sbatch}"
            assert s.job.get("TresPerJob") == "gres:gpu:1", f"{s.rule}: {s.job}"
            assert gpus_in_job in {"0", "1"}, f"{s.rule}: CUDA_VISIBLE_DEVICES={gpus_in_job}"
        else:
            assert not s.gpu_requested, f"{s.rule} asked for a GPU: {s.sbatch}"
            assert not s.gpu_allocated, f"{s.rule} was given a GPU: {s.job}"
            assert gpus_in_job is None, f"{s.rule} saw CUDA_VISIBLE_DEVICES={gpus_in_job}"

    # Inside the rule's own process: the training script logs the CUDA_VISIBLE_DEVICES it got.
    train_logs = sorted((work / "logs" / "runs").rglob("train.log"))
    n_train = sum(s.rule == "train" for s in subs)
    assert len(train_logs) == n_train, f"{n_train} train jobs but train logs {train_logs}"
    for log in train_logs:
        seen = re.findall(r"CUDA_VISIBLE_DEVICES=(\S+)", log.read_text())
        assert seen, f"{log} does not log CUDA_VISIBLE_DEVICES (the train script should)"
        assert seen[0] in {"0", "1"}, f"{log}: training job saw CUDA_VISIBLE_DEVICES={seen[0]}"

    # The workflow's final products exist, i.e. the local rules ran on the submit host.
    assert (work / "results" / "tables" / "layers.csv").is_file()
    assert any((work / "results" / "figures").glob("*.png"))
