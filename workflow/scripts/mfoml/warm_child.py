"""The warm-start server's forked child: it becomes the job's process (mfoml.warm).

Runs in the child right after the fork: drops the server's signal handlers and descriptors, takes
the client's stdin/stdout/stderr, working directory, umask, environment, ``sys.argv`` and
``sys.path``, gives the loaded BLAS/OpenMP libraries and torch the job's thread counts, reseeds
numpy's global generator, runs the script as ``__main__`` and exits with the status
``python script`` would have given, after the interpreter's exit handlers.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import signal
import sys
import tempfile
import traceback
from typing import NoReturn

from mfoml.warm import ENV_CHILD, NOT_PRELOADED


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


def become_job(req: dict, fds: list[int], inherited: list, modules_file: str) -> NoReturn:
    """In a child just forked by the server: become the job's process and run its script.

    ``req``: the client's request (script, cwd, env, argv, path, umask); ``fds``: the client's
    stdin/stdout/stderr; ``inherited``: the server's sockets, selector and descriptors, closed
    here; ``modules_file``: where the names of the modules the job imported are written at its
    end (the server preloads them for the rule's next job). Exits with the job's status.
    """
    status = 1
    before = set(sys.modules)
    try:
        gc.enable()  # the server's objects stay frozen (mfoml.warm_server.Server)
        signal.set_wakeup_fd(-1)
        for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
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
        sys.argv = list(req["argv"])
        sys.path[:] = list(req["path"])
        tempfile.tempdir = None
        apply_thread_limits(req["env"])
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed()  # a new process's global generator: fresh entropy
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
                os._exit(status)


def run_script(script: str) -> int:
    """Run ``script`` as ``__main__``; its exit status as ``python script`` would give it."""
    import runpy

    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return 130
    except BaseException:  # noqa: BLE001 - as the interpreter reports an uncaught exception
        traceback.print_exc()
        return 1
    return 0
