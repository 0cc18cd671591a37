"""Warm start: a rule script's job runs in a fork of a preloaded interpreter (local runs, Linux).

Every job of this workflow is a fresh Python process, and importing torch, scikit-learn, pandas
or numba costs that process more CPU time than the job's work in the default run (a training job:
about 8 CPU-s of imports for about 2 of epochs). With warm start, the workflow starts one server
per ``snakemake`` invocation (``start_server``, from ``workflow/rules/warm.smk``); each rule script
calls :func:`delegate` right after putting its scripts directory on ``sys.path``. The script's
process then becomes a thin client: it hands the server its script (Snakemake's temporary copy
with the pickled job), working directory, environment, ``sys.argv``/``sys.path`` and its
stdin/stdout/stderr file descriptors; the server imports the script's top-level modules once (and,
for the rule's next job, every module its earlier jobs imported later, e.g. ``torch._dynamo``),
forks, and the child
runs the script from its first line, exactly as ``python script.py`` would, with the client's
working directory, environment, arguments, file descriptors and thread settings. The client waits,
forwards SIGTERM/SIGINT/SIGHUP to the job, appends the job's CPU time and peak memory to the job's
log, and exits with the job's exit status. So Snakemake still runs one job per process and reruns,
logs, outputs and exit codes are unchanged; only the imports are shared.

Why our own code: no library runs a Snakemake script job in a pre-imported interpreter, and the
standard library's ``multiprocessing.forkserver`` (the same idea) serves only the process that
started it.

Safety. The server forks only while it has a single OS thread (checked in ``/proc/self/task``
before every fork; it starts with the BLAS/OpenMP thread variables at 1, so numpy and torch start
no pools, and the child then applies the job's own values with threadpoolctl and
``torch.set_num_threads``). A module whose import starts a thread, a changed ``mfoml`` source file
(the server compares the modification time and size of every ``mfoml`` module it has imported),
another checkout's ``mfoml``, or an unreachable server make the client run the job itself, cold,
and say why on stderr. The child reseeds numpy's global generator from the OS, as a new process
would (Python's ``random`` reseeds itself after a fork). The server exits when its parent (the
``snakemake`` process) is gone, killing its running jobs; a job whose client is killed is killed.

Caveat. Snakemake's ``benchmark:`` measures the job's process tree, which under warm start is the
client: the benchmark file's wall time is the job's, its CPU and memory columns are the client's.
The job's own CPU time and peak resident memory are the last line of its log. Set
``warm_start: false`` for benchmark files that measure the job itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

#: environment variable holding the server's socket path (set for the jobs by the workflow)
ENV_SOCKET = "MFOML_WARM_SOCKET"
#: set to "1" in a warm child, so that its own ``delegate`` call returns
ENV_CHILD = "MFOML_WARM_CHILD"
#: thread-count variables Snakemake sets per job; the server runs with all of them at 1
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
#: top-level packages the server never imports (their import or use starts threads)
NOT_PRELOADED = frozenset({"wandb", "__main__", "__mp_main__"})
MAX_MESSAGE = 1 << 20
PACKAGE_DIR = str(Path(__file__).resolve().parent)


class Unavailable(Exception):
    """The server cannot run this job: the caller runs it cold."""


def send_message(sock: socket.socket, obj: dict, fds: Iterable[int] = ()) -> None:
    """Send one protocol message (a JSON object, optionally with file descriptors)."""
    data = json.dumps(obj).encode()
    fds = list(fds)
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


def recv_message(sock: socket.socket) -> dict | None:
    """Receive one protocol message; None when the peer closed the connection."""
    data = sock.recv(MAX_MESSAGE)
    return json.loads(data) if data else None


# --------------------------------------------------------------------------------------- client


#: set inside Singularity/Apptainer containers: such a job must run in its container, cold
CONTAINER_VARS = ("SINGULARITY_CONTAINER", "APPTAINER_CONTAINER")


def python_identity() -> list[str]:
    """The interpreter and environment of this process (a job's must equal the server's)."""
    return [os.path.realpath(sys.executable), os.path.realpath(sys.prefix), sys.version]


def _std_fds() -> list[int]:
    """Descriptors 0, 1, 2 (``/dev/null`` in place of a closed one)."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    return fds


def run_in_server(socket_path: str, script: str) -> dict:
    """Run ``script`` (a path) in a fork of the server at ``socket_path``; wait for it.

    Returns the server's report: ``status`` (exit status, 128 + n for signal n), ``user`` and
    ``system`` (CPU seconds of the job and its waited-for children), ``maxrss_kb`` (peak resident
    set of the job, KiB, including the pages it shares with the server) and ``server_rss_kb``.
    Raises :class:`Unavailable` when the job was not started (the caller may run it cold).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(socket_path)
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot reach the server at {socket_path}: {exc}") from None
    mask = os.umask(0)
    os.umask(mask)
    request = {
        "script": os.path.abspath(script),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "argv": list(sys.argv),
        "path": list(sys.path),
        "umask": mask,
        "package": PACKAGE_DIR,
        "python": python_identity(),
    }
    sys.stdout.flush()
    sys.stderr.flush()
    with sock:
        send_message(sock, request, _std_fds())
        reply = recv_message(sock)
        if reply is None:
            raise Unavailable("the server closed the connection before starting the job")
        if "cold" in reply:
            raise Unavailable(reply["cold"])
        pid = int(reply["pid"])

        def forward(signum: int, _frame: object) -> None:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

        old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            reply = recv_message(sock)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
    if reply is None:
        return {"status": 1, "error": f"the server ended while job {pid} ran"}
    return reply


def _log_usage(report: dict) -> None:
    """Append the job's resource use to its Snakemake log file (``snakemake.log[0]``)."""
    job = getattr(sys.modules.get("__main__"), "snakemake", None)
    logs = list(getattr(job, "log", []) or [])
    if not logs:
        return
    if "error" in report:
        line = f"warm start: {report['error']}"
    else:
        cpu = report["user"] + report["system"]
        line = (
            f"warm start: job CPU time {cpu:.2f} s (user {report['user']:.2f} + system "
            f"{report['system']:.2f}), peak resident memory {report['maxrss_kb'] / 1024:.0f} MiB "
            f"counting the pages it shares with the preloaded server "
            f"({report['server_rss_kb'] / 1024:.0f} MiB resident when it forked the job)"
        )
    try:
        with open(logs[0], "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError:
        pass


def delegate() -> None:
    """Run the calling rule script's job in the warm server if one serves this run.

    Call it at the top of a rule script, after the script has put its scripts directory on
    ``sys.path``. Returns (and the script goes on, cold) without a server, inside a warm child,
    or when the server cannot take the job; otherwise it never returns: the process exits with
    the job's exit status.
    """
    socket_path = os.environ.get(ENV_SOCKET)
    if not socket_path or os.environ.get(ENV_CHILD) == "1":
        return
    script = getattr(sys.modules.get("__main__"), "__real_file__", None)
    if script is None:  # not a Snakemake script job
        return
    if any(var in os.environ for var in CONTAINER_VARS):
        print("mfoml warm start: running this job cold: it runs in a container", file=sys.stderr)
        return
    try:
        report = run_in_server(socket_path, script)
    except Unavailable as exc:
        print(f"mfoml warm start: running this job cold: {exc}", file=sys.stderr)
        return
    _log_usage(report)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(report["status"]))
