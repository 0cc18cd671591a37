"""OpenML tabular data sets: a small REST client, an ARFF parser and the normalized writer.

``prepare_openml("adult", out_dir)`` resolves a data set by name (the first active version, as
OpenML's own ``data/list/data_name`` query orders them) or by numeric id, downloads the
description JSON, the feature list JSON and the ARFF file through OpenML's REST API, verifies the
ARFF against the description's ``md5_checksum``, and writes the project's normalized data-set
format (``docs/architecture.md``): ``x_train.npy`` float32 ``(N, d)``, ``y_train.npy`` (int64
class codes or float64 targets) and ``meta.json`` last, with sha256 checksums.

The server is a parameter (``mirror=``/``server=``, default ``https://www.openml.org/``) so the
client can be tested against a loopback server serving files in the real OpenML formats, under
the real URL paths::

    {server}api/v1/json/data/list/data_name/{name}/limit/2/status/active/
    {server}api/v1/json/data/{id}
    {server}api/v1/json/data/features/{id}
    {server}data/v1/download/{file_id}/{name}.arff   (the path of the description's "url")

scikit-learn's ``fetch_openml`` is not used: its base URL is a module constant
(``sklearn.datasets._openml._DATA_INFO`` etc.) that cannot be redirected without patching
private names.

Caching: every downloaded file is kept under ``<download_dir>/openml/`` (default
``resources/downloads/openml``) at its URL path, written atomically and only after it validated (JSON
parses; ARFF has the announced length and the md5 of the description). A cached file that fails
validation later is deleted and downloaded again; a download that is cut or corrupted raises
:class:`OpenMLDownloadError` naming the URL and leaves nothing in the cache.

Encoding of features: numeric columns as float; nominal columns as their integer code in the
order the ARFF header declares them (ordinal codes, fine for tree models; recorded in
``meta["options"]["feature_types"]``); missing values (``?``) imputed with the training-set median
(numeric) or most frequent code (nominal), recorded per column. String and date columns,
OpenML's ignore and row-id attributes are dropped (listed in ``meta["options"]["dropped"]``).
Rows with a missing target are dropped.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import http.client
import io
import json
import logging
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfoml.io import atomic_path

__all__ = [
    "DEFAULT_SERVER",
    "OpenMLDownloadError",
    "ArffData",
    "parse_arff",
    "OpenMLClient",
    "prepare_openml",
    "parse_openml_name",
]

log = logging.getLogger(__name__)

DEFAULT_SERVER = "https://www.openml.org/"
_TIMEOUT_S = 60


class OpenMLDownloadError(RuntimeError):
    """A download from OpenML failed, was cut short, or did not validate."""


# ---------------------------------------------------------------------------------------------
# ARFF


@dataclass
class ArffData:
    """A parsed ARFF file.

    Attributes
    ----------
    relation : the ``@relation`` name.
    names : attribute names, in file order (length d).
    types : per attribute ``"numeric"``, ``"nominal"``, ``"string"`` or ``"date"``.
    nominal_values : per attribute the declared category list (``None`` unless nominal).
    columns : per attribute the raw values of all N rows: a float64 array (NaN = missing) for
        numeric, an int64 code array (-1 = missing) for nominal, a list of str|None otherwise.
    """

    relation: str
    names: list[str]
    types: list[str]
    nominal_values: list[list[str] | None]
    columns: list[Any] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        """Number of data rows N."""
        return len(self.columns[0]) if self.columns else 0


_TOKEN = re.compile(
    r"""\s*('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^,{}]*?)\s*(?:,|$)""",
)


def _unquote(tok: str) -> str:
    tok = tok.strip()
    if len(tok) >= 2 and tok[0] == tok[-1] and tok[0] in "'\"":
        inner = tok[1:-1]
        return re.sub(r"\\(.)", r"\1", inner)
    return tok


def _split_values(line: str) -> list[str]:
    """Split one ARFF data line (or a nominal list) on commas, honouring ' and " quotes."""
    if "'" not in line and '"' not in line:
        return [v.strip() for v in line.split(",")]
    out: list[str] = []
    pos = 0
    n = len(line)
    while pos <= n:
        m = _TOKEN.match(line, pos)
        if m is None or m.end() == pos and pos < n:
            raise ValueError(f"cannot tokenize ARFF line near column {pos}: {line[:80]!r}")
        out.append(_unquote(m.group(1)))
        if m.end() >= n:
            break
        pos = m.end()
    return out


