"""The workflow's handle on a warm-start server (mfoml.warm): start it, stop it, or refuse.

:func:`start_server` runs ``python -m mfoml.warm_server`` in its own session with a private
socket directory (mode 0700, in the temporary directory) and exports the socket path as
``$MFOML_WARM_SOCKET`` for the jobs; :meth:`WarmServer.stop` ends it. :func:`refusal` says why a
machine must not use warm start. Standard library only.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mfoml.warm import ENV_CHILD, ENV_SOCKET, THREAD_VARS
from mfoml.warm_proc import DIR_PREFIX, remove_socket_dir, remove_stale_socket_dirs

#: default seconds between SIGTERM and SIGKILL for a job the server must end
GRACE = 10.0
#: where socket directories go: /tmp keeps the socket's path short (Unix sockets: 107 bytes)
SOCKET_PARENT = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()


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


class WarmServer:
    """A running server started by :func:`start_server`; :meth:`stop` ends it."""

    def __init__(self, proc: subprocess.Popen, socket_path: str, tmpdir: str) -> None:
        self.proc = proc
        self.socket_path = socket_path
        self.tmpdir = tmpdir

    def stop(self, timeout: float = 30.0) -> None:
        """Terminate the server (it ends its running jobs); remove its socket directory."""
        if os.environ.get(ENV_SOCKET) == self.socket_path:
            del os.environ[ENV_SOCKET]
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        remove_socket_dir(self.tmpdir)


def start_server(
    scripts_dir: str, log_path: str, wait: float = 30.0, grace: float = GRACE
) -> WarmServer | None:
    """Start a server for this process's jobs and export its socket (``$MFOML_WARM_SOCKET``).

    ``scripts_dir`` is the directory holding ``mfoml`` (put first on the server's path);
    the server writes what it does to ``log_path``; ``grace`` is the seconds a job it must end
    gets between SIGTERM and SIGKILL. Returns None (jobs run cold) off Linux or when the server
    does not come up within ``wait`` seconds. Removes the socket directories of servers that were
    killed before they could remove their own.
    """
    if not sys.platform.startswith("linux"):
        return None
    remove_stale_socket_dirs(SOCKET_PARENT)
    tmpdir = tempfile.mkdtemp(prefix=DIR_PREFIX, dir=SOCKET_PARENT)
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
            [sys.executable, "-m", "mfoml.warm_server", socket_path, f"--grace={grace}"],
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
