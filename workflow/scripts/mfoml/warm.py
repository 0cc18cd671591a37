"""Warm start: a rule script's job runs in a fork of a preloaded interpreter (local runs, Linux).

Every job of this workflow is a fresh Python process, and importing torch, scikit-learn, pandas
or numba costs that process more CPU time than the job's work in the default run (a training job:
about 8 CPU-s of imports for about 2 of epochs). With warm start, the workflow starts one server
per ``snakemake`` invocation (``start_server``, from ``workflow/rules/warm.smk``); each rule script
calls :func:`delegate` (with its ``snakemake`` object) right after putting its scripts directory
on ``sys.path``. The script's
process then becomes a thin client: it hands the server its script (Snakemake's temporary copy
with the pickled job), working directory, environment, ``sys.argv``/``sys.path`` and its
stdin/stdout/stderr file descriptors; the server imports the script's top-level modules once (and,
for the rule's next job, every module its earlier jobs imported later, e.g. ``torch._dynamo``),
forks, and the child
runs the script from its first line, exactly as ``python script.py`` would, with the client's
working directory, environment, arguments, file descriptors and thread settings. The client waits,
forwards signals to the job's process group (:func:`run_in_server`), appends the job's CPU time and
peak memory to the job's log, and exits with the job's exit status or dies by the job's signal. So
Snakemake still runs one job per process and reruns, logs, outputs and exit codes are unchanged;
only the imports are shared.

Why our own code: no library runs a Snakemake script job in a pre-imported interpreter, and the
standard library's ``multiprocessing.forkserver`` (the same idea) serves only the process that
started it.

Safety. The server forks only while it has a single OS thread (checked in ``/proc/self/task``
before every fork; it starts with the BLAS/OpenMP thread variables at 1, so numpy and torch start
no pools, and the child then applies the job's own values with threadpoolctl and
``torch.set_num_threads``). A module whose import starts a thread, a changed ``mfoml`` source file
(the server compares the modification time and size of every ``mfoml`` module it has imported),
another checkout's ``mfoml``, a ``PYTHONHASHSEED`` other than the server's, a request too large to
send, or an unreachable server make the client run the job itself, cold, and say why on stderr.
The child reseeds numpy's and torch's global generators from the OS and applies the job's ``TZ``,
as a new process would (Python's ``random`` reseeds itself after a fork). Both ends check that the
other runs as the same user (``SO_PEERCRED``).

No job outlives its server or its client (:mod:`mfoml.warm_proc`): the job leads its own process
group and gets SIGKILL from the kernel when the server dies; a client whose server connection
drops kills the job's group and reports failure only once none of its processes is left (so
Snakemake's removal of the failed job's outputs is final); the server ends a job whose client is
gone, and all jobs when it stops (SIGTERM, then SIGKILL after a grace period), exits when its
parent (the ``snakemake`` process) is gone, and removes its socket directory when it exits.

Benchmarks. Snakemake's ``benchmark:`` measures the job's process tree, which under warm start is
the client; the client leaves the job's own CPU time and peak resident memory beside the socket
(:func:`take_benchmark_figures`) and ``workflow/rules/warm.smk`` writes them into the benchmark
file, with a ``warm_start`` column.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

from mfoml.warm_proc import kill_group, kill_group_and_wait, peer_uid

log = logging.getLogger(__name__)

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
#: signals the client forwards to its job's process group (SIGTSTP as SIGSTOP, see run_in_server)
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTSTP,
    signal.SIGCONT,
)
#: signals whose "ignored" disposition a job inherits from its client (e.g. SIGHUP under nohup)
INHERITED_IGNORED = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTSTP,
)
#: the directory (beside the socket) where clients leave a benchmarked job's own figures
BENCH_DIR = "bench"
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


def ignored_signals() -> list[int]:
    """The signals of :data:`INHERITED_IGNORED` this process ignores (``nohup``: SIGHUP)."""
    return [int(s) for s in INHERITED_IGNORED if signal.getsignal(s) == signal.SIG_IGN]


def _request(script: str) -> dict:
    mask = os.umask(0)
    os.umask(mask)
    return {
        "script": os.path.abspath(script),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "argv": list(sys.argv),
        "path": list(sys.path),
        "umask": mask,
        "ignored": ignored_signals(),
        "package": PACKAGE_DIR,
        "python": python_identity(),
    }


def _connect(socket_path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(socket_path)
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot reach the server at {socket_path}: {exc}") from None
    uid = peer_uid(sock)
    if uid is not None and uid != os.getuid():
        sock.close()
        raise Unavailable(f"the server at {socket_path} runs as uid {uid}, not as {os.getuid()}")
    return sock


def run_in_server(socket_path: str, script: str) -> dict:
    """Run ``script`` (a path) in a fork of the server at ``socket_path``; wait for it.

    Returns the server's report: ``status`` (exit status, 128 + n for signal n), ``signal``
    (the signal that killed the job, else absent or 0), ``user`` and ``system`` (CPU seconds of
    the job and its waited-for children), ``maxrss_kb`` (peak resident set of the job, KiB,
    including the pages it shares with the server) and ``server_rss_kb``; or, when the server
    ended while the job ran, ``status`` 1 and ``error``: the client then killed the job's process
    group and returns only once none of its processes is left, so that the job writes nothing
    after Snakemake has seen it fail.

    While the job runs, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1/2 and SIGCONT sent to this
    process are forwarded to the job's process group (those this process ignores stay ignored,
    here and in the job); SIGTSTP stops the job (SIGSTOP) and then this process.
    Raises :class:`Unavailable` when the job was not started (the caller may run it cold).
    """
    sock = _connect(socket_path)
    request = _request(script)
    sys.stdout.flush()
    sys.stderr.flush()
    with sock:
        try:
            send_message(sock, request, _std_fds())
        except OSError as exc:  # EMSGSIZE (a huge environment), EPIPE (server going away)
            size = len(json.dumps(request))
            raise Unavailable(f"the request ({size} bytes) could not be sent: {exc}") from None
        try:
            reply = recv_message(sock)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"no answer from the server: {exc}") from None
        if reply is None:
            raise Unavailable("the server closed the connection before starting the job")
        if "cold" in reply:
            raise Unavailable(reply["cold"])
        pid = int(reply["pid"])  # also the job's process group

        def forward(signum: int, _frame: object) -> None:
            if signum == signal.SIGTSTP:  # stop the job, then ourselves (as a process would)
                kill_group(pid, signal.SIGSTOP)
                signal.signal(signal.SIGTSTP, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTSTP)
                signal.signal(signal.SIGTSTP, forward)  # continued
                kill_group(pid, signal.SIGCONT)
            else:
                kill_group(pid, signum)

        ignored = set(request["ignored"])
        old = {s: signal.signal(s, forward) for s in FORWARDED if int(s) not in ignored}
        try:
            try:
                reply = recv_message(sock)
            except (OSError, ValueError):
                reply = None
            if reply is None:
                gone = kill_group_and_wait(pid)
                reply = {
                    "status": 1,
                    "error": f"the server ended while job {pid} ran; the job was killed"
                    + ("" if gone else " (some of its processes did not end within 30 s)"),
                }
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
    return reply


def benchmark_key(rule: str, wildcards: dict, iteration: int) -> str:
    """File name under which a benchmarked job's own figures are left for the workflow."""
    blob = json.dumps([rule, sorted(wildcards.items()), int(iteration)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32] + ".json"


def take_benchmark_figures(
    socket_path: str, rule: str, wildcards: dict, iteration: int
) -> dict | None:
    """The figures a warm job's client left for its benchmark file (read once, then removed).

    ``{"cpu_time": seconds, "max_rss_kb": KiB}``, or None for a job that did not run warm.
    """
    path = os.path.join(
        os.path.dirname(socket_path),
        BENCH_DIR,
        benchmark_key(rule, {k: str(v) for k, v in wildcards.items()}, iteration),
    )
    try:
        with open(path, encoding="utf-8") as fh:
            figures = json.load(fh)
        os.unlink(path)
    except (OSError, ValueError):
        return None
    return figures if isinstance(figures, dict) else None


def _record_benchmark(socket_path: str, report: dict, job: object) -> None:
    """For a benchmarked job (``job``: the rule script's ``snakemake`` object), leave its own
    CPU time and peak memory for the workflow.

    ``warm.smk`` writes them into the job's benchmark file in place of the client's figures.
    """
    iteration = getattr(job, "bench_iteration", None)
    if iteration is None or "error" in report:
        return
    wildcards = {k: str(v) for k, v in dict(getattr(job, "wildcards", {}).items()).items()}
    path = os.path.join(os.path.dirname(socket_path), BENCH_DIR)
    figures = {"cpu_time": report["user"] + report["system"], "max_rss_kb": report["maxrss_kb"]}
    with contextlib.suppress(OSError):
        os.makedirs(path, exist_ok=True)
        name = benchmark_key(str(getattr(job, "rule", "")), wildcards, iteration)
        with open(os.path.join(path, name), "w", encoding="utf-8") as fh:
            json.dump(figures, fh)


def _log_usage(report: dict, job: object) -> None:
    """Append the job's resource use to its Snakemake log file (``job.log[0]``)."""
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
        if report.get("signal"):
            line += f"; killed by {signal.Signals(report['signal']).name}"
    try:
        with open(logs[0], "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError:
        pass


def die_by_signal(signum: int) -> None:
    """End this process by ``signum`` (default action, no core file), as the job ended."""
    with contextlib.suppress(ValueError, OSError):
        _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
        os.kill(os.getpid(), signum)
    os._exit(128 + signum)


def delegate(job: object | None) -> None:
    """Run the calling rule script's job in the warm server if one serves this run.

    Call it at the top of a rule script, after the script has put its scripts directory on
    ``sys.path``, as ``delegate(snakemake)``: ``job`` is the script's Snakemake object (its
    ``log``, ``rule``, ``wildcards`` and ``bench_iteration`` are read; the core never looks the
    object up itself; None: a job run outside Snakemake, nothing logged or benchmarked).
    Returns (and the script goes on, cold) without a server, inside a warm child, or when the
    server cannot take the job; otherwise it never returns: the process exits with
    the job's exit status, or is killed by the signal that killed the job.
    """
    socket_path = os.environ.get(ENV_SOCKET)
    if not socket_path or os.environ.get(ENV_CHILD) == "1":
        return
    script = getattr(sys.modules.get("__main__"), "__real_file__", None)
    if script is None:  # not a Snakemake script job
        return
    if any(var in os.environ for var in CONTAINER_VARS):
        log.warning("mfoml warm start: running this job cold: it runs in a container")
        return
    try:
        report = run_in_server(socket_path, script)
    except Unavailable as exc:
        log.warning("mfoml warm start: running this job cold: %s", exc)
        return
    _log_usage(report, job)
    _record_benchmark(socket_path, report, job)
    sys.stdout.flush()
    sys.stderr.flush()
    if report.get("signal"):
        die_by_signal(int(report["signal"]))
    os._exit(int(report["status"]))