def _parse_attribute(rest: str) -> tuple[str, str, list[str] | None]:
    rest = rest.strip()
    if rest[:1] in "'\"":
        q = rest[0]
        end = rest.index(q, 1)
        while rest[end - 1] == "\\":
            end = rest.index(q, end + 1)
        name, spec = _unquote(rest[: end + 1]), rest[end + 1 :].strip()
    else:
        parts = rest.split(None, 1)
        if len(parts) != 2:
            raise ValueError(f"malformed @attribute line: {rest!r}")
        name, spec = parts
    if spec.startswith("{"):
        if not spec.endswith("}"):
            raise ValueError(f"unterminated nominal list for attribute {name!r}")
        return name, "nominal", _split_values(spec[1:-1])
    kind = spec.split()[0].lower()
    if kind in ("numeric", "real", "integer"):
        return name, "numeric", None
    if kind == "string":
        return name, "string", None
    if kind == "date":
        return name, "date", None
    raise ValueError(f"unsupported ARFF attribute type {spec!r} for attribute {name!r}")


def _parse_dense_fast(
    data_lines: list[str],
    names: list[str],
    types: list[str],
    code_maps: list[dict[str, int] | None],
) -> list[Any] | None:
    """Columns of a dense, quote-free ARFF data section via pandas, or None if not applicable."""
    import pandas as pd

    body = []
    for raw in data_lines:
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        if line[0] == "{" or "'" in line or '"' in line:
            return None
        body.append(line)
    d = len(names)
    for k, line in enumerate(body):
        if line.count(",") != d - 1:
            raise ValueError(
                f"ARFF data row {k + 1}: {line.count(',') + 1} values, header declares {d}"
            )
    if not body:
        return [
            np.zeros(0) if t == "numeric" else (np.zeros(0, np.int64) if t == "nominal" else [])
            for t in types
        ]
    dtypes = {c: (np.float64 if t == "numeric" else str) for c, t in enumerate(types)}
    try:
        frame = pd.read_csv(
            io.StringIO("\n".join(body)),
            header=None,
            names=list(range(d)),
            dtype=dtypes,
            quoting=csv.QUOTE_NONE,
            skipinitialspace=True,
            na_values={c: ["?"] for c, t in enumerate(types) if t == "numeric"},
            keep_default_na=False,
            engine="c",
        )
    except ValueError as exc:
        raise ValueError(f"ARFF data: {exc}") from exc
    columns: list[Any] = []
    for c in range(d):
        if types[c] == "numeric":
            columns.append(frame[c].to_numpy(np.float64))
            continue
        vals = frame[c].astype(str).str.strip()
        if types[c] == "nominal":
            cmap = code_maps[c]
            assert cmap is not None
            codes = vals.map(cmap)
            bad = codes.isna() & (vals != "?")
            if bad.any():
                raise ValueError(
                    f"ARFF nominal attribute {names[c]!r}: value {vals[bad].iloc[0]!r} not declared"
                )
            columns.append(codes.fillna(-1).to_numpy(np.int64))
        else:
            columns.append([None if v == "?" else v for v in vals])
    return columns


