"""Process handling for warm start (mfoml.warm): Linux process groups, peers, leftovers.

Shared by the client (:mod:`mfoml.warm`), the server (:mod:`mfoml.warm_server`) and its forked
child (:mod:`mfoml.warm_child`). Standard library only; Linux interfaces (``prctl``,
``SO_PEERCRED``, ``/proc``) degrade to no-ops where they are missing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import socket
import struct
import tempfile
import time

log = logging.getLogger(__name__)

#: prefix of the socket directories start_server creates in the temporary directory
DIR_PREFIX = "mfoml-warm-"
#: file in a socket directory holding the server's pid (stale directories are found by it)
PID_FILE = "server.pid"
#: seconds after which a socket directory without a pid file counts as stale
NO_PID_FILE_AGE = 24 * 3600
_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux ``prctl``)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a connected Unix socket (SO_PEERCRED)."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, opt, 12))
    except OSError:
        return None
    return uid


def group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes of process group ``pgid`` (from ``/proc``)."""
    members = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return members
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(name))
    return members


def kill_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to process group ``pgid`` (nothing when it is gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_group_and_wait(pgid: int, timeout: float = 30.0) -> bool:
    """SIGKILL process group ``pgid`` and wait until none of its processes lives.

    True when the group is gone (zombies count as gone: they run no code and write nothing).
    """
    deadline = time.monotonic() + timeout
    while True:
        kill_group(pgid, signal.SIGKILL)
        if not group_members(pgid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def remove_socket_dir(path: str) -> None:
    """Remove a server's socket directory (nothing when it is gone)."""
    shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
        return stat[stat.rfind(")") + 2 :].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def remove_stale_socket_dirs(parent: str | None = None) -> list[str]:
    """Remove socket directories of servers that were killed before they could clean up.

    A directory ``mfoml-warm-*`` in ``parent`` (the temporary directory) owned by this user is
    stale when its ``server.pid`` names no live process, or when it has no pid file and is older
    than :data:`NO_PID_FILE_AGE` (a server that never started). Returns the removed paths.
    """
    parent = parent or tempfile.gettempdir()
    removed = []
    try:
        entries = os.listdir(parent)
    except OSError:
        return removed
    for name in entries:
        if not name.startswith(DIR_PREFIX):
            continue
        path = os.path.join(parent, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_uid != os.getuid() or not os.path.isdir(path) or os.path.islink(path):
            continue
        try:
            with open(os.path.join(path, PID_FILE), encoding="ascii") as fh:
                stale = not _alive(int(fh.read().strip()))
        except (OSError, ValueError):  # a server that never started, or an older version's
            stale = time.time() - st.st_mtime > NO_PID_FILE_AGE
        if stale:
            remove_socket_dir(path)
            removed.append(path)
    if removed:
        log.info("warm start: removed %d socket directories of dead servers", len(removed))
    return removed


def set_title(title: str) -> None:
    """Set this process's title as ``ps`` and ``top`` show it (setproctitle, else the name)."""
    try:
        import setproctitle

        setproctitle.setproctitle(title)
        return
    except ImportError:
        pass
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(15, ctypes.c_char_p(title.encode()[:15]), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass
