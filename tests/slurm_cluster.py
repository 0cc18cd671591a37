"""A real single-node SLURM cluster on loopback, for integration tests.

`slurm_cluster` starts, inside a directory of the caller's choosing, a private MUNGE daemon (own
key and socket), ``slurmctld`` and ``slurmd`` for one node ``localhost`` with fake GPUs (gres
files that are symlinks to ``/dev/null``), waits until the node is idle, and on exit stops exactly
the processes it started (by PID; never by name). Nothing under /etc or /run is used or changed,
so it does not interfere with a MUNGE or SLURM installation of the machine. Free TCP ports are
picked at start, so two clusters can run side by side.

Client commands (``sbatch``, ``squeue``, ``sinfo``, ``scontrol``) find the cluster through the
``SLURM_CONF`` environment variable: run them with `SlurmCluster.env` (or `SlurmCluster.run`).

The facts this relies on were checked with SLURM 22.05 (Debian 12) and are recorded in
``shared/SLURM-NOTES.md``: select/cons_tres with gres/gpu, proctrack/linuxproc, task/none, no
accounting daemon (so ``sacct`` does not work: use ``squeue`` for job status) and MinJobAge long
enough for ``squeue`` to still list finished jobs.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: Executables the cluster needs (Debian packages slurmctld, slurmd, slurm-client, munge).
REQUIRED_PROGRAMS = (
    "munged",
    "mungekey",
    "slurmctld",
    "slurmd",
    "sbatch",
    "srun",
    "scancel",
    "squeue",
    "sinfo",
    "scontrol",
)

PARTITION = "debug"
NODE = "localhost"


def missing_requirements() -> str | None:
    """Say why a local SLURM cluster cannot be started here, or None if it can.

    Returns
    -------
    str or None
        A human-readable reason (missing programs, not running as root), or None.
    """
    missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p) is None]
    if missing:
        return (
            "SLURM/MUNGE programs not found: "
            + ", ".join(missing)
            + " (install the Debian packages slurmctld slurmd slurm-client munge as root; "
            ".ci/run does this)"
        )
    if os.geteuid() != 0:
        return "a local SLURM cluster needs root (slurmd launches jobs as the submitting user)"
    return None


def _free_ports(n: int) -> list[int]:
    """Return ``n`` distinct TCP ports on 127.0.0.1 that are free right now."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _tail(path: Path, n: int = 30) -> str:
    """The last ``n`` lines of a text file, or a note that it does not exist."""
    if not path.exists():
        return f"({path} does not exist)"
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join(lines[-n:])


