"""Tables of the HTML report as HTML pages (the report's viewer shows an HTML result in a frame;
a CSV result is only a download that shows nothing when opened).

:func:`table_html` renders a table (a ``pandas.DataFrame``) as a small standalone page: a title,
the number of rows and columns, and the table with numbers rounded for reading (the CSV beside
it keeps every digit); :func:`write_table_html` writes the page of a CSV file atomically.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd

from mfoml.io import atomic_write_text

__all__ = ["MAX_HTML_ROWS", "table_html", "write_table_html"]

#: Most rows shown in one page (the CSV keeps them all; the page says how many are left out).
MAX_HTML_ROWS = 2000

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1rem;
       color: #111; background: #fff; }
h1 { font-size: 1.15rem; margin: 0 0 .3rem 0; }
p.meta { color: #555; font-size: .85rem; margin: 0 0 .8rem 0; }
table { border-collapse: collapse; font-size: .8rem; }
th, td { border: 1px solid #ccc; padding: .2rem .45rem; text-align: right; white-space: nowrap; }
th { background: #eef2f7; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
tr:nth-child(even) td { background: #f8f9fb; }
"""


def _cell(value: object) -> str:
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return ""
        return f"{value:.4g}"
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def table_html(frame: pd.DataFrame, title: str, source: str = "") -> str:
    """A standalone HTML page showing ``frame`` (at most :data:`MAX_HTML_ROWS` rows; floats to
    4 significant digits, missing values empty) under ``title``; ``source`` names the CSV."""
    shown = frame.head(MAX_HTML_ROWS)
    numeric = {c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])}
    head = "".join(
        f'<th class="{"num" if c in numeric else "text"}">{html.escape(str(c))}</th>'
        for c in frame.columns
    )
    rows = []
    for values in shown.itertuples(index=False, name=None):
        cells = "".join(
            f'<td class="{"num" if c in numeric else "text"}">{html.escape(_cell(v))}</td>'
            for c, v in zip(frame.columns, values, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    meta = f"{len(frame)} rows x {len(frame.columns)} columns"
    if len(frame) > len(shown):
        meta += f"; the first {len(shown)} rows are shown"
    if source:
        meta += f"; every digit in {html.escape(source)}"
    body = (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if len(frame.columns)
        else "<p>The table is empty.</p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body><h1>{html.escape(title)}</h1><p class="meta">{meta}</p>{body}</body></html>\n'
    )


def write_table_html(
    csv_path: str | os.PathLike[str], html_path: str | os.PathLike[str], title: str = ""
) -> None:
    """Write the page of the CSV file ``csv_path`` to ``html_path`` (atomically); the title
    defaults to the file name. An empty CSV (no columns) gives a page that says so."""
    csv_path = Path(csv_path)
    try:
        frame = pd.read_csv(csv_path)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    atomic_write_text(
        html_path, table_html(frame, title or csv_path.name, source=str(csv_path.name))
    )
