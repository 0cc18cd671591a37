"""A minimal OpenML REST client with a validated on-disk cache.

The server is a parameter (default ``https://www.openml.org/``) so the client can be tested
against a loopback server serving files in the real OpenML formats, under the real URL paths::

    {server}api/v1/json/data/list/data_name/{name}/limit/2/status/active/
    {server}api/v1/json/data/{id}
    {server}api/v1/json/data/features/{id}
    {server}data/v1/download/{file_id}/{name}.arff   (the path of the description's "url")

scikit-learn's ``fetch_openml`` is not used: its base URL is a module constant
(``sklearn.datasets._openml._DATA_INFO`` etc.) that cannot be redirected without patching
private names.

Caching: every downloaded file is kept under the cache directory at its URL path, written
atomically and only after it validated (JSON parses; ARFF has the announced length and the md5
of the description). A cached file that fails validation later is deleted and downloaded again;
a download that is cut or corrupted raises :class:`OpenMLDownloadError` naming the URL and
leaves nothing in the cache. Transfers go through :func:`mfoml.data.download.fetch_bytes`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.parse
from pathlib import Path
from typing import Any

from mfoml.data.download import DownloadError, fetch_bytes
from mfoml.data.openml.arff import ArffData, parse_arff
from mfoml.io import atomic_path

__all__ = ["DEFAULT_SERVER", "OpenMLClient", "OpenMLDownloadError"]

log = logging.getLogger(__name__)

DEFAULT_SERVER = "https://www.openml.org/"
_TIMEOUT_S = 60


class OpenMLDownloadError(DownloadError):
    """A download from OpenML failed, was cut short, or did not validate."""


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class OpenMLClient:
    """Minimal OpenML REST client with an on-disk cache.

    Parameters
    ----------
    server : base URL ending in ``/`` (default ``https://www.openml.org/``); a loopback server
        in tests.
    cache_dir : directory where responses are kept at their URL paths; ``None`` disables the
        cache.
    offline : when True never touch the network; a file missing from the cache is an error.
    """

    def __init__(
        self,
        server: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        offline: bool = False,
    ) -> None:
        server = server or DEFAULT_SERVER
        self.server = server if server.endswith("/") else server + "/"
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.offline = offline

    # -- raw transfer --------------------------------------------------------------------------
    def _download(self, url: str) -> bytes:
        if self.offline:
            raise OpenMLDownloadError(f"offline and not cached: {url}")
        log.info("GET %s", url)
        try:
            return fetch_bytes(url, timeout=_TIMEOUT_S)
        except DownloadError as exc:
            raise OpenMLDownloadError(str(exc)) from exc

    def _cache_path(self, rel: str) -> Path | None:
        if self.cache_dir is None:
            return None
        rel = rel.strip("/")
        if rel.endswith("/") or not rel:
            rel = rel + "index"
        parts = [p for p in rel.split("/") if p not in ("", ".", "..")]
        return self.cache_dir.joinpath(*parts)

    def fetch(self, rel: str, *, validate: Any = None) -> bytes:
        """Return the bytes at ``server + rel``, from the cache when a valid copy is there.

        Parameters
        ----------
        rel : URL path relative to the server (e.g. ``"api/v1/json/data/61"``).
        validate : callable ``bytes -> None`` raising ``ValueError`` when the content is not
            acceptable; applied to cached and fresh data. Invalid cached data is deleted and
            fetched again; invalid fresh data raises :class:`OpenMLDownloadError`, not cached.
        """
        url = urllib.parse.urljoin(self.server, rel)
        cpath = self._cache_path(rel.rstrip("/") + ("/index" if rel.endswith("/") else ""))
        if cpath is not None and cpath.is_file():
            data = cpath.read_bytes()
            try:
                if validate is not None:
                    validate(data)
                return data
            except ValueError as exc:
                log.warning("discarding invalid cached %s (%s)", cpath, exc)
                cpath.unlink()
        data = self._download(url)
        if validate is not None:
            try:
                validate(data)
            except ValueError as exc:
                raise OpenMLDownloadError(f"invalid data from {url}: {exc}") from exc
        if cpath is not None:
            with atomic_path(cpath, suffix="") as tmp:
                tmp.write_bytes(data)
        return data

    def fetch_json(self, rel: str, key: str) -> Any:
        """Fetch and parse a JSON API response; ``key`` is the top-level key it must hold."""

        def check(data: bytes) -> None:
            try:
                obj = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"malformed JSON ({exc})") from exc
            if not isinstance(obj, dict) or key not in obj:
                raise ValueError(f"JSON without the {key!r} key (an OpenML error response?)")

        return json.loads(self.fetch(rel, validate=check).decode("utf-8"))[key]

    # -- API calls -----------------------------------------------------------------------------
    def resolve_name(self, name: str, version: int | None = None) -> int:
        """Data-set id of ``name`` (the first active version, or exactly ``version``)."""
        qname = urllib.parse.quote(name, safe="")
        if version is None:
            rel = f"api/v1/json/data/list/data_name/{qname}/limit/2/status/active/"
        else:
            rel = f"api/v1/json/data/list/data_name/{qname}/limit/2/data_version/{int(version)}"
        try:
            found = self.fetch_json(rel, "data")["dataset"]
        except OpenMLDownloadError as exc:
            raise OpenMLDownloadError(
                f"OpenML data set {name!r}"
                + (f" version {version}" if version is not None else "")
                + f" not found or not reachable: {exc}"
            ) from exc
        if not found:
            raise OpenMLDownloadError(f"OpenML has no active data set named {name!r}")
        return int(found[0]["did"])

    def description(self, data_id: int) -> dict[str, Any]:
        """The ``data_set_description`` dict of data set ``data_id``."""
        return self.fetch_json(f"api/v1/json/data/{int(data_id)}", "data_set_description")

    def features(self, data_id: int) -> list[dict[str, Any]]:
        """The ``data_features.feature`` list of data set ``data_id``."""
        return self.fetch_json(f"api/v1/json/data/features/{int(data_id)}", "data_features")[
            "feature"
        ]

    def arff(self, desc: dict[str, Any]) -> ArffData:
        """Download (or read from cache) and parse the ARFF file a description points to."""
        if str(desc.get("format", "ARFF")).lower() not in ("arff", "sparse_arff"):
            raise OpenMLDownloadError(
                f"OpenML data set {desc.get('id')} has format {desc.get('format')!r}; "
                "only ARFF is supported"
            )
        url = desc.get("url")
        if url:
            rel = urllib.parse.urlparse(url).path.lstrip("/")
        else:
            rel = f"data/v1/download/{int(desc['file_id'])}"
        md5 = desc.get("md5_checksum")

        def check(data: bytes) -> None:
            if md5 and _md5(data) != md5:
                raise ValueError(f"md5 {_md5(data)} != description's md5_checksum {md5}")
            if b"@data" not in data and b"@DATA" not in data:
                raise ValueError("no @data section")

        data = self.fetch(rel, validate=check)
        try:
            return parse_arff(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise OpenMLDownloadError(
                f"cannot parse ARFF of data set {desc.get('id')}: {exc}"
            ) from exc
