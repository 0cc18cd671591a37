"""HTTP downloads with validation: the one place where the data sources touch the network.

:func:`download_file` streams a URL into a temporary file next to its destination while hashing
it, checks the byte count against the announced ``Content-Length`` (a cut connection is reported
as truncated) and the checksum against the expected md5 or sha256, and only then renames it into
place; on any failure nothing is left at the destination. A temporary ``.part`` file left by a
download that was killed (no ``finally`` runs on SIGKILL or power loss) is removed by the next
attempt at the same file; the writer holds an advisory lock on its ``.part`` file, so one still
being written by a live process is left alone. :func:`fetch_bytes` is the in-memory
variant (no checksum known in advance; the caller validates the content, e.g. OpenML's JSON and
ARFF files). Both raise :class:`DownloadError` naming the file or URL and what is wrong. Progress
goes to this module's logger (``mfoml.data.download``).

The vision sources use :func:`fetch` to try a list of mirrors in turn.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import http.client
import io
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

try:  # advisory locks on the .part files (POSIX); without them no stale file is removed
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None  # type: ignore[assignment]

from mfoml.io import atomic_path, file_checksum

__all__ = [
    "DownloadError",
    "download_file",
    "fetch",
    "fetch_bytes",
    "expected_checksum",
    "remove_stale_parts",
]

log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A download failed: unreachable, truncated, or with a wrong checksum."""


def _algorithm_for(digest: str) -> str:
    lengths = {32: "md5", 64: "sha256"}
    try:
        return lengths[len(digest)]
    except KeyError:
        raise ValueError(
            f"checksum {digest!r}: expected an md5 (32 hex digits) or sha256 (64 hex digits)"
        ) from None


