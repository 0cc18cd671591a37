"""docs/rulegraph.svg (drawn by `make rulegraph` with Graphviz) names exactly the rules of the
default configuration's DAG (issue 22: it had fallen behind the workflow)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from workflow_utils import REPO, copy_workflow, run_snakemake

SVG = REPO / "docs" / "rulegraph.svg"


def _svg_rules(svg: str) -> set[str]:
    """The node labels of a Graphviz SVG (one <text> per node; edges carry none)."""
    return {t.strip() for t in re.findall(r"<text[^>]*>([^<]+)</text>", svg)}


def _dot_rules(dot: str) -> set[str]:
    return set(re.findall(r'label = "([^"]+)"', dot))


@pytest.fixture(scope="module")
def dag_dot(tmp_path_factory) -> str:
    wd = copy_workflow(tmp_path_factory.mktemp("rulegraph"))
    proc = run_snakemake(wd, "all", "--rulegraph", check=True)
    assert proc.stdout.lstrip().startswith("digraph"), proc.stdout[:500]
    return proc.stdout


def test_rulegraph_svg_names_the_dags_rules(dag_dot):
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz; .ci/run does)")
    want = _dot_rules(dag_dot)
    assert {"all", "data", "train", "activations", "probe", "ncc", "aggregate"} <= want
    drawn = subprocess.run(
        ["dot", "-Tsvg"], input=dag_dot, capture_output=True, text=True, check=True
    ).stdout
    assert _svg_rules(drawn) == want  # the parser reads what dot draws
    have = _svg_rules(SVG.read_text())
    assert have == want, (
        f"docs/rulegraph.svg is out of date (missing {sorted(want - have)}, extra "
        f"{sorted(have - want)}): run `make rulegraph`"
    )


def test_make_rulegraph_target_draws_the_svg():
    text = (REPO / "Makefile").read_text()
    recipe = text.split("\nrulegraph:", 1)[1].split("\n\n", 1)[0]
    assert "--rulegraph" in recipe and "dot -Tsvg" in recipe and "docs/rulegraph.svg" in recipe
    assert "graphviz" in (REPO / ".ci" / "run").read_text()
    assert Path(SVG).read_text().lstrip().startswith(("<?xml", "<svg"))
