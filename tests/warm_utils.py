"""Helpers of the warm-start tests (tests/test_warm.py, tests/test_warm_faults.py,
tests/test_warm_workflow.py): a private copy of the package, job scripts that delegate like rule
scripts, and waiting for processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"


def copy_scripts(tmp_path: Path) -> Path:
    """A private copy of workflow/scripts/mfoml (its own PACKAGE_DIR, files the test may edit)."""
    dest = tmp_path / "scripts"
    shutil.copytree(SCRIPTS / "mfoml", dest / "mfoml", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def serving(scripts: Path, tmp_path: Path, **kwargs: Any) -> Iterator[Any]:
    """A warm-start server on ``scripts`` logging to ``tmp_path/warm.log`` (``kwargs`` go to
    ``start_server``), as a fixture body (``yield from``): stopped after the test, which must
    leave its socket directory removed."""
    from mfoml.warm_launch import start_server

    srv = start_server(str(scripts), str(tmp_path / "warm.log"), **kwargs)
    assert srv is not None
    yield srv
    srv.stop()
    assert not os.path.exists(srv.tmpdir)


def log_of(tmp_path: Path) -> str:
    """The text of the server log that :func:`serving` set up."""
    return (tmp_path / "warm.log").read_text()


def job(tmp_path: Path, scripts: Path, body: str, name: str = "job.py") -> Path:
    """A job script that delegates to the server like a rule script, then runs ``body``."""
    path = tmp_path / name
    head = f"""
        import sys
        __real_file__ = __file__
        sys.path.insert(0, {str(scripts)!r})
        from mfoml.warm import delegate
        delegate(None)  # run by plain python: no Snakemake object (no log, no benchmark)
    """
    path.write_text(textwrap.dedent(head) + textwrap.dedent(body))
    return path


def job_env(srv, env: dict | None = None) -> dict:
    """The environment of a client of ``srv`` (no inherited warm-child marker)."""
    full = dict(os.environ, MFOML_WARM_SOCKET=srv.socket_path, **(env or {}))
    full.pop("MFOML_WARM_CHILD", None)
    return full


def run_job(
    path: Path, srv, *args: str, env: dict | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(path), *args],
        env=job_env(srv, env),
        cwd=cwd or path.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def state(pid: int) -> str:
    """The process state letter of ``pid`` (R, S, T, Z, ...; "" when gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return ""
    return stat[stat.rfind(")") + 2 :].split()[0]


def wait_gone(pid: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def wait_for(predicate, seconds: float = 30, what: str = "the condition") -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def read_pid(path: Path, seconds: float = 30) -> int:
    """The pid a job wrote to ``path`` (waits for it)."""
    wait_for(lambda: path.exists() and path.read_text().strip(), seconds, f"{path}")
    return int(path.read_text())


def group_pids(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is ``pgid``, from ``/proc``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(name))
    return found