def parse_arff(text: str, engine: str = "auto") -> ArffData:
    """Parse ARFF text (dense and sparse data rows) into typed columns.

    Parameters
    ----------
    text : the whole ARFF file as a string.
    engine : ``"auto"``: dense data without any quote character is read by pandas' C CSV
        reader (numeric columns straight to float64, so large sets such as covertype need no
        Python object per value); everything else (quotes, sparse rows) by the Python
        tokenizer. ``"python"`` forces the tokenizer (the tests compare both).

    Returns
    -------
    ArffData with one column per attribute (see :class:`ArffData`).

    Raises
    ------
    ValueError naming the line when the file is malformed (wrong number of values, a nominal
    value not declared in the header, a non-numeric value in a numeric column, no @data).
    """
    lines = text.splitlines()
    relation = ""
    names: list[str] = []
    types: list[str] = []
    noms: list[list[str] | None] = []
    i = 0
    for i, raw in enumerate(lines):  # noqa: B007 (i used after the loop)
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        low = line.lower()
        if low.startswith("@relation"):
            relation = _unquote(line[len("@relation") :])
        elif low.startswith("@attribute"):
            name, kind, nom = _parse_attribute(line[len("@attribute") :])
            names.append(name)
            types.append(kind)
            noms.append(nom)
        elif low.startswith("@data"):
            break
        else:
            raise ValueError(f"ARFF line {i + 1}: unexpected header line {line[:80]!r}")
    else:
        raise ValueError("ARFF file has no @data section (truncated or not ARFF)")
    if not names:
        raise ValueError("ARFF file declares no @attribute")
    d = len(names)
    code_maps = [{v: k for k, v in enumerate(nom)} if nom is not None else None for nom in noms]
    if engine not in ("auto", "python"):
        raise ValueError(f"engine must be 'auto' or 'python', got {engine!r}")
    if engine == "auto":
        fast = _parse_dense_fast(lines[i + 1 :], names, types, code_maps)
        if fast is not None:
            return ArffData(relation, names, types, noms, fast)
    rows: list[list[str]] = []
    for j in range(i + 1, len(lines)):
        line = lines[j].strip()
        if not line or line.startswith("%"):
            continue
        if line.startswith("{"):
            if not line.endswith("}"):
                raise ValueError(f"ARFF line {j + 1}: unterminated sparse row")
            vals = ["0"] * d
            body = line[1:-1].strip()
            if body:
                for item in _split_values(body):
                    idx, _, v = item.strip().partition(" ")
                    vals[int(idx)] = _unquote(v)
            rows.append(vals)
            continue
        vals = _split_values(line)
        if len(vals) != d:
            raise ValueError(f"ARFF line {j + 1}: {len(vals)} values, header declares {d}")
        rows.append(vals)
    columns: list[Any] = []
    for c in range(d):
        raw_col = [r[c] for r in rows]
        if types[c] == "numeric":
            try:
                col = np.array([np.nan if v == "?" else float(v) for v in raw_col], np.float64)
            except ValueError as exc:
                raise ValueError(f"ARFF numeric attribute {names[c]!r}: {exc}") from exc
        elif types[c] == "nominal":
            cmap = code_maps[c]
            assert cmap is not None
            try:
                col = np.array([-1 if v == "?" else cmap[v] for v in raw_col], np.int64)
            except KeyError as exc:
                raise ValueError(
                    f"ARFF nominal attribute {names[c]!r}: value {exc.args[0]!r} not declared"
                ) from exc
        else:
            col = [None if v == "?" else v for v in raw_col]
        columns.append(col)
    return ArffData(relation, names, types, noms, columns)


# ---------------------------------------------------------------------------------------------
# REST client with a validated cache


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
        print(f"[openml] GET {url}", file=sys.stderr)
        try:
            with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:
                expected = resp.headers.get("Content-Length")
                data = resp.read()
                encoding = resp.headers.get("Content-Encoding", "")
        except http.client.IncompleteRead as exc:
            raise OpenMLDownloadError(
                f"download of {url} was cut short: got {len(exc.partial)} bytes"
                + (f" of {exc.expected + len(exc.partial)}" if exc.expected else "")
            ) from exc
        except urllib.error.HTTPError as exc:
            raise OpenMLDownloadError(f"HTTP {exc.code} for {url}: {exc.reason}") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise OpenMLDownloadError(f"cannot download {url}: {exc}") from exc
        if expected is not None and int(expected) != len(data):
            raise OpenMLDownloadError(
                f"download of {url} was cut short: got {len(data)} of {expected} bytes"
            )
        if encoding == "gzip" or data[:2] == b"\x1f\x8b":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise OpenMLDownloadError(f"corrupted gzip data from {url}: {exc}") from exc
        return data

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
                print(f"[openml] discarding invalid cached {cpath}: {exc}", file=sys.stderr)
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


# ---------------------------------------------------------------------------------------------
# Normalized data set


def parse_openml_name(name: str) -> tuple[str | int, int | None]:
    """Split ``"openml-adult"``, ``"adult"``, ``"openml-1590"`` or ``"adult@2"``.

    Returns
    -------
    (name or integer id, version or None)
    """
    base = name[len("openml-") :] if name.startswith("openml-") else name
    if base.startswith("openml:"):
        base = base[len("openml:") :]
    version = None
    if "@" in base:
        base, v = base.rsplit("@", 1)
        version = int(v)
    if not base:
        raise ValueError(f"empty OpenML data-set name in {name!r}")
    return (int(base) if base.isdigit() else base), version