@dataclass
class SlurmCluster:
    """A running single-node cluster (see `slurm_cluster`).

    Attributes
    ----------
    root : Path
        Directory holding configuration, state, spool and logs.
    conf : Path
        The ``slurm.conf`` file; exported as ``SLURM_CONF`` in `env`.
    env : dict of str to str
        Environment for client commands and for Snakemake (``os.environ`` plus ``SLURM_CONF``,
        without any inherited ``SLURM_*`` job variables).
    partition : str
        Name of the single (default) partition.
    cpus, memory_mb, gpus : int
        What the node offers (CPUs, MB of memory, fake GPUs).
    """

    root: Path
    conf: Path
    env: dict[str, str]
    partition: str
    cpus: int
    memory_mb: int
    gpus: int
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    @property
    def logs(self) -> dict[str, Path]:
        """Log files of the daemons, by daemon name."""
        return {
            name: self.root / "log" / f"{name}.log" for name in ("munged", "slurmctld", "slurmd")
        }

    def run(
        self, *args: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster.

        Parameters
        ----------
        *args : str
            Command and arguments, e.g. ``("scontrol", "show", "job", "3")``.
        check : bool
            Raise `RuntimeError` (with stdout and stderr) if the command fails.
        timeout : float
            Seconds before the command is abandoned.

        Returns
        -------
        subprocess.CompletedProcess
            With text ``stdout`` and ``stderr``.
        """
        res = subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and res.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(args)}` failed with exit code {res.returncode}:\n"
                f"{res.stdout}\n{res.stderr}"
            )
        return res

    def jobs(self) -> list[dict[str, str]]:
        """All jobs slurmctld still remembers (running and finished within MinJobAge).

        Returns
        -------
        list of dict
            One ``key -> value`` mapping per job, parsed from ``scontrol show job -o``
            (keys such as ``JobId``, ``JobName``, ``JobState``, ``ExitCode``, ``Comment``,
            ``TresPerJob``, ``TRES``, ``StdOut``).
        """
        out = self.run("scontrol", "show", "job", "-o").stdout
        jobs = []
        for line in out.splitlines():
            line = line.strip()
            if not line or line.startswith("No jobs"):
                continue
            job = {}
            for token in line.split():
                key, sep, value = token.partition("=")
                if sep:
                    job[key] = value
            jobs.append(job)
        return jobs

    def alive(self) -> dict[str, bool]:
        """Whether each started daemon process is still running."""
        return {name: p.poll() is None for name, p in self._procs.items()}

    def diagnostics(self) -> str:
        """Daemon exit codes and log tails, for error messages."""
        parts = []
        for name, p in self._procs.items():
            parts.append(f"{name} (pid {p.pid}): exit code {p.poll()}")
        for name, path in self.logs.items():
            parts.append(f"--- {name} log ({path}) ---\n{_tail(path)}")
        return "\n".join(parts)

    def cancel_all_jobs(self, timeout: float = 15) -> None:
        """Cancel the jobs of this cluster that have not ended, and wait until they are gone.

        Job processes run under ``slurmstepd``, which detaches from ``slurmd``; stopping the
        daemons alone would leave them running.
        """
        if not self.alive().get("slurmctld"):
            return
        ended = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
        deadline = time.monotonic() + timeout
        while True:
            try:
                active = [j["JobId"] for j in self.jobs() if j.get("JobState") not in ended]
            except (RuntimeError, subprocess.TimeoutExpired):
                return
            if not active or time.monotonic() > deadline:
                if active:
                    print(f"slurm_cluster: jobs {active} still not ended", file=sys.stderr)
                return
            self.run("scancel", *active, check=False)
            time.sleep(0.5)

    def stop(self, timeout: float = 15) -> None:
        """Cancel leftover jobs, then stop exactly the daemons this object started.

        Each daemon gets SIGTERM, then SIGKILL after ``timeout`` seconds; newest first.
        """
        self.cancel_all_jobs(timeout=timeout)
        for name in reversed(list(self._procs)):
            p = self._procs[name]
            if p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(
                    f"slurm_cluster: {name} (pid {p.pid}) ignored SIGTERM; killing", file=sys.stderr
                )
                p.kill()
                p.wait(timeout=timeout)
        self._procs.clear()


def _write_config(
    root: Path,
    *,
    munge_socket: Path,
    cpus: int,
    memory_mb: int,
    gpus: int,
    ports: list[int],
    min_job_age: int,
) -> Path:
    """Write slurm.conf and gres.conf (and the fake GPU device links) under ``root/etc``."""
    etc = root / "etc"
    dev = root / "dev"
    for d in (etc, dev, root / "state", root / "spool", root / "log", root / "run"):
        d.mkdir(parents=True, exist_ok=True)
    # Fake GPUs: symlinks to /dev/null (regular or missing files break slurmd; see SLURM-NOTES).
    for i in range(gpus):
        link = dev / f"nvidia{i}"
        if not link.is_symlink():
            link.symlink_to("/dev/null")
    conf = etc / "slurm.conf"
    lines = [
        "ClusterName=mfomltest",
        f"SlurmctldHost={NODE}(127.0.0.1)",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket}",
        "MpiDefault=none",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "DefMemPerCPU=500",
        "GresTypes=gpu",
        "ReturnToService=2",
        # squeue only lists finished jobs for MinJobAge seconds; the plugin needs it >= 120 s.
        f"MinJobAge={min_job_age}",
        "KillWait=5",
        "InactiveLimit=0",
        "SlurmdParameters=config_overrides",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        f"NodeName={NODE} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} "
        + (f"Gres=gpu:{gpus} " if gpus else "")
        + "State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
    ]
    conf.write_text("\n".join(lines) + "\n")
    gres = ["AutoDetect=off"]
    if gpus:
        gres.append(f"Name=gpu File={dev}/nvidia[0-{gpus - 1}]")
    (etc / "gres.conf").write_text("\n".join(gres) + "\n")
    return conf


def _start(
    cluster: SlurmCluster, name: str, cmd: list[str], env: dict[str, str]
) -> subprocess.Popen:
    """Start one daemon in the foreground (its own process group) and record it."""
    out = open(cluster.root / "log" / f"{name}.out", "wb")
    try:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    finally:
        out.close()
    cluster._procs[name] = proc
    return proc


def _wait_for(
    cluster: SlurmCluster, what: str, ready, timeout: float, interval: float = 0.2
) -> None:
    """Poll ``ready()`` until true; fail early if a daemon died, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        dead = [n for n, ok in cluster.alive().items() if not ok]
        if dead:
            raise RuntimeError(
                f"local SLURM cluster: {', '.join(dead)} exited while waiting for {what}\n"
                + cluster.diagnostics()
            )
        if ready():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"local SLURM cluster: timed out after {timeout:.0f} s waiting for {what}\n"
                + cluster.diagnostics()
            )
        time.sleep(interval)


@contextlib.contextmanager
def slurm_cluster(
    root: Path,
    *,
    cpus: int = 2,
    memory_mb: int = 4000,
    gpus: int = 2,
    min_job_age: int = 600,
    timeout: float = 60,
) -> Iterator[SlurmCluster]:
    """Bring up a single-node SLURM cluster on loopback for the duration of a ``with`` block.

    Parameters
    ----------
    root : Path
        Empty or new directory for configuration, state, spool and logs (the MUNGE socket goes
        to a private directory under the system temp dir, removed on exit).
    cpus : int
        CPUs the node advertises (``SlurmdParameters=config_overrides`` lets this differ
        from the hardware).
    memory_mb : int
        Memory the node advertises, in MB.
    gpus : int
        Number of fake GPUs (gres ``gpu``); jobs asking ``--gpus=k`` get
        ``CUDA_VISIBLE_DEVICES`` set but no real device.
    min_job_age : int
        Seconds finished jobs stay visible to ``squeue``/``scontrol``.
    timeout : float
        Seconds to wait for the daemons and for the node to become idle.

    Yields
    ------
    SlurmCluster
        The running cluster; stopped (its own PIDs only) when the block exits.

    Raises
    ------
    RuntimeError
        If `missing_requirements` gives a reason, or a daemon fails to start (with the daemon
        logs in the message).
    """
    reason = missing_requirements()
    if reason:
        raise RuntimeError(f"cannot start a local SLURM cluster: {reason}")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    ports = _free_ports(2)
    # munged insists that every directory above its socket be world-executable, which pytest's
    # tmp_path (under a 0700 directory) is not; so the socket lives in a short private
    # directory of its own under the system temp dir, removed again on exit.
    sock_dir = Path(tempfile.mkdtemp(prefix="mfoml-munge-"))
    sock_dir.chmod(0o755)
    sock = sock_dir / "munge.sock"
    conf = _write_config(
        root,
        munge_socket=sock,
        cpus=cpus,
        memory_mb=memory_mb,
        gpus=gpus,
        ports=ports,
        min_job_age=min_job_age,
    )

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env["SLURM_CONF"] = str(conf)
    # Inside a job, snakemake-executor-plugin-slurm-jobstep deletes every SLURM_* variable,
    # SLURM_CONF included, before it calls `srun`; a cluster whose slurm.conf is not at the
    # compiled-in /etc/slurm/slurm.conf is then unreachable from the job. A one-line `srun`
    # wrapper first on PATH (jobs inherit PATH through sbatch --export=ALL) restores it.
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    srun = bin_dir / "srun"
    srun.write_text(
        "#!/bin/sh\n"
        f'SLURM_CONF={shlex.quote(str(conf))} exec {shlex.quote(shutil.which("srun") or "srun")} "$@"\n'
    )
    srun.chmod(0o755)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    cluster = SlurmCluster(
        root=root,
        conf=conf,
        env=env,
        partition=PARTITION,
        cpus=cpus,
        memory_mb=memory_mb,
        gpus=gpus,
    )
    try:
        # A private MUNGE: own key, socket, pid, seed and log files (nothing under /etc or /run).
        key = root / "etc" / "munge.key"
        subprocess.run(
            ["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True
        )
        _start(
            cluster,
            "munged",
            [
                "munged",
                "--foreground",
                f"--socket={sock}",
                f"--key-file={key}",
                f"--pid-file={root / 'run' / 'munged.pid'}",
                f"--seed-file={root / 'run' / 'munged.seed'}",
                f"--log-file={root / 'log' / 'munged.log'}",
            ],
            env,
        )
        _wait_for(cluster, "the MUNGE socket", sock.exists, timeout)
        _start(cluster, "slurmctld", ["slurmctld", "-D", "-i", "-f", str(conf)], env)

        def ctld_up() -> bool:
            return cluster.run("scontrol", "ping", check=False, timeout=10).stdout.count("UP") > 0

        _wait_for(cluster, "slurmctld to answer", ctld_up, timeout)
        _start(cluster, "slurmd", ["slurmd", "-D", "-N", NODE, "-f", str(conf)], env)

        def node_idle() -> bool:
            res = cluster.run("sinfo", "-h", "-N", "-o", "%T", check=False, timeout=10)
            return res.returncode == 0 and res.stdout.strip() == "idle"

        _wait_for(cluster, f"node {NODE} to become idle", node_idle, timeout)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)
