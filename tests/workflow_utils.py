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
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_ITEMS = ("Snakefile", "workflow", "config", "profiles", "envs", "pyproject.toml")
# Python bytecode is left out; numba's compiled kernels (__pycache__/*.nbi, *.nbc) are copied:
# they are valid wherever the source file has the same content and modification time, and
# compiling the fast forest's kernels costs about 18 CPU-s in every copy's first probe job.
_IGNORE = shutil.ignore_patterns("*.egg-info", ".pytest_cache", "*.pyc")
_WARMED: list[bool] = []
# What the workflow's jobs compile: the probe (float16 dumps), the fast classifier with and
# without bootstrap, on one and two threads, its predictions and M-term curve (tabular jobs).
_WARM_CODE = """
import numpy as np
from mfoml.wavelets import WaveletForestClassifier, sparsity_probe
rng = np.random.default_rng(0)
X = rng.random((200, 6))
y = (X[:, 0] > 0.5).astype(np.int64) + (X[:, 1] > 0.5)
sparsity_probe(X.astype(np.float16), y, max_depth=4)
for bootstrap in (True, False):
    for n_jobs in (1, 2):
        clf = WaveletForestClassifier(
            2, max_depth=4, bootstrap=bootstrap, n_jobs=n_jobs, random_state=0, backend="fast"
        ).fit(X, y)
        clf.predict_proba(X)
        clf.mterm_curve(X, y, n_terms=np.arange(4))
"""


def warm_numba_cache() -> None:
    """Compile the fast forest's numba kernels into this repository's cache once (a second
    call, or a warm cache, costs about a second), so that :func:`copy_workflow` copies them."""
    if _WARMED:
        return
    cache = REPO / "workflow" / "scripts" / "mfoml" / "wavelets" / "__pycache__"
    cache.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow" / "scripts"))
    with FileLock(str(cache / "warm.lock")):
        subprocess.run([sys.executable, "-c", _WARM_CODE], env=env, check=True, timeout=600)
    _WARMED.append(True)


def snakemake_command() -> list[str]:
    """The command that starts Snakemake: the venv's entry point next to this interpreter, the
    repository's ``.venv/bin/snakemake``, or ``python -m snakemake``."""
    for cand in (Path(sys.executable).parent / "snakemake", REPO / ".venv" / "bin" / "snakemake"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return [str(cand)]
    return [sys.executable, "-m", "snakemake"]


def copy_workflow(dest: str | os.PathLike[str], source: str | os.PathLike[str] = REPO) -> Path:
    """Copy the workflow sources of ``source`` (default: this repository) into ``dest``.

    Copies :data:`WORKFLOW_ITEMS` that exist (file modification times preserved) with numba's
    compiled kernels (warmed first, :func:`warm_numba_cache`), not the outputs (results/,
    resources/, logs/, .snakemake/) nor Python bytecode. Returns ``dest``.
    """
    src, out = Path(source), Path(dest)
    if src == REPO:
        warm_numba_cache()
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


def config_error(cfg: dict) -> str:
    """The message of the ``ConfigError`` that validating ``cfg`` must raise."""
    import pytest
    from mfoml.config import ConfigError, validate_config

    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    return str(info.value)


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


def assert_aggregation_names_corrupt_table(
    wd: Path, table: str, corrupt: Callable[[str], str], expected: str
) -> None:
    """Corrupt the result table ``table`` (a path relative to ``wd``, a copy of the tiny run)
    with ``corrupt`` (old text -> new text) and force the aggregation of the layers table: it
    must fail, its log naming the file and ``expected``, and leave no layers table."""
    path = wd / table
    path.write_text(corrupt(path.read_text()))
    target = "results/tables/layers.csv"
    # the target between two options: `--forcerun` takes every following word as a rule name,
    # and `--configfile` (put first by run_snakemake) every following word as a file
    proc = run_snakemake(
        wd, "--cores", "1", target, "--forcerun", "aggregate", configfile=wd / TINY_CONFIG
    )
    assert proc.returncode != 0
    log = (wd / "logs" / "aggregate.log").read_text()
    assert f"{table}: " in log and expected in log, log[-2000:]
    assert not (wd / target).exists()
