"""The warm-start server: preloads rule scripts' imports and forks one child per job.

The protocol, the client side and the safety rules are described in :mod:`mfoml.warm`. This
module is the server (``python -m mfoml.warm_server SOCKET``) and the workflow's handle on it
(:func:`start_server`, :meth:`WarmServer.stop`). The server is single-threaded: one selector loop
accepts requests (one Unix SEQPACKET connection per job, from a process of the server's own uid,
checked with SO_PEERCRED; a connection that sends no request within
:data:`REQUEST_TIMEOUT` seconds is dropped), reaps children (SIGCHLD through a wake-up pipe) and
checks once a second that its parent still lives.

Every job is the leader of its own process group. A job whose client is gone, and every job when
the server stops, gets SIGTERM, then SIGKILL (to its whole group) after a grace period
(``--grace``, 10 s). The server removes its socket directory when it exits, also when it exits
because the ``snakemake`` process died; :func:`start_server` removes those of servers that were
killed (``kill -9``) before they could.
"""

from __future__ import annotations

import argparse
import ast
import gc
import importlib
import json
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mfoml.warm import (
    MAX_MESSAGE,
    NOT_PRELOADED,
    PACKAGE_DIR,
    python_identity,
    send_message,
)
from mfoml.warm_child import become_job
from mfoml.warm_launch import GRACE, WarmServer, refusal, start_server  # noqa: F401 - re-exported
from mfoml.warm_proc import (
    PID_FILE,
    group_members,
    kill_group,
    peer_uid,
    remove_socket_dir,
)

log = logging.getLogger(__name__)
#: seconds a new connection may take to send its request before it is dropped
REQUEST_TIMEOUT = 2.0


