"""Warm start in real Snakemake runs under faults (issue 23).

A small workflow in a temporary directory includes the pipeline's own workflow/rules/warm.smk
(server start and stop, the socket variable, the benchmark writer) and runs rule scripts that
delegate to the server as the pipeline's do, on a private copy of the package. Its jobs sleep or
burn CPU for a moment; each Snakemake run takes a few seconds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mfoml.warm_launch import start_server
from warm_utils import REPO, alive, copy_scripts, group_pids, read_pid, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="warm start: Linux"),
]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

SNAKEFILE = """
import os
from pathlib import Path

SCRIPTS = Path(config["scripts"])
config.setdefault("warm_start", True)
config.setdefault("device", "cpu")
config.setdefault("sleep", 0)


include: {warm_smk!r}


rule slow:
    output:
        "out/{{name}}.txt",
    params:
        sleep=config["sleep"],
    log:
        "logs/{{name}}.log",
    script:
        "slow.py"


rule burn:
    output:
        "out/burn.txt",
    benchmark:
        "bench/burn.tsv"
    log:
        "logs/burn.log",
    script:
        "burn.py"
"""

HEAD = """
import sys

sys.path.insert(0, snakemake.config["scripts"])
from mfoml.warm import delegate

delegate(snakemake)
import os
import time
"""

SLOW = """
os.makedirs("pids", exist_ok=True)
with open(f"pids/{snakemake.wildcards.name}.pid", "w") as fh:
    fh.write(str(os.getpid()))
time.sleep(float(snakemake.params.sleep))
with open(snakemake.output[0], "w") as fh:
    fh.write(os.environ.get("MFOML_WARM_CHILD", "0") + " " + str(os.getppid()) + "\\n")
"""

BURN = """
block = bytearray(200 << 20)  # 200 MiB resident
for i in range(0, len(block), 4096):
    block[i] = 1
end = time.process_time() + 0.6
while time.process_time() < end:
    pass
with open(snakemake.output[0], "w") as fh:
    fh.write(os.environ.get("MFOML_WARM_CHILD", "0") + "\\n")
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    wd = tmp_path_factory.mktemp("warmflow")
    scripts = copy_scripts(wd)
    (wd / "Snakefile").write_text(
        SNAKEFILE.format(warm_smk=str(REPO / "workflow" / "rules" / "warm.smk"))
    )
    (wd / "slow.py").write_text(textwrap.dedent(HEAD) + textwrap.dedent(SLOW))
    (wd / "burn.py").write_text(textwrap.dedent(HEAD) + textwrap.dedent(BURN))
    (wd / "scripts.txt").write_text(str(scripts))
    return wd


def snakemake(
    wd: Path, *targets: str, config: tuple[str, ...] = (), env: dict | None = None
) -> subprocess.Popen:
    """Start ``snakemake`` in ``wd`` on the test workflow for ``targets`` with ``config``."""
    full = dict(os.environ, **(env or {}))
    full.pop("MFOML_WARM_SOCKET", None)
    full.pop("MFOML_WARM_CHILD", None)
    cmd = [SNAKEMAKE, "--cores", "2", "--nolock", "-d", str(wd), "-s", str(wd / "Snakefile")]
    cmd += [*targets, "--config", f"scripts={(wd / 'scripts.txt').read_text()}", *config]
    return subprocess.Popen(
        cmd,
        cwd=wd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def server_pid(wd: Path) -> int:
    log = wd / "logs" / "warm_start.log"
    wait_for(lambda: log.exists() and "serving at" in log.read_text(), 60, "the warm server")
    return int(re.search(r"serving at \S+ \(pid (\d+)\)", log.read_text()).group(1))


def test_server_killed_under_snakemake_keeps_no_output_and_the_rerun_runs_the_jobs(workdir):
    wd = workdir
    run = snakemake(wd, "out/a.txt", "out/b.txt", config=("sleep=60",))
    jobs = [read_pid(wd / "pids" / f"{name}.pid", 60) for name in "ab"]
    server = server_pid(wd)
    assert all(os.getpgid(pid) == pid for pid in jobs)  # forks of the server, own groups
    os.kill(server, signal.SIGKILL)
    out, _ = run.communicate(timeout=120)
    assert run.returncode != 0, out
    assert out.count("Error in rule slow") == 2, out
    for pid in jobs:
        assert not alive(pid) and group_pids(pid) == []  # no process of those jobs left
    assert not (wd / "out" / "a.txt").exists() and not (wd / "out" / "b.txt").exists()

    rerun = snakemake(wd, "out/a.txt", "out/b.txt", "out/burn.txt")
    out, _ = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, out
    for name in "ab":  # ran again, warm, in the new server
        warm, parent = (wd / "out" / f"{name}.txt").read_text().split()
        assert warm == "1" and int(parent) == server_pid(wd) != server
    assert (wd / "out" / "burn.txt").read_text() == "1\n"


def test_warm_benchmark_file_has_the_jobs_own_figures_and_a_marker(workdir):
    """The burn job (0.6 CPU-s, 200 MiB) ran warm in the test above: its benchmark file has the
    job's CPU time and peak memory, not its thin client's (about 0.1 CPU-s, 30 MB)."""
    wd = workdir
    if not (wd / "bench" / "burn.tsv").exists():
        snakemake(wd, "out/burn.txt").communicate(timeout=180)
    header, row = (wd / "bench" / "burn.tsv").read_text().splitlines()
    record = dict(zip(header.split("\t"), row.split("\t"), strict=True))
    assert record["warm_start"] == "1"
    assert float(record["cpu_time"]) >= 0.55
    assert float(record["max_rss"]) >= 200
    assert record["max_uss"] == "-"  # the client's figure, not the job's: left out


def test_warm_start_false_ignores_an_inherited_socket(workdir, tmp_path):
    srv = start_server((workdir / "scripts.txt").read_text(), str(tmp_path / "other.log"))
    assert srv is not None
    try:
        socket_path = os.environ.pop("MFOML_WARM_SOCKET")
        run = snakemake(
            workdir,
            "out/c.txt",
            config=("warm_start=False",),
            env={"MFOML_WARM_SOCKET": socket_path},
        )
        out, _ = run.communicate(timeout=180)
    finally:
        srv.stop()
    assert run.returncode == 0, out
    warm, parent = (workdir / "out" / "c.txt").read_text().split()
    assert warm == "0" and int(parent) != srv.proc.pid  # cold: a child of Snakemake's shell
    assert "): rule " not in (tmp_path / "other.log").read_text()  # the server ran no job


def test_ctrl_c_ends_a_warm_job_promptly(workdir):
    """Ctrl-C in a terminal: SIGINT to Snakemake's process group (Snakemake, the job's shell and
    its client); the client forwards it to the job, which ends at once, as a cold job would."""
    wd = workdir
    run = snakemake(wd, "out/d.txt", config=("sleep=60",))
    pid = read_pid(wd / "pids" / "d.pid", 60)
    server = server_pid(wd)
    start = time.monotonic()
    os.killpg(run.pid, signal.SIGINT)
    out, _ = run.communicate(timeout=60)
    assert run.returncode != 0, out
    assert not alive(pid)
    assert time.monotonic() - start < 30, out  # the job sleeps 60 s
    wait_for(lambda: not alive(server), 30, "the server to stop")
    assert not (wd / "out" / "d.txt").exists()
