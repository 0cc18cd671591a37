"""The HTML report as a reader sees it: ``snakemake --report`` on the shared tiny run, opened in
headless Chromium (Debian's ``chromium-headless-shell`` or ``chromium``; ``.ci/run`` installs
it as root) through the DevTools protocol (tests/cdp.py).

Screenshots of the first page, of every figure and of one table: none is blank (pixel
variance), every figure's title region lies inside the viewport (the viewer centres an image
and cuts the top of one taller than the window), and the tables are HTML pages, not CSV
downloads. Skipped, with the reason printed, where Chromium cannot be had. Set
``MFOML_SCREENSHOTS=<dir>`` to keep the screenshots.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np
import pytest
from cdp import Browser, find_chromium
from PIL import Image
from workflow_utils import TINY_CONFIG, completed_tiny_run, run_snakemake

pytestmark = pytest.mark.slow

CHROMIUM = find_chromium()
WHY_SKIPPED = (
    "no headless Chromium on PATH (chromium-headless-shell or chromium; "
    "`apt-get install chromium-headless-shell`, which .ci/run does as root)"
)
VIEWPORT = (1600, 1000)
#: Top share of a figure's height that holds its title (suptitle and the first panel titles).
TITLE_SHARE = 0.08


def _skip_without_chromium() -> None:
    if CHROMIUM is None:
        print(f"SKIPPED: {WHY_SKIPPED}")
        pytest.skip(WHY_SKIPPED)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _skip_without_chromium()
    tiny = completed_tiny_run(tmp_path_factory.getbasetemp())
    out = tmp_path_factory.mktemp("report") / "report.html"
    run_snakemake(tiny, "--report", str(out), configfile=tiny / TINY_CONFIG, check=True)
    return out


@pytest.fixture(scope="module")
def page(report: Path):
    with Browser(CHROMIUM) as browser:  # type: ignore[arg-type]
        page = browser.open(report.as_uri(), *VIEWPORT)
        # the report is a React app: wait until it has rendered its first view
        page.wait_for(
            "document.querySelector('#app') && document.querySelector('#app').innerText.length > 20"
        )
        yield page


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keep = os.environ.get("MFOML_SCREENSHOTS")
    out = Path(keep) if keep else tmp_path_factory.mktemp("screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def pixels(path: Path, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Grey values (0-255) of a screenshot, or of ``box`` = (left, top, right, bottom)."""
    img = Image.open(path).convert("L")
    if box is not None:
        img = img.crop(box)
    return np.asarray(img, dtype=float)


def assert_not_blank(values: np.ndarray, what: str) -> None:
    """Some content: a spread of grey values and at least 0.5 % of the pixels off the most
    common value (the background)."""
    assert values.size, f"{what}: empty region"
    levels, counts = np.unique(values.round(), return_counts=True)
    off = 1 - counts.max() / values.size
    assert values.std() > 3 and off > 0.005, (
        f"{what} looks blank (sd {values.std():.2f}, {off:.4f})"
    )


def _results(page, mime: str) -> list[str]:
    return page.evaluate(
        f"Object.keys(results).filter(k => results[k].mime_type === {mime!r}).sort()"
    )


def _show(page, content: str, key: str) -> None:
    """Open a result as its button in the report does (ButtonViewManager)."""
    page.evaluate(
        f"app.setView({{content: {content!r}, contentPath: results[{key!r}].data_uri, "
        f"resultPath: {key!r}}})"
    )


def test_first_page_is_not_blank(page, shots):
    shot = page.screenshot(shots / "first_page.png")
    assert Image.open(shot).size == VIEWPORT
    assert_not_blank(pixels(shot), "the report's first page")


def test_every_figure_shows_its_title(page, shots):
    figures = _results(page, "image/png") + _results(page, "image/svg+xml")
    assert any(k.endswith("alpha_layers.png") for k in figures), figures
    width, height = VIEWPORT
    for key in figures:
        _show(page, "img", key)
        rect = page.wait_for(  # the image the viewer shows (not an icon of the menu)
            "(() => { const i = [...document.images]"
            f".find(i => i.src === results[{key!r}].data_uri);"
            " if (!i || !i.complete || !i.naturalWidth) return null;"
            " const r = i.getBoundingClientRect();"
            " return {top: r.top, bottom: r.bottom, left: r.left, right: r.right,"
            " height: r.height, natural: i.naturalHeight}; })()"
        )
        title_bottom = rect["top"] + TITLE_SHARE * rect["height"]
        assert rect["top"] >= 0 and title_bottom <= height, (key, rect)
        assert rect["right"] <= width + 1 and rect["height"] > 50, (key, rect)
        name = Path(key).stem
        shot = page.screenshot(shots / f"figure_{name}.png")
        box = (int(rect["left"]), int(rect["top"]), int(rect["right"]), int(title_bottom) + 1)
        assert_not_blank(pixels(shot, box), f"the title region of {key}")
        assert_not_blank(pixels(shot), f"the figure {key}")


def test_tables_are_html_tables(page, shots):
    assert not _results(page, "text/csv"), "a table is a bare CSV download in the report"
    tables = _results(page, "text/html")
    key = next(k for k in tables if k.endswith("correlation.html"))
    uri = page.evaluate(f"results[{key!r}].data_uri")
    head, _, data = uri.partition(",")
    html = base64.b64decode(data).decode() if head.endswith(";base64") else data
    assert "<table>" in html and "<th" in html
    _show(page, "html", key)
    rect = page.wait_for(
        "(() => { const f = document.querySelector('iframe');"
        " if (!f) return null; const r = f.getBoundingClientRect();"
        " return {top: r.top, left: r.left, right: r.right, bottom: r.bottom}; })()"
    )
    page.wait_for("new Promise(r => setTimeout(() => r(true), 500))")  # the frame paints
    shot = page.screenshot(shots / "table_correlation.png")
    box = (
        int(max(rect["left"], 0)),
        int(max(rect["top"], 0)),
        int(min(rect["right"], VIEWPORT[0])),
        int(min(rect["bottom"], VIEWPORT[1])),
    )
    assert_not_blank(pixels(shot, box), "the correlation table")