def top_level_imports(script: str) -> list[str]:
    """Modules imported at the top level of a Python file (absolute imports only)."""
    try:
        tree = ast.parse(Path(script).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return []
    mods: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            mods += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.append(node.module)
    return mods


def rule_of(script: str) -> str:
    """The rule script of a job script (Snakemake names its copy ``tmpXXXX.<rule>.py``)."""
    parts = os.path.basename(script).split(".")
    return parts[-2] if len(parts) >= 2 else parts[0]


def os_threads() -> int:
    """Number of OS threads of this process (Linux)."""
    return len(os.listdir("/proc/self/task"))


@dataclass
class _Job:
    conn: socket.socket
    rule: str
    modules_file: str
    server_rss_kb: int = 0  # the server's resident set when it forked the job


class Server:
    """The server's state: listening socket, running jobs, preloaded modules, safety flags."""

    def __init__(self, socket_path: str, grace: float = GRACE) -> None:
        # As the gc module's documentation advises for fork without exec: no collections in the
        # server, everything it loaded frozen before each fork, collections on in the child. A
        # child's collections then never walk (and copy on write) the preloaded modules' objects:
        # an allocation-heavy job costs a third of the CPU time it would without.
        gc.disable()
        self.socket_path = socket_path
        self.dir = os.path.dirname(socket_path)
        self.grace = grace
        self.parent = os.getppid()
        self.jobs: dict[int, _Job] = {}
        self.pending: dict[socket.socket, float] = {}  # connection -> deadline of its request
        self.kill_at: dict[int, float] = {}  # job pid -> when SIGTERM becomes SIGKILL
        self.stamps: dict[str, tuple[int, int]] = {}  # mfoml source file -> (mtime_ns, size)
        self.cold_reason = ""  # set once: every later job runs cold
        # rule -> modules its finished jobs imported after their start (preloaded for its next job)
        self.later: dict[str, set[str]] = {}
        self.stopping = False
        self.served = 0
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(socket_path)
        self.listener.listen(64)
        self.listener.setblocking(False)
        with open(os.path.join(self.dir, PID_FILE), "w", encoding="ascii") as fh:
            fh.write(str(os.getpid()))
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_stop)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        self._stamp()

    def say(self, msg: str) -> None:
        log.info("%s", msg)

    def _on_stop(self, *_: object) -> None:
        self.stopping = True

    # ------------------------------------------------------------------ preloading and safety
    def _stamp(self) -> None:
        """Record the file stamp of every loaded module of this ``mfoml``."""
        for mod in list(sys.modules.values()):
            path = getattr(mod, "__file__", None)
            if path and path.startswith(PACKAGE_DIR) and path not in self.stamps:
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                self.stamps[path] = (st.st_mtime_ns, st.st_size)

    def _stale(self) -> str:
        for path, stamp in self.stamps.items():
            try:
                st = os.stat(path)
            except OSError:
                return f"{path} is gone since the server imported it"
            if (st.st_mtime_ns, st.st_size) != stamp:
                return f"{path} changed since the server imported it"
        return ""

    def preload(self, modules: list[str], rule: str = "") -> None:
        """Import ``modules`` into the server; a thread started by one makes the server cold."""
        start, before = time.process_time(), len(sys.modules)
        for name in modules:
            if name in sys.modules or name.split(".")[0] in NOT_PRELOADED:
                continue
            try:
                importlib.import_module(name)
            except ModuleNotFoundError:
                continue  # e.g. extension-internal names, or the job's own path entries
            except BaseException as exc:  # noqa: BLE001 - a failed preload only costs time
                self.say(
                    f"preload of {name} failed ({type(exc).__name__}: {exc}); the job imports it"
                )
                continue
            if threading.active_count() > 1 or os_threads() > 1:
                self.cold_reason = f"importing {name} started a thread in the server"
            elif _cuda_initialized():
                self.cold_reason = f"importing {name} initialized CUDA in the server"
            if self.cold_reason:
                self.say(f"unsafe to fork from now on: {self.cold_reason}")
                return
        self._numba_target()
        self._stamp()
        if len(sys.modules) > before:
            self.say(
                f"preloaded {len(sys.modules) - before} modules for {rule or 'a job'} in "
                f"{time.process_time() - start:.2f} CPU-s"
            )

    def _numba_target(self) -> None:
        """Set up numba's CPU target once numba is loaded: its registries of implementations
        (about 0.2 s), which every job otherwise pays at its first numba kernel (the fast tree
        builder's first fit: 0.42 s, 0.13 s in a child of a server that did this). No thread
        starts (the server's BLAS/OpenMP variables are 1; checked as after an import), and
        numba's threading layer is not launched (launching it would fix one layer for every
        job: :mod:`mfoml.wavelets.kernel_cache`)."""
        if "numba" not in sys.modules or self.cold_reason:
            return
        from numba.core.registry import cpu_target

        if cpu_target.target_context._registries:  # noqa: SLF001 - refreshed before
            return
        try:
            cpu_target.target_context.refresh()
            cpu_target.typing_context.refresh()
        except BaseException as exc:  # noqa: BLE001 - it only costs the jobs time
            self.say(f"setting up numba's CPU target failed ({type(exc).__name__}: {exc})")
            return
        if threading.active_count() > 1 or os_threads() > 1:
            self.cold_reason = "setting up numba's CPU target started a thread in the server"
            self.say(f"unsafe to fork from now on: {self.cold_reason}")

    def _refusal(self, req: dict) -> str:
        if req.get("package") != PACKAGE_DIR:
            return f"the job's mfoml ({req.get('package')}) is not the server's ({PACKAGE_DIR})"
        if req.get("python") != python_identity():
            return (
                f"the job's Python {req.get('python')} is not the server's {python_identity()} "
                "(e.g. a conda environment of the rule)"
            )
        seeds = (req.get("env", {}).get("PYTHONHASHSEED"), os.environ.get("PYTHONHASHSEED"))
        if seeds[0] != seeds[1]:
            return (
                f"the job's PYTHONHASHSEED ({seeds[0]}) is not the server's ({seeds[1]}): its "
                "hash secret is set at the start of an interpreter"
            )
        if not self.cold_reason:
            stale = self._stale()
            if stale:
                self.cold_reason = stale
                self.say(f"cold from now on: {stale}")
        return self.cold_reason

    # ----------------------------------------------------------------------------- requests
    def accept(self) -> None:
        """Accept a connection from this uid; its request is read when it arrives."""
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        uid = peer_uid(conn)
        if uid is not None and uid != os.getuid():
            self.say(f"refused a connection from uid {uid} (the server runs as {os.getuid()})")
            conn.close()
            return
        conn.setblocking(False)
        self.pending[conn] = time.monotonic() + REQUEST_TIMEOUT
        self.selector.register(conn, selectors.EVENT_READ, ("request", conn))

    def drop_silent(self) -> None:
        """Close the connections that sent no request in time."""
        now = time.monotonic()
        for conn, deadline in list(self.pending.items()):
            if now > deadline:
                self.say(f"dropped a connection that sent no request within {REQUEST_TIMEOUT} s")
                self._forget(conn)

    def _forget(self, conn: socket.socket) -> None:
        self.pending.pop(conn, None)
        try:
            self.selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def request(self, conn: socket.socket) -> None:
        """Read a job's request from ``conn``; answer ``cold`` or start the job."""
        self.pending.pop(conn, None)
        self.selector.unregister(conn)
        fds: list[int] = []
        rule = ""
        try:
            msg, fds, _, _ = socket.recv_fds(conn, MAX_MESSAGE, 3)
            if not msg:
                conn.close()
                return
            conn.setblocking(True)
            conn.settimeout(REQUEST_TIMEOUT)
            req = json.loads(msg)
            reason = self._refusal(req)
            if not reason:
                rule = rule_of(req["script"])
                self.preload(
                    top_level_imports(req["script"]) + sorted(self.later.get(rule, ())), rule
                )
                reason = self.cold_reason
            if reason or len(fds) != 3:
                send_message(conn, {"cold": reason or "the job's standard streams did not arrive"})
                conn.close()
                return
            self.start(conn, req, fds, rule)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.say(f"bad request: {exc}")
            conn.close()
        finally:
            for fd in fds:
                os.close(fd)

    def start(self, conn: socket.socket, req: dict, fds: list[int], rule: str) -> None:
        self.served += 1
        modules_file = os.path.join(self.dir, f"modules-{self.served}.json")
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()
        server_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            inherited = [self.selector, self.listener, self.wake_r, self.wake_w, conn]
            inherited += [j.conn for j in self.jobs.values()] + list(self.pending)
            become_job(req, fds, inherited, modules_file, server_pid, rule)
        try:
            os.setpgid(pid, pid)  # the child does it too (whichever runs first)
        except OSError:
            pass
        self.jobs[pid] = _Job(conn, rule, modules_file, _current_rss_kb())
        try:
            send_message(conn, {"pid": pid})
        except OSError:  # the client is already gone: so is the job
            self.terminate(pid)
            return
        self.selector.register(conn, selectors.EVENT_READ, pid)
        self.say(f"job {self.served} (pid {pid}): rule {rule} ({os.path.basename(req['script'])})")

    def reap(self) -> None:
        while self.jobs:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.jobs.pop(pid, None)
            if job is None:
                continue
            self.kill_at.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            report = {
                "status": code if code >= 0 else 128 - code,
                "signal": -code if code < 0 else 0,
                "user": usage.ru_utime,
                "system": usage.ru_stime,
                "maxrss_kb": usage.ru_maxrss,
                "server_rss_kb": job.server_rss_kb,
            }
            cpu = usage.ru_utime + usage.ru_stime
            self.say(f"pid {pid} ended with status {report['status']}, {cpu:.2f} CPU-s")
            try:
                self.selector.unregister(job.conn)
                send_message(job.conn, report)
            except (OSError, KeyError, ValueError):
                pass
            job.conn.close()
            self.later.setdefault(job.rule, set()).update(_read_modules(job.modules_file))

    def client_gone(self, pid: int) -> None:
        job = self.jobs.get(pid)
        if job is None:
            return
        try:
            if job.conn.recv(16):
                return  # clients send nothing after the request; ignore
        except OSError:
            pass
        self.say(f"client of pid {pid} is gone: terminating the job")
        self.selector.unregister(job.conn)
        self.terminate(pid)

    def terminate(self, pid: int) -> None:
        """SIGTERM the job's process group now, SIGKILL after the grace period."""
        kill_group(pid, signal.SIGTERM)
        self.kill_at.setdefault(pid, time.monotonic() + self.grace)

    def escalate(self, everything: bool = False) -> None:
        """SIGKILL the groups of the jobs whose grace period is over (all with ``everything``)."""
        now = time.monotonic()
        for pid, deadline in list(self.kill_at.items()):
            if everything or now > deadline:
                self.say(f"job pid {pid} did not end within {self.grace} s of SIGTERM: SIGKILL")
                kill_group(pid, signal.SIGKILL)
                del self.kill_at[pid]

    def serve(self) -> None:
        """Serve until stopped (SIGTERM, SIGINT, SIGHUP) or until the parent process is gone."""
        self.say(f"serving at {self.socket_path} (pid {os.getpid()})")
        while not self.stopping:
            for key, _ in self.selector.select(timeout=0.25 if self.pending else 1.0):
                if key.data == "accept":
                    self.accept()
                elif key.data == "wake":
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif isinstance(key.data, tuple):
                    self.request(key.data[1])
                else:
                    self.client_gone(key.data)
            self.reap()
            self.drop_silent()
            self.escalate()
            if os.getppid() != self.parent:
                self.say("the workflow process is gone")
                break
        self.shutdown()

    def shutdown(self) -> None:
        """End every job (SIGTERM, SIGKILL after the grace period) and wait for them."""
        for conn in list(self.pending):
            self._forget(conn)
        for pid in list(self.jobs):
            self.terminate(pid)
        deadline = time.monotonic() + self.grace
        while self.jobs and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.05)
        self.escalate(everything=True)
        for pid in list(self.jobs):
            kill_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.jobs and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.05)
        for pid in self.jobs:  # their groups' other processes (the job itself is dead)
            kill_group(pid, signal.SIGKILL)
            if group_members(pid):
                self.say(f"processes of job pid {pid} are still alive")
        usage = os.times()
        self.say(
            f"stopping after {self.served} jobs; server CPU {usage.user + usage.system:.2f} s "
            f"(imports and serving), peak RSS {_rss_kb() / 1024:.0f} MiB"
        )


def _cuda_initialized() -> bool:
    """Whether torch has initialized CUDA in this process (a fork could not use it)."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    try:
        return bool(cuda is not None and cuda.is_initialized())
    except Exception:  # noqa: BLE001 - a partly imported torch: not initialized
        return False


def _rss_kb() -> int:
    """Peak resident set of this process, KiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _current_rss_kb() -> int:
    """Current resident set of this process, KiB (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return 0


def _read_modules(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            mods = json.load(fh)
        os.unlink(path)
    except (OSError, ValueError):
        return []
    return [m for m in mods if isinstance(m, str)]


def main() -> None:
    ap = argparse.ArgumentParser(description="mfoml warm-start server (see mfoml.warm)")
    ap.add_argument("socket", help="path of the Unix socket to serve on")
    ap.add_argument("--grace", type=float, default=GRACE, help="seconds from SIGTERM to SIGKILL")
    args = ap.parse_args()
    # the server's own logger only: a root handler would be inherited by every job (become_job
    # drops this one)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        server = Server(args.socket, args.grace)
        server.serve()
    finally:
        remove_socket_dir(os.path.dirname(os.path.abspath(args.socket)))


if __name__ == "__main__":
    main()
