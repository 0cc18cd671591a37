"""Atomic output writing, and small readers (JSON, file checksums).

Every file the pipeline produces is written to a temporary file in the same directory and then
renamed over the destination (``os.replace`` is atomic on POSIX within one file system). A job
killed half-way therefore leaves either the previous file or no file, never a truncated one that
a later run would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "atomic_save_npy",
    "atomic_save_npz",
    "atomic_write_json",
    "atomic_write_csv",
    "current_umask",
    "file_checksum",
    "fresh_partial_dir",
    "partial_dir",
    "read_csv_checked",
    "read_json",
    "replace_dir",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.

    Parameters
    ----------
    path : destination file.
    suffix : suffix of the temporary file (defaults to the destination's suffixes, so that
        libraries which infer the format from the name, e.g. ``np.save`` or matplotlib, work).
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(dest.suffixes)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{dest.name}.", suffix=f".tmp{suffix}", dir=dest.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates mode 0600; give the result the permissions an ordinary open() would,
        # so shared results/ and resources/ on a cluster stay readable by the group.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def current_umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Save one array in ``.npy`` format atomically (loadable with ``np.load(mmap_mode='r')``)."""
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, np.asarray(array), allow_pickle=False)


def atomic_save_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """Save several arrays in one uncompressed ``.npz`` atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically (numpy scalars/arrays allowed)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_write_csv(path: str | os.PathLike[str], frame: Any) -> None:
    """Write a pandas DataFrame as CSV (no index) atomically."""
    with atomic_path(path, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, with an error that names the file when it is malformed."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: malformed JSON ({exc})") from exc


def file_checksum(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file's content (read in 1 MiB chunks).

    Parameters
    ----------
    path : the file.
    algorithm : any :mod:`hashlib` name, e.g. ``"sha256"`` or ``"md5"``.
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def replace_dir(tmp: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Rename the finished directory ``tmp`` onto ``out`` (same file system), replacing an old
    ``out``: the old one is moved aside first and removed only after the rename succeeded."""
    tmp, out = Path(tmp), Path(out)
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    old.rmdir()
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def partial_dir(out: str | os.PathLike[str]) -> Path:
    """Where a job builds the output directory ``out`` before :func:`replace_dir` moves it into
    place: ``.{name}.partial`` beside it (same file system; hidden, never an output itself).

    A killed job leaves only this directory, never a half-written ``out`` that a later run could
    trust; a job that can resume (training) continues from what it holds.
    """
    out = Path(out)
    return out.with_name(f".{out.name}.partial")


def fresh_partial_dir(out: str | os.PathLike[str]) -> Path:
    """:func:`partial_dir` of ``out``, empty and created: for a job that does not resume, what
    a killed run left there is discarded (logged).

    Returns the directory to build the output in before :func:`replace_dir` moves it onto
    ``out``.
    """
    work = partial_dir(out)
    if work.exists():
        logging.getLogger(__name__).info(
            "discarding %s (left by an interrupted run; this job does not resume)", work
        )
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return work


def _short_row(path: Path, n_fields: int) -> tuple[int, int] | None:
    """(data row number from 1, its field count) of the first row with fewer fields than the
    header (pandas fills those with NaN silently), or None."""
    import csv

    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        for i, row in enumerate(csv.reader(fh)):
            if i > 0 and row and len(row) < n_fields:
                return i, len(row)
    return None


def read_csv_checked(
    path: str | os.PathLike[str],
    required: tuple[str, ...] = (),
    numeric: tuple[str, ...] | str = (),
) -> Any:
    """Read a CSV table of the pipeline (a pandas DataFrame) and check it, naming the file.

    Parameters
    ----------
    path : the file (e.g. ``results/runs/{run}/probe.csv``).
    required : columns that must be present.
    numeric : columns (where present) whose every non-empty value must be a number, or
        ``"all"``: every column of the file.

    Raises
    ------
    ValueError
        ``"{path}: ..."`` saying what is wrong (unreadable, empty, missing columns, a row with
        fewer fields than the header, as a file cut mid-row has, a value that is not a number,
        with its row and column) and how to recompute the file.
    """
    import pandas as pd  # local: the base layer stays light

    p = Path(path)
    fix = "delete the file (or use --forcerun on the rule that writes it) to recompute it"
    try:
        frame = pd.read_csv(p)
    except FileNotFoundError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: not a readable CSV table ({exc}); {fix}") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{p}: column(s) {missing} missing (found {list(frame.columns)}); the file is "
            f"truncated, corrupted or from another version; {fix}"
        )
    if frame.empty:
        raise ValueError(f"{p}: the table has no rows; {fix}")
    short = _short_row(p, len(frame.columns))
    if short is not None:
        raise ValueError(
            f"{p}: row {short[0]} has {short[1]} of {len(frame.columns)} fields; the file is "
            f"truncated or corrupted; {fix}"
        )
    for col in frame.columns if numeric == "all" else numeric:
        if col not in frame.columns:
            continue
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() & frame[col].notna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise ValueError(
                f"{p}: column {col!r}, row {row + 1}: {frame[col].iloc[row]!r} is not a number; "
                f"the file is corrupted; {fix}"
            )
        frame[col] = values
    return frame
