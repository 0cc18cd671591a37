"""A parser of OpenML's ARFF files (dense and sparse data sections).

Numeric columns become float64 (NaN = missing), nominal columns int64 codes in the order the
header declares the categories (-1 = missing), string and date columns lists of str. A dense,
quote-free data section is read through pandas (fast path); anything else line by line.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ArffData", "parse_arff"]


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
