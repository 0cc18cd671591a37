"""A loopback HTTP file server for tests (127.0.0.1 only).

Usage from a test module (``tests/`` is on ``sys.path`` under pytest's default import mode)::

    from loopback import serve_directory

    def test_something(tmp_path):
        (tmp_path / "a.txt").write_text("hi")
        with serve_directory(tmp_path) as base_url:
            # base_url == "http://127.0.0.1:<port>/" (always ends with "/")
            urllib.request.urlopen(base_url + "a.txt")

:class:`LoopbackServer` offers the same as an object (``start()``/``stop()``, ``url(name)``) and
records every request path it served in ``requests``, so tests can check what was fetched. It can
also be used as a fixture::

    @pytest.fixture
    def server(tmp_path):
        with LoopbackServer(tmp_path) as srv:
            yield srv

``LoopbackServer(directory, cut_transfers={"file.gz": 100})`` simulates a broken connection: for
that file it announces the full ``Content-Length`` but sends only the first 100 bytes and then
closes the connection.

The server binds port 0 (the OS picks a free port), serves files read-only from one directory
with :class:`http.server.SimpleHTTPRequestHandler` (which sends ``Content-Length``), runs in a
daemon thread and is shut down and closed on exit. Nothing is logged to stderr.

:func:`prepare_served` prepares a data set (``mfoml.data.catalog.prepare_dataset``) from such a
mirror of a directory, with the md5s of its files (:func:`md5s`) as the expected checksums.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["LoopbackServer", "md5s", "prepare_served", "serve_directory"]

HOST = "127.0.0.1"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serve files from ``directory`` without writing access logs to stderr."""

    def __init__(
        self, *args: Any, requests: list[str], cut_transfers: dict[str, int], **kwargs: Any
    ) -> None:
        self._requests = requests
        self._cut_transfers = cut_transfers
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        return

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        self._requests.append(self.path)
        name = self.path.split("?", 1)[0].lstrip("/")
        if name in self._cut_transfers:
            self._send_cut(name, self._cut_transfers[name])
            return
        super().do_GET()

    def _send_cut(self, name: str, n_bytes: int) -> None:
        """Announce the whole file, send its first ``n_bytes`` bytes, then drop the connection."""
        path = Path(self.directory) / name
        if not path.is_file():
            self.send_error(404, "File not found")
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[:n_bytes])
        self.wfile.flush()
        self.close_connection = True


class LoopbackServer:
    """An HTTP server on 127.0.0.1 serving the files under ``directory``.

    Parameters
    ----------
    directory : the directory whose files are served (``GET /<relative path>``).
    cut_transfers : ``{relative path: n_bytes}``; those files are sent with their full
        ``Content-Length`` but cut after ``n_bytes`` bytes (a dropped connection).

    Attributes
    ----------
    base_url : ``"http://127.0.0.1:<port>/"`` once started.
    requests : the request paths served so far, in order (e.g. ``["/train.gz"]``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        cut_transfers: dict[str, int] | None = None,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.cut_transfers = dict(cut_transfers or {})
        if not self.directory.is_dir():
            raise NotADirectoryError(f"loopback server: {self.directory} is not a directory")
        self.requests: list[str] = []
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def start(self) -> str:
        """Start serving; return ``base_url``."""
        if self._httpd is not None:
            return self.base_url
        handler = functools.partial(
            _QuietHandler,
            directory=str(self.directory),
            requests=self.requests,
            cut_transfers=self.cut_transfers,
        )
        httpd = http.server.ThreadingHTTPServer((HOST, 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        port = httpd.server_address[1]
        self.base_url = f"http://{HOST}:{port}/"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self.base_url

    def url(self, name: str) -> str:
        """The URL of the file ``name`` (relative to the served directory)."""
        return self.base_url + name.lstrip("/")

    def stop(self) -> None:
        """Shut the server down and close its socket (idempotent)."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> LoopbackServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serve_directory(
    directory: str | os.PathLike[str], *, cut_transfers: dict[str, int] | None = None
) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 for the duration of the ``with`` block.

    Yields the base URL ``"http://127.0.0.1:<port>/"`` (with a trailing slash). See
    :class:`LoopbackServer` for ``cut_transfers``.
    """
    server = LoopbackServer(directory, cut_transfers=cut_transfers)
    try:
        yield server.start()
    finally:
        server.stop()


def md5s(directory: str | os.PathLike[str]) -> dict[str, str]:
    """The manifest of the files in ``directory``: name -> md5 hex digest (hashlib)."""
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in Path(directory).iterdir()}


def prepare_served(
    name: str, out: Path, served: Path, download_dir: Path, **options: Any
) -> dict[str, Any]:
    """``prepare_dataset(name, out, ...)`` downloading into ``download_dir`` from a loopback
    mirror of ``served``, with the md5s of the served files as the checksums; ``options`` go to
    ``prepare_dataset``. Returns its metadata."""
    from mfoml.data.catalog import prepare_dataset  # here: the server itself needs no mfoml

    with serve_directory(served) as base:
        return prepare_dataset(
            name, out, download_dir=download_dir, mirror=base, checksums=md5s(served), **options
        )