def _fmt_mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _stream(url: str, out: BinaryIO, label: str, timeout: float, h: hashlib._Hash | None) -> int:
    """Copy the body of ``url`` into ``out`` (hashing it into ``h``); return the byte count.

    Raises :class:`DownloadError` (naming ``label`` and ``url``) on HTTP errors, unreachable
    servers, cut connections and a byte count that differs from ``Content-Length``.
    """
    received = 0
    total: int | None = None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length is not None else None
            log.info(
                "%s: downloading %s%s",
                label,
                url,
                f" ({_fmt_mb(total)})" if total is not None else "",
            )
            next_report = 0.1
            last_time = time.monotonic()
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                out.write(chunk)
                if h is not None:
                    h.update(chunk)
                received += len(chunk)
                now = time.monotonic()
                if total:
                    frac = received / total
                    if frac >= next_report or now - last_time > 10:
                        log.info(
                            "%s: %s / %s (%.0f%%)",
                            label,
                            _fmt_mb(received),
                            _fmt_mb(total),
                            100 * frac,
                        )
                        next_report = frac + 0.1
                        last_time = now
                elif now - last_time > 10:
                    log.info("%s: %s", label, _fmt_mb(received))
                    last_time = now
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"{label}: download from {url} failed: HTTP {exc.code} {exc.reason}"
        ) from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"{label}: download from {url} failed: {exc.reason}") from exc
    except http.client.IncompleteRead as exc:
        received += len(exc.partial)
        raise DownloadError(
            f"{label}: download from {url} was cut short (truncated) after {received} bytes"
            + (f" of {total}" if total is not None else "")
        ) from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:  # cut, reset, timeout
        raise DownloadError(
            f"{label}: download from {url} was truncated or interrupted after "
            f"{received} bytes" + (f" of {total}" if total is not None else "") + f": {exc!r}"
        ) from exc
    if total is not None and received != total:
        raise DownloadError(
            f"{label}: download from {url} is truncated (cut short): received {received} bytes "
            f"of the {total} announced"
        )
    return received


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    expected: str,
    *,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` and verify its checksum; reuse a valid existing ``dest``.

    The body is streamed into a temporary file next to ``dest`` (hashing it on the way), and
    renamed onto ``dest`` only when the number of bytes matches the announced
    ``Content-Length`` and the checksum matches ``expected``. On failure nothing is left at
    ``dest`` (a previous file there is removed if it did not match) and :class:`DownloadError`
    names the file, the URL and what is wrong. Bytes done / total are logged about every 10 %.

    Parameters
    ----------
    url : the source URL.
    dest : the destination file.
    expected : md5 (32 hex digits) or sha256 (64 hex digits) of the file.
    timeout : socket timeout in seconds.

    Returns
    -------
    The path of the verified file.
    """
    dest = Path(dest)
    expected = expected.lower()
    algorithm = _algorithm_for(expected)
    remove_stale_parts(dest)
    if dest.is_file():
        if file_checksum(dest, algorithm) == expected:
            log.info("%s: already downloaded, %s verified", dest.name, algorithm)
            return dest
        log.info("%s: existing file has a wrong %s, downloading it again", dest.name, algorithm)
        dest.unlink()

    h = hashlib.new(algorithm)
    with atomic_path(dest, suffix=".part") as tmp:
        with open(tmp, "wb") as out:
            if fcntl is not None:
                fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours: just created
            received = _stream(url, out, dest.name, timeout, h)
        got = h.hexdigest()
        if got != expected:
            raise DownloadError(
                f"{dest.name}: checksum mismatch for the file downloaded from {url}: expected "
                f"{algorithm} {expected}, got {got} ({received} bytes); the file is corrupted "
                "or not the expected one"
            )
    log.info("%s: %s downloaded, %s verified", dest.name, _fmt_mb(received), algorithm)
    return dest


def remove_stale_parts(dest: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary ``.part`` files of earlier, interrupted downloads of ``dest``.

    They are named ``.<dest name>.<random>.tmp.part`` beside ``dest`` (:func:`mfoml.io.atomic_path`).
    A file whose advisory lock is held (a download of it still running in a live process) is
    kept. Returns the removed paths.
    """
    dest = Path(dest)
    removed: list[Path] = []
    if fcntl is None or not dest.parent.is_dir():
        return removed
    for name in glob.glob(glob.escape(f"{dest.parent}/.{dest.name}.") + "*.tmp.part"):
        try:
            fd = os.open(name, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # in use by a live download
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            removed.append(Path(name))
            log.info("%s: removed %s, left by an interrupted download", dest.name, name)
        finally:
            os.close(fd)
    return removed


def fetch_bytes(url: str, *, timeout: float = 60.0) -> bytes:
    """The body of ``url`` in memory, checked against ``Content-Length`` and gunzipped when it
    is gzip data (a server may send ``Content-Encoding: gzip``).

    Raises
    ------
    DownloadError naming the URL: HTTP error, unreachable, cut short, corrupted gzip data.
    """
    buf = io.BytesIO()
    _stream(url, buf, url.rsplit("/", 1)[-1] or url, timeout, None)
    data = buf.getvalue()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DownloadError(f"corrupted gzip data from {url}: {exc}") from exc
    return data


def expected_checksum(fname: str, default: str, checksums: Mapping[str, str] | None) -> str:
    """``checksums[fname]`` when given (a mirror serving other files), else ``default``."""
    if checksums and fname in checksums:
        return checksums[fname]
    return default


def fetch(
    fname: str,
    bases: list[str],
    dest_dir: Path,
    expected: str,
    *,
    timeout: float,
) -> tuple[Path, str]:
    """Try each base URL in turn; return the verified file ``dest_dir / fname`` and its URL."""
    errors = []
    for base in bases:
        url = base.rstrip("/") + "/" + fname
        try:
            return download_file(url, dest_dir / fname, expected, timeout=timeout), url
        except DownloadError as exc:
            errors.append(str(exc))
            if len(bases) > 1:
                log.warning("%s: %s; trying the next mirror", fname, exc)
    raise DownloadError("; ".join(errors))
