"""Helpers to run the Snakemake workflow from tests (shared by the workflow, rerun, profile and
tabular tests).

- :func:`copy_workflow` copies the workflow sources (Snakefile, workflow/, config/, profiles/,
  envs/) into a directory, so that a test can edit modules or configs without touching the
  real tree; outputs are then written inside the copy.
- :func:`run_snakemake` runs ``snakemake`` (the venv's, else ``python -m snakemake``) on a
  working directory with that directory's Snakefile, returning the ``CompletedProcess``.
- :func:`dry_run_jobs` parses Snakemake's own dry-run job list into ``(rule, wildcards)`` pairs.
- :func:`copy_run` copies a completed working directory (results, resources, .snakemake
  metadata) preserving modification times, so several tests can share one finished run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_ITEMS = ("Snakefile", "workflow", "config", "profiles", "envs", "pyproject.toml")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache", "*.pyc")


def snakemake_command() -> list[str]:
    """The command that starts Snakemake: the venv's entry point next to this interpreter, the
    repository's ``.venv/bin/snakemake``, or ``python -m snakemake``."""
    for cand in (Path(sys.executable).parent / "snakemake", REPO / ".venv" / "bin" / "snakemake"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return [str(cand)]
    return [sys.executable, "-m", "snakemake"]


def copy_workflow(dest: str | os.PathLike[str], source: str | os.PathLike[str] = REPO) -> Path:
    """Copy the workflow sources of ``source`` (default: this repository) into ``dest``.

    Copies :data:`WORKFLOW_ITEMS` that exist (file modification times preserved), not the
    outputs (results/, resources/, logs/, .snakemake/). Returns ``dest``.
    """
    src, out = Path(source), Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    for item in WORKFLOW_ITEMS:
        p = src / item
        if p.is_dir():
            shutil.copytree(p, out / item, ignore=_IGNORE, dirs_exist_ok=True)
        elif p.is_file():
            shutil.copy2(p, out / item)
    return out


def copy_run(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Copy a whole working directory (sources, outputs and .snakemake metadata) preserving
    modification times, so that Snakemake sees the copy exactly as up to date as the source."""
    shutil.copytree(source, dest, symlinks=True, ignore=_IGNORE, dirs_exist_ok=False)
    return Path(dest)


def run_snakemake(
    workdir: str | os.PathLike[str],
    *args: str,
    configfile: str | os.PathLike[str] | None = None,
    snakefile: str | os.PathLike[str] | None = None,
    timeout: float | None = 900,
    env: dict[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """Run Snakemake on ``workdir`` and capture its output.

    Parameters
    ----------
    workdir : working directory (``--directory``); its Snakefile is used unless ``snakefile``.
    *args : further command-line arguments (e.g. ``"--cores", "2"`` or ``"-n"``).
    configfile : ``--configfile`` (replaces the embedded default configuration).
    snakefile : the Snakefile (default ``workdir/Snakefile``).
    timeout : seconds before the process is killed (``subprocess.TimeoutExpired``).
    env : extra environment variables.
    check : raise ``AssertionError`` with the output tail when the exit status is not 0.

    Returns
    -------
    subprocess.CompletedProcess with ``stdout``/``stderr`` as text.
    """
    wd = Path(workdir)
    cmd = [
        *snakemake_command(),
        "--snakefile",
        str(snakefile or wd / "Snakefile"),
        "--directory",
        str(wd),
    ]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    cmd += [str(a) for a in args]
    full_env = dict(os.environ)
    full_env.setdefault("OMP_NUM_THREADS", "1")
    full_env.setdefault("MKL_NUM_THREADS", "1")
    full_env["MPLBACKEND"] = "Agg"
    full_env.update(env or {})
    proc = subprocess.run(
        cmd, cwd=wd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


_RULE_RE = re.compile(r"^(?:local)?rule (\S+):\s*$")
_WILDCARDS_RE = re.compile(r"^\s+wildcards: (.*)$")


def dry_run_jobs(
    workdir: str | os.PathLike[str], *args: str, **kwargs: object
) -> list[tuple[str, dict[str, str]]]:
    """Jobs Snakemake would run now, from its own dry run (``-n``).

    Returns
    -------
    list of ``(rule, wildcards)``; empty when Snakemake reports nothing to be done.

    Raises
    ------
    AssertionError when the dry run fails.
    """
    proc = run_snakemake(workdir, "-n", "--cores", "1", *args, check=True, **kwargs)  # type: ignore[arg-type]
    text = proc.stdout + "\n" + proc.stderr
    jobs: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        m = _RULE_RE.match(line)
        if m:
            jobs.append((m.group(1), {}))
            continue
        m = _WILDCARDS_RE.match(line)
        if m and jobs:
            pairs = [p.split("=", 1) for p in m.group(1).split(", ") if "=" in p]
            jobs[-1][1].update({k: v for k, v in pairs})
    if not jobs and "Nothing to be done" not in text:
        raise AssertionError(f"could not parse the dry run:\n{text[-4000:]}")
    return jobs


TINY_CONFIG = Path("config") / "tests" / "tiny.yaml"
_COMPLETED: dict[str, Path] = {}


def completed_tiny_run(base: str | os.PathLike[str], cores: int = 2) -> Path:
    """A working directory (a copy of this repository's workflow under ``base``) in which the
    tiny configuration ``config/tests/tiny.yaml`` ran to completion. Built once per test
    session: under pytest-xdist the workers share it (it is built beside their own temporary
    directories, under a file lock, by whichever worker asks first). Later calls return the same
    directory; treat it as read-only and use :func:`copy_run` to modify a copy."""
    key = "tiny"
    if key not in _COMPLETED:
        root = Path(base)
        if os.environ.get("PYTEST_XDIST_WORKER"):  # base is <session>/popen-gwN
            root = root.parent
        wd, done = root / "tiny-run", root / "tiny-run.done"
        with FileLock(str(root / "tiny-run.lock")):
            if not done.exists():
                if wd.exists():  # a build that failed in another worker
                    shutil.rmtree(wd)
                copy_workflow(wd)
                run_snakemake(wd, "--cores", str(cores), configfile=wd / TINY_CONFIG, check=True)
                done.touch()
        _COMPLETED[key] = wd
    return _COMPLETED[key]
