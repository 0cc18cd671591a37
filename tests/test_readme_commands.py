"""Every command the README shows works as written (issue 22).

The commands are read from the README itself: the lines of its ``bash`` blocks and its inline
code spans that start with ``snakemake`` or ``make run``. Each one that runs the workflow is
run here as a dry run (``-n`` appended; ``make run`` gets its own ``ARGS="-n"``) in a fresh
copy of the workflow, placeholders filled in (``<run id>``: a run of the default
configuration, ``<file>``: an experiment file); those that cannot be dry runs (the report of a
finished run, ``--unlock``, ``--lint``) are listed with the reason and their count is checked.
The forcing examples are checked for what the README says they do, on a copy of the tiny run.
"""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest
from workflow_utils import (
    REPO,
    TINY_CONFIG,
    completed_tiny_run,
    copy_run,
    copy_workflow,
    snakemake_command,
)

pytestmark = pytest.mark.slow

README = REPO / "README.md"
#: What a dry run cannot show, with the reason (matched against the command's options).
NOT_DRY = {
    "--report": "builds the report of a finished run (tests/test_workflow.py builds it)",
    "--unlock": "only removes a lock; nothing to dry-run",
    "--lint": "a lint, run by `make lint` and tests/test_lint.py",
}
#: The README's example of what not to write (checked below for what it does instead).
TRAP = "snakemake --cores 2 --forcerun ncc results/runs/<run id>/ncc.csv"
PLACEHOLDERS = {
    "<run id>": "mnist1d/mlp-d4-w64/relu/ce/noise0/fold0",
    "<file>": "edge-of-stability.yaml",
}


def readme_commands() -> list[str]:
    """The README's ``snakemake ...`` and ``make run ...`` commands, in order, deduplicated."""
    text = README.read_text()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            found.append(line.split("  #", 1)[0].strip())
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    found += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    out = []
    for cmd in found:
        if re.match(r"(snakemake|make run)( |$)", cmd) and cmd not in out:
            out.append(cmd)
    return out


def _fill(cmd: str) -> str:
    for key, value in PLACEHOLDERS.items():
        cmd = cmd.replace(key, value)
    return cmd


def _dry(cmd: str) -> list[str]:
    """The argv that runs ``cmd`` as written, as a dry run with this checkout's environment."""
    argv = shlex.split(_fill(cmd))
    if argv[0] == "make":
        # `make run ARGS="-n"` as the README writes it (ARGS=-n added to a plain `make run`);
        # -o: this checkout's environment is set up already, never reinstalled here
        venv = str(REPO / ".venv")
        args = argv[1:] if any(a.startswith("ARGS=") for a in argv) else [*argv[1:], "ARGS=-n"]
        assert "-n" in next(a for a in args if a.startswith("ARGS=")), cmd
        return ["make", "-o", f"{venv}/.installed", *args, f"VENV={venv}"]
    return [*snakemake_command(), *argv[1:], "-n"]


def test_the_readme_shows_the_commands_it_should():
    cmds = readme_commands()
    assert "snakemake --cores 4" in cmds
    assert 'make run ARGS="-n"' in cmds
    assert "snakemake results/runs/<run id>/ncc.csv --cores 2 --force" in cmds
    for cmd in cmds:  # a target after --forcerun / --configfile is the documented trap only
        words = shlex.split(cmd)
        for opt in ("--forcerun", "--configfile"):
            if opt in words and cmd != TRAP:
                assert len(words) == words.index(opt) + 2, f"target after {opt}: {cmd}"


def test_every_readme_command_dry_runs_as_written(tmp_path):
    wd = copy_workflow(tmp_path / "wd")
    (wd / "Makefile").write_text((REPO / "Makefile").read_text())
    ran, not_dry, done = [], [], set()
    for cmd in readme_commands():
        if cmd == TRAP:
            continue  # test_the_forcing_examples_do_what_the_readme_says
        reason = next((r for opt, r in NOT_DRY.items() if opt in cmd.split()), None)
        if reason is not None:
            not_dry.append(cmd)
            print(f"not a dry run: {cmd}: {reason}")
            continue
        argv = _dry(cmd)
        ran.append(cmd)
        if tuple(argv) in done:  # `make run` is `make run ARGS="-n"` here
            continue
        done.add(tuple(argv))
        proc = subprocess.run(
            argv, cwd=wd, capture_output=True, text=True, timeout=600, check=False
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{cmd}\n{out[-3000:]}"
        assert "This was a dry-run" in out or "Nothing to be done" in out, f"{cmd}\n{out[-2000:]}"
    assert len(ran) >= 8, ran
    assert len(not_dry) <= 3, not_dry


def test_the_forcing_examples_do_what_the_readme_says(tmp_path_factory, tmp_path):
    wd = copy_run(completed_tiny_run(tmp_path_factory.getbasetemp()), tmp_path / "wd")
    run = "mnist1d/mlp-d2-w16/tanh/ce/noise0/fold0"
    target = f"results/runs/{run}/ncc.csv"

    def jobs(*args: str) -> list[str]:
        proc = subprocess.run(
            [*snakemake_command(), *args, "-n"], cwd=wd, capture_output=True, text=True,
            timeout=600, check=True,
        )  # fmt: skip
        return re.findall(r"^(?:local)?rule (\S+):", proc.stdout + proc.stderr, flags=re.M)

    config = ["--configfile", str(TINY_CONFIG)]
    assert jobs(*config, "--cores", "2") == []  # the tiny run is complete
    # target first: exactly that job
    assert jobs(target, "--cores", "2", "--force", *config) == ["ncc"]
    # the trap: the path after --forcerun is read as a rule name, every NCC job reruns
    trap = jobs(*config, "--cores", "2", "--forcerun", "ncc", target)
    assert trap.count("ncc") >= 2, trap