def _as_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, list):
        return [str(x) for x in v]
    return [s.strip() for s in str(v).split(",") if s.strip()]


def prepare_openml(
    name: str | int,
    out_dir: str | os.PathLike[str],
    *,
    download_dir: str | os.PathLike[str] | None = None,
    mirror: str | None = None,
    server: str | None = None,
    version: int | None = None,
    target: str | None = None,
    task: str | None = None,
    max_samples: int | None = None,
    per_class_cap: int | None = None,
    seed: int = 0,
    offline: bool = False,
    grayscale: bool = False,
) -> dict[str, Any]:
    """Download an OpenML data set and write it in the normalized data-set format.

    Parameters
    ----------
    name : ``"openml-<name-or-id>"``, a bare name or an integer id; ``"name@version"`` pins a
        version.
    out_dir : destination directory (``resources/data/openml-<name>``); written into a temp
        directory and renamed, ``meta.json`` last.
    download_dir : raw downloads root; OpenML responses are cached under
        ``download_dir/openml/`` at their URL paths (default ``resources/downloads``).
    mirror, server : base URL of the OpenML server (synonyms; default ``https://www.openml.org/``).
    version : data-set version when resolving by name.
    target : target attribute (default: the description's ``default_target_attribute``).
    task : ``"classification"`` or ``"regression"``; default: nominal target -> classification,
        numeric -> regression.
    max_samples : keep at most this many rows (stratified for classification, seeded).
    per_class_cap : keep at most this many rows per class (classification).
    seed : seed of the subsampling.
    offline : use only the cache.
    grayscale : not applicable to tables; must be False.

    Returns
    -------
    The meta dict written to ``meta.json``.
    """
    if grayscale:
        raise ValueError("prepare_openml: grayscale=True does not apply to tabular data")
    if mirror and server and mirror != server:
        raise ValueError("prepare_openml: give either mirror= or server=, not both")
    ident, v2 = parse_openml_name(str(name))
    version = version if version is not None else v2
    cache = Path(download_dir if download_dir is not None else "resources/downloads") / "openml"
    client = OpenMLClient(mirror or server, cache, offline=offline)
    data_id = ident if isinstance(ident, int) else client.resolve_name(ident, version)
    desc = client.description(data_id)
    feats = client.features(data_id)
    arff = client.arff(desc)

    tgt = target or desc.get("default_target_attribute")
    if not tgt:
        raise ValueError(f"OpenML data set {data_id} has no default target; pass target=")
    if "," in str(tgt):
        raise ValueError(f"OpenML data set {data_id}: multi-target {tgt!r} is not supported")
    if tgt not in arff.names:
        raise ValueError(f"OpenML data set {data_id}: target {tgt!r} not among the attributes")
    ignore = set(_as_list(desc.get("ignore_attribute"))) | set(
        _as_list(desc.get("row_id_attribute"))
    )
    for f in feats:
        if str(f.get("is_ignore")) == "true" or str(f.get("is_row_identifier")) == "true":
            ignore.add(f["name"])
    ignore.discard(tgt)

    ti = arff.names.index(tgt)
    ttype = arff.types[ti]
    if task is None:
        task = "classification" if ttype == "nominal" else "regression"
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    ycol = arff.columns[ti]
    class_names: list[str] | None = None
    if task == "classification":
        if ttype == "nominal":
            keep = ycol >= 0
            present = np.unique(ycol[keep])
            declared = arff.nominal_values[ti]
            assert declared is not None
            class_names = [declared[k] for k in present]
            remap = np.full(len(declared), -1, np.int64)
            remap[present] = np.arange(len(present))
            y = remap[np.where(keep, ycol, 0)]
        elif ttype == "numeric":
            keep = ~np.isnan(ycol)
            vals, y = np.unique(ycol[keep], return_inverse=True)
            y = np.asarray(y, np.int64)
            class_names = [repr(float(v)) for v in vals]
            full = np.zeros(len(ycol), np.int64)
            full[keep] = y
            y = full
        else:
            raise ValueError(f"target {tgt!r} has unsupported type {ttype}")
        y = y.astype(np.int64)
    else:
        if ttype != "numeric":
            raise ValueError(f"regression needs a numeric target; {tgt!r} is {ttype}")
        keep = ~np.isnan(ycol)
        y = ycol.astype(np.float64)

    cols, fnames, ftypes, imputed, dropped = [], [], [], {}, sorted(ignore)
    for c, (fname, ftype) in enumerate(zip(arff.names, arff.types, strict=True)):
        if c == ti or fname in ignore:
            continue
        if ftype in ("string", "date"):
            dropped.append(fname)
            continue
        col = arff.columns[c]
        if ftype == "numeric":
            colf = col.astype(np.float64)
            miss = np.isnan(colf)
            fill = float(np.median(colf[keep & ~miss])) if np.any(keep & ~miss) else 0.0
        else:
            colf = col.astype(np.float64)
            miss = col < 0
            codes = col[keep & ~miss]
            fill = float(np.bincount(codes).argmax()) if codes.size else 0.0
        if np.any(miss & keep):
            imputed[fname] = {"n_missing": int(np.sum(miss & keep)), "value": fill}
        colf[miss] = fill
        cols.append(colf)
        fnames.append(fname)
        ftypes.append(
            {"name": fname, "type": ftype}
            | ({"categories": arff.nominal_values[c]} if ftype == "nominal" else {})
        )
    if not cols:
        raise ValueError(f"OpenML data set {data_id}: no usable feature columns")
    x = np.stack(cols, axis=1)[keep]
    y = y[keep]
    n_dropped_rows = int(np.sum(~keep))

    rng = np.random.default_rng(seed)
    idx = np.arange(len(y))
    if per_class_cap is not None and task == "classification":
        sel = []
        for k in np.unique(y):
            members = idx[y == k]
            if len(members) > per_class_cap:
                members = np.sort(rng.choice(members, per_class_cap, replace=False))
            sel.append(members)
        idx = np.sort(np.concatenate(sel))
    if max_samples is not None and len(idx) > max_samples:
        if task == "classification":
            from sklearn.model_selection import train_test_split

            idx, _ = train_test_split(
                idx, train_size=max_samples, stratify=y[idx], random_state=seed
            )
            idx = np.sort(idx)
        else:
            idx = np.sort(rng.choice(idx, max_samples, replace=False))
    x, y = x[idx].astype(np.float32), y[idx]
    n_classes = int(len(class_names)) if class_names is not None else None
    if task == "classification" and n_classes is not None:
        # classes lost to subsampling: re-index so labels stay 0..C-1
        present = np.unique(y)
        if len(present) != n_classes:
            assert class_names is not None
            class_names = [class_names[k] for k in present]
            y = np.searchsorted(present, y).astype(np.int64)
            n_classes = len(present)

    ds_name = f"openml-{ident}" + (f"@{version}" if version is not None else "")
    meta: dict[str, Any] = {
        "name": ds_name,
        "source": f"openml:{data_id}",
        "task": task,
        "kind": "tabular",
        "n_classes": n_classes,
        "class_names": class_names,
        "feature_names": fnames,
        "input_shape": [int(x.shape[1])],
        "n_train": int(x.shape[0]),
        "n_test": 0,
        "options": {
            "openml_id": int(data_id),
            "openml_name": desc.get("name"),
            "openml_version": int(desc.get("version", 0)),
            "server": client.server,
            "target": tgt,
            "feature_types": ftypes,
            "dropped": dropped,
            "imputed": imputed,
            "rows_dropped_missing_target": n_dropped_rows,
            "max_samples": max_samples,
            "per_class_cap": per_class_cap,
            "seed": seed,
            "md5_arff": desc.get("md5_checksum"),
        },
    }
    from mfoml.datasets import FORMAT_VERSION, write_normalized

    meta["format_version"] = FORMAT_VERSION
    meta = write_normalized(
        Path(out_dir),
        {
            "x_train.npy": np.ascontiguousarray(x),
            "y_train.npy": y,
            "x_test.npy": None,
            "y_test.npy": None,
        },
        meta,
    )
    print(
        f"[openml] {ds_name}: id {data_id}, {x.shape[0]} rows x {x.shape[1]} features, "
        f"task {task}" + (f", {n_classes} classes" if n_classes else ""),
        file=sys.stderr,
    )
    return meta
