"""The warm-start server: preloads rule scripts' imports and forks one child per job.

The protocol, the client side and the safety rules are described in :mod:`mfoml.warm`. This
module is the server (``python -m mfoml.warm_server SOCKET``) and the workflow's handle on it
(:func:`start_server`, :meth:`WarmServer.stop`). The server is single-threaded: one selector loop
accepts requests (one Unix SEQPACKET connection per job), reaps children (SIGCHLD through a
wake-up pipe) and checks once a second that its parent still lives.
"""

from __future__ import annotations

import argparse
import ast
import atexit
import gc
import importlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mfoml.warm import (
    ENV_CHILD,
    ENV_SOCKET,
    MAX_MESSAGE,
    NOT_PRELOADED,
    PACKAGE_DIR,
    THREAD_VARS,
    python_identity,
    send_message,
)
from mfoml.warm_child import become_job


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

    def __init__(self, socket_path: str, log) -> None:
        # As the gc module's documentation advises for fork without exec: no collections in the
        # server, everything it loaded frozen before each fork, collections on in the child. A
        # child's collections then never walk (and copy on write) the preloaded modules' objects:
        # an allocation-heavy job costs a third of the CPU time it would without.
        gc.disable()
        self.socket_path = socket_path
        self.dir = os.path.dirname(socket_path)
        self.log = log
        self.parent = os.getppid()
        self.jobs: dict[int, _Job] = {}
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
        self.log.write(f"{time.strftime('%H:%M:%S')} {msg}\n")
        self.log.flush()

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
        self._stamp()
        if len(sys.modules) > before:
            self.say(
                f"preloaded {len(sys.modules) - before} modules for {rule or 'a job'} in "
                f"{time.process_time() - start:.2f} CPU-s"
            )

    def _refusal(self, req: dict) -> str:
        if req.get("package") != PACKAGE_DIR:
            return f"the job's mfoml ({req.get('package')}) is not the server's ({PACKAGE_DIR})"
        if req.get("python") != python_identity():
            return (
                f"the job's Python {req.get('python')} is not the server's {python_identity()} "
                "(e.g. a conda environment of the rule)"
            )
        if not self.cold_reason:
            stale = self._stale()
            if stale:
                self.cold_reason = stale
                self.say(f"cold from now on: {stale}")
        return self.cold_reason

    # ----------------------------------------------------------------------------- requests
    def accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.settimeout(30)
        fds: list[int] = []
        try:
            msg, fds, _, _ = socket.recv_fds(conn, MAX_MESSAGE, 3)
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
        except (OSError, ValueError, KeyError) as exc:
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
        pid = os.fork()
        if pid == 0:  # the child: never returns
            inherited = [self.selector, self.listener, self.wake_r, self.wake_w, conn]
            become_job(req, fds, inherited + [j.conn for j in self.jobs.values()], modules_file)
        self.jobs[pid] = _Job(conn, rule, modules_file, _current_rss_kb())
        try:
            send_message(conn, {"pid": pid})
        except OSError:  # the client is already gone: so is the job
            os.kill(pid, signal.SIGTERM)
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
            code = os.waitstatus_to_exitcode(status)
            report = {
                "status": code if code >= 0 else 128 - code,
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
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def serve(self) -> None:
        self.say(f"serving at {self.socket_path} (pid {os.getpid()})")
        while not self.stopping:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "accept":
                    self.accept()
                elif key.data == "wake":
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    self.client_gone(key.data)
            self.reap()
            if os.getppid() != self.parent:
                self.say("the workflow process is gone")
                break
        for pid in list(self.jobs):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while self.jobs and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.05)
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


def refusal(device: str, dev_dir: str = "/dev") -> str:
    """Why the workflow must not start a server on this machine ("" when it may).

    Off the Linux platform fork safety is not given; on a machine with an NVIDIA GPU and a
    ``device`` other than ``cpu`` the jobs may use CUDA, whose driver does not survive a fork
    once initialized, and warm start has not yet run on a GPU machine (benchmarks/
    device_check.sh): such runs start every job cold.
    """
    if not sys.platform.startswith("linux"):
        return "warm start needs Linux"
    if device != "cpu" and os.path.isdir(dev_dir):
        if any(name.startswith("nvidia") for name in os.listdir(dev_dir)):
            return f"an NVIDIA GPU is present and device is {device!r} (not 'cpu')"
    return ""


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


# ------------------------------------------------------------------------ the workflow's handle


class WarmServer:
    """A running server started by :func:`start_server`; :meth:`stop` ends it."""

    def __init__(self, proc: subprocess.Popen, socket_path: str, tmpdir: str) -> None:
        self.proc = proc
        self.socket_path = socket_path
        self.tmpdir = tmpdir

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the server (and any job still running in it); remove its socket."""
        if os.environ.get(ENV_SOCKET) == self.socket_path:
            del os.environ[ENV_SOCKET]
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def start_server(scripts_dir: str, log_path: str, wait: float = 30.0) -> WarmServer | None:
    """Start a server for this process's jobs and export its socket (``$MFOML_WARM_SOCKET``).

    ``scripts_dir`` is the directory holding ``mfoml`` (put first on the server's path);
    the server writes what it does to ``log_path``. Returns None (jobs run cold) off Linux or
    when the server does not come up within ``wait`` seconds.
    """
    if not sys.platform.startswith("linux"):
        return None
    tmpdir = tempfile.mkdtemp(prefix="mfoml-warm-", dir="/tmp" if os.path.isdir("/tmp") else None)
    socket_path = os.path.join(tmpdir, "socket")
    env = dict(os.environ)
    env.pop(ENV_SOCKET, None)
    env.pop(ENV_CHILD, None)
    env.update({var: "1" for var in THREAD_VARS})
    env["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"  # torch.cuda.is_available() without a CUDA init
    env["PYTHONPATH"] = os.pathsep.join(p for p in (scripts_dir, env.get("PYTHONPATH")) if p)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mfoml.warm_server", socket_path],
            cwd=scripts_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = WarmServer(proc, socket_path, tmpdir)
    deadline = time.monotonic() + wait
    while not os.path.exists(socket_path):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            return None
        time.sleep(0.02)
    os.environ[ENV_SOCKET] = socket_path
    atexit.register(server.stop)
    return server


def main() -> None:
    ap = argparse.ArgumentParser(description="mfoml warm-start server (see mfoml.warm)")
    ap.add_argument("socket", help="path of the Unix socket to serve on")
    args = ap.parse_args()
    server = Server(args.socket, sys.stdout)
    server.serve()


if __name__ == "__main__":
    main()
