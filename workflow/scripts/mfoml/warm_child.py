"""The warm-start server's forked child: it becomes the job's process (mfoml.warm).

Runs in the child right after the fork: becomes the leader of its own process group (the
client signals and, when the server is gone, kills the whole group), asks the kernel for SIGKILL
when the server dies, takes the title ``mfoml job <rule>``, drops the server's signal handlers and
descriptors and ignores the signals its client ignores (``nohup``), takes the client's
stdin/stdout/stderr, working directory, umask, environment (``TZ`` applied with ``time.tzset``),
``sys.argv`` and ``sys.path``, gives the loaded BLAS/OpenMP libraries and torch the job's thread
counts, reseeds numpy's and torch's global generators from the OS as a new process seeds them
(Python's ``random`` reseeds itself after a fork), runs the script as ``__main__`` and exits with
the status ``python script`` would have given, after the interpreter's exit handlers (an uncaught
KeyboardInterrupt: killed by SIGINT, as Python does).
"""

from __future__ import annotations

import atexit
import gc
import json
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from typing import NoReturn

from mfoml.warm import ENV_CHILD, NOT_PRELOADED
from mfoml.warm_proc import set_parent_death_signal, set_title

#: run_script's status for an uncaught KeyboardInterrupt: the process then dies by SIGINT
KILLED_BY_SIGINT = -int(signal.SIGINT)
#: signals whose server-side handlers the child resets to their defaults
RESET_SIGNALS = (
    signal.SIGCHLD,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTSTP,
)


def apply_thread_limits(env: dict[str, str]) -> None:
    """Give the loaded BLAS/OpenMP libraries and torch the job's thread counts (Snakemake's)."""
    value = env.get("OMP_NUM_THREADS") or env.get("OPENBLAS_NUM_THREADS")
    if not value or not value.isdigit() or int(value) < 1:
        return
    n = int(value)
    if n == 1:
        return  # the server's own setting
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)
    except ImportError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def reseed_torch() -> None:
    """Seed torch's global generators from the OS, as a new process does (when torch is loaded)."""
    torch = sys.modules.get("torch")
    seed = getattr(torch, "seed", None)
    if seed is not None:
        seed()  # CPU generator from the OS; CUDA's lazily, without initializing CUDA


def become_job(
    req: dict, fds: list[int], inherited: list, modules_file: str, server_pid: int, rule: str = ""
) -> NoReturn:
    """In a child just forked by the server: become the job's process and run its script.

    ``req``: the client's request (script, cwd, env, argv, path, umask, ignored signals);
    ``fds``: the client's stdin/stdout/stderr; ``inherited``: the server's sockets, selector and
    descriptors, closed here; ``modules_file``: where the names of the modules the job imported
    are written at its end (the server preloads them for the rule's next job); ``server_pid``:
    the parent (the child is killed when it dies); ``rule``: for the process title. Exits with
    the job's status.
    """
    status = 1
    before = set(sys.modules)
    try:
        try:
            os.setpgid(0, 0)  # the server does it too (whichever runs first)
        except OSError:
            pass
        set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != server_pid:  # the server died before the line above
            os._exit(1)
        set_title(f"mfoml job {rule}".strip())
        server_log = logging.getLogger("mfoml.warm_server")
        server_log.handlers.clear()  # the server's log file is not the job's
        server_log.setLevel(logging.NOTSET)
        server_log.propagate = True
        gc.enable()  # the server's objects stay frozen (mfoml.warm_server.Server)
        signal.set_wakeup_fd(-1)
        for s in RESET_SIGNALS:
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for s in req.get("ignored", []):
            signal.signal(s, signal.SIG_IGN)
        for item in inherited:
            if isinstance(item, int):
                os.close(item)
            else:
                item.close()
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(req["cwd"])
        os.umask(int(req["umask"]))
        os.environ.clear()
        os.environ.update(req["env"])
        os.environ[ENV_CHILD] = "1"
        time.tzset()  # the job's TZ (or its absence)
        sys.argv = list(req["argv"])
        sys.path[:] = list(req["path"])
        tempfile.tempdir = None
        apply_thread_limits(req["env"])
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed()  # a new process's global generator: fresh entropy
        reseed_torch()
        status = run_script(req["script"])
    except BaseException:  # noqa: BLE001 - reported like an uncaught exception
        traceback.print_exc()
        status = 1
    finally:
        try:
            new = sorted(
                m for m in set(sys.modules) - before if m.split(".")[0] not in NOT_PRELOADED
            )
            with open(modules_file, "w", encoding="utf-8") as fh:
                json.dump(new, fh)
        except OSError:
            pass
        try:
            atexit._run_exitfuncs()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                if status == KILLED_BY_SIGINT:
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                    os.kill(os.getpid(), signal.SIGINT)
                os._exit(status if status >= 0 else 128 - status)


def run_script(script: str) -> int:
    """Run ``script`` as ``__main__``; its exit status as ``python script`` would give it.

    :data:`KILLED_BY_SIGINT` for an uncaught KeyboardInterrupt.
    """
    import runpy

    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        # the interpreter's report of a non-integer exit code, on the job's stderr as in a cold
        # run whatever logging the job set up (so not a log record)
        sys.stderr.write(f"{exc.code}\n")
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return KILLED_BY_SIGINT
    except BaseException:  # noqa: BLE001 - as the interpreter reports an uncaught exception
        traceback.print_exc()
        return 1
    return 0
