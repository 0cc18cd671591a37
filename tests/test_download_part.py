"""An interrupted download's hidden ``.part`` file is removed by the next attempt (issue 23).

A real download process is killed with SIGKILL while a loopback HTTP server holds its transfer
open half-way (no ``finally`` of it runs, as after a power loss or ``kill -9``); the next
download of the same file removes the ``.part`` it left, and keeps one that a live download
still holds.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from loopback import serve_directory
from mfoml.data.download import download_file

PAYLOAD = bytes(range(256)) * 1024  # 256 KiB: half of it is past any write buffer


class StallingServer:
    """HTTP on loopback that announces the whole payload, sends half of it and then waits."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(65536)
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(PAYLOAD)}\r\n\r\n".encode()
            conn.sendall(head + PAYLOAD[: len(PAYLOAD) // 2])
            self.release.wait(60)

    def close(self) -> None:
        self.release.set()
        self.thread.join(10)
        self.listener.close()


def parts(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.part"))


def test_killed_download_leaves_a_part_that_the_next_attempt_removes(tmp_path):
    dest_dir = tmp_path / "dl"
    dest_dir.mkdir()
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    stalling = StallingServer()
    code = textwrap.dedent(
        f"""
        from mfoml.data.download import download_file
        download_file("http://127.0.0.1:{stalling.port}/data.bin", {str(dest_dir / "data.bin")!r},
                      {md5!r}, timeout=60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while not any(p.stat().st_size > 0 for p in parts(dest_dir)):
            assert proc.poll() is None, "the download process ended early"
            assert time.monotonic() < deadline, "the download did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        stalling.close()
    stale = parts(dest_dir)
    assert len(stale) == 1 and stale[0].name.startswith(".data.bin.")  # what the kill left

    # a live download of the same file holds its .part: the next attempt must keep it
    busy = dest_dir / ".data.bin.busy.tmp.part"
    busy.write_bytes(b"in progress")
    holder = open(busy, "rb")  # noqa: SIM115 - held for the test's length
    fcntl.flock(holder.fileno(), fcntl.LOCK_EX)

    served = tmp_path / "served"
    served.mkdir()
    (served / "data.bin").write_bytes(PAYLOAD)
    try:
        with serve_directory(served) as base:
            path = download_file(f"{base}/data.bin", dest_dir / "data.bin", md5, timeout=30)
    finally:
        holder.close()
    assert path.read_bytes() == PAYLOAD
    assert not stale[0].exists()
    assert parts(dest_dir) == [busy]


@pytest.mark.parametrize("valid_file_present", [False, True])
def test_stale_part_removed_also_when_the_file_is_reused(tmp_path, valid_file_present):
    """A stale ``.part`` of this file is removed, one of another file is never touched."""
    dest_dir = tmp_path / "dl"
    dest_dir.mkdir()
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    stale = dest_dir / ".data.bin.x1y2.tmp.part"
    stale.write_bytes(PAYLOAD[:100])
    other = dest_dir / ".other.bin.x1y2.tmp.part"
    other.write_bytes(b"another file's")
    if valid_file_present:
        (dest_dir / "data.bin").write_bytes(PAYLOAD)
    served = tmp_path / "served"
    served.mkdir()
    (served / "data.bin").write_bytes(PAYLOAD)
    with serve_directory(served) as base:
        download_file(f"{base}/data.bin", dest_dir / "data.bin", md5, timeout=30)
    assert (dest_dir / "data.bin").read_bytes() == PAYLOAD
    assert other.exists()
    assert not stale.exists()  # also when the valid file is reused without a download
    assert os.listdir(dest_dir).count("data.bin") == 1
