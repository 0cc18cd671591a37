"""docs/architecture.md's package diagram lists every module of every mfoml subpackage, and every
``mfoml.x.y`` it names exists (issue 22: it had named a module that did not exist and left out
six)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "workflow" / "scripts" / "mfoml"
DOC = (REPO / "docs" / "architecture.md").read_text()


def _diagram_rows() -> dict[str, str]:
    """``{"mfoml.sub": "its description, continuation lines joined"}`` from the layer diagram."""
    diagram = DOC.split("```", 2)[1]
    rows: dict[str, str] = {}
    cur = None
    for line in diagram.splitlines():
        m = re.search(r"(mfoml\.[a-z_]+)\s{2,}(.*)$", line)
        if m:
            cur = m.group(1)
            rows[cur] = m.group(2)
        elif cur and re.match(r"^\s{30,}\S", line):
            rows[cur] += " " + line.strip()
        else:
            cur = None
    return rows


def test_the_diagram_lists_every_module():
    rows = _diagram_rows()
    subpackages = sorted(p for p in ROOT.iterdir() if (p / "__init__.py").is_file())
    assert len(subpackages) >= 9
    missing = {}
    for sub in subpackages:
        words = set(re.findall(r"[a-z_0-9]+\*?", rows.get(f"mfoml.{sub.name}", "")))
        names = [p.stem for p in sub.glob("*.py") if p.stem != "__init__"]
        names += [p.name for p in sub.iterdir() if (p / "__init__.py").is_file()]
        gone = [
            n
            for n in sorted(names)
            if n not in words and not any(w.endswith("*") and n.startswith(w[:-1]) for w in words)
        ]
        if gone:
            missing[sub.name] = gone
    assert not missing, f"modules not in docs/architecture.md's diagram: {missing}"


def test_every_named_module_exists():
    wrong = []
    for name in sorted(set(re.findall(r"mfoml(?:\.[A-Za-z_0-9]+)+", DOC))):
        parts = name.split(".")[1:]
        path = ROOT
        for i, part in enumerate(parts):
            if (path / part).is_dir():
                path = path / part
                continue
            if (path / f"{part}.py").is_file():
                break  # a module; what follows is one of its names
            init = path / "__init__.py"
            if i == 0 or not (init.is_file() and re.search(rf"\b{part}\b", init.read_text())):
                wrong.append(name)  # neither a module nor a name its package exports
            break
    assert not wrong, f"docs/architecture.md names what does not exist: {wrong}"
