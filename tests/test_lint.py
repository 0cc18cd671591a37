"""Static quality gates on the real tree: Snakemake's linter, snakefmt and ruff.

The same checks as ``make lint``; each failure message carries the tool's findings.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tool(name: str) -> str:
    """Path of a console script installed with this interpreter (the venv), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} is not installed (pip install -e '.[test]')"
    return found


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(args), cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_snakemake_lint_is_clean() -> None:
    """``snakemake --lint`` finds nothing (exit code 0 and no "Lints for ..." section)."""
    res = run(tool("snakemake"), "--lint", "--snakefile", str(REPO / "Snakefile"))
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "Lints for" not in out, (
        f"snakemake --lint exited with {res.returncode}:\n{out[-6000:]}"
    )
    assert "good condition" in out, f"unexpected snakemake --lint output:\n{out[-3000:]}"


def test_snakefmt_check_is_clean() -> None:
    """The Snakefile and workflow/rules/*.smk are formatted as snakefmt would write them."""
    files = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    files = [str(f) for f in files if f.exists()]
    assert files, "no Snakefile or workflow/rules/*.smk found"
    res = run(tool("snakefmt"), "--check", *files)
    if res.returncode != 0:
        diff = run(tool("snakefmt"), "--diff", *files)
        raise AssertionError(
            f"snakefmt --check exited with {res.returncode}:\n{res.stderr[-2000:]}\n"
            f"diff (run `snakefmt Snakefile workflow/rules` to apply):\n{diff.stdout[-6000:]}"
        )


def test_ruff_check_is_clean() -> None:
    res = run(tool("ruff"), "check", "--no-cache", ".")
    assert res.returncode == 0, f"ruff check . found problems:\n{(res.stdout + res.stderr)[-6000:]}"


def test_ruff_format_is_clean() -> None:
    res = run(tool("ruff"), "format", "--check", "--no-cache", ".")
    assert res.returncode == 0, (
        f"ruff format --check . would reformat files:\n{(res.stdout + res.stderr)[-6000:]}"
    )
