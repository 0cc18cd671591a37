"""A rule and its script share a name (issue 24): rule ``x`` runs ``workflow/scripts/x.py``, so
that a log, a benchmark or a traceback names one thing, and every script has its rule.

Reads the rule files as text (no Snakemake import, milliseconds).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
SCRIPTS = REPO / "workflow" / "scripts"
HEADER = re.compile(r"^[ \t]*(?:rule|checkpoint)[ \t]+(\w+)[ \t]*:", re.MULTILINE)
SCRIPT = re.compile(r"^[ \t]*script:\s*[\"']([^\"']+)[\"']", re.MULTILINE)


def rule_scripts(text: str) -> dict[str, str | None]:
    """``{rule name: its script: path as written, or None}`` of one Snakefile's text."""
    heads = list(HEADER.finditer(text))
    out: dict[str, str | None] = {}
    for i, head in enumerate(heads):
        block = text[head.end() : heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        script = SCRIPT.search(block)
        out[head.group(1)] = script.group(1) if script else None
    return out


def test_the_parser_reads_rules_and_their_scripts():
    text = (
        "rule a:\n    output:\n        'x'\n    script:\n        '../scripts/a.py'\n\n\n"
        'if X:\n\n    rule b:\n        script:\n            "../scripts/c.py"\n\n\n'
        "checkpoint d:\n    shell:\n        'true'\n"
    )
    assert rule_scripts(text) == {"a": "../scripts/a.py", "b": "../scripts/c.py", "d": None}


def test_every_rule_script_is_named_after_its_rule():
    scripts: dict[str, Path] = {}
    for path in RULE_FILES:
        for rule, script in rule_scripts(path.read_text(encoding="utf-8")).items():
            if script is not None:
                assert rule not in scripts, f"rule {rule} is defined twice"
                scripts[rule] = (path.parent / script).resolve()
    assert len(scripts) > 20  # the parser found the workflow's rules
    wrong = {rule: p.name for rule, p in scripts.items() if p.stem != rule}
    assert not wrong, f"rules whose script has another name (rule: script): {wrong}"
    missing = sorted(rule for rule, p in scripts.items() if not p.is_file())
    assert not missing, f"rules whose script does not exist: {missing}"
    orphans = sorted(p.name for p in SCRIPTS.glob("*.py") if p.stem not in scripts)
    assert not orphans, f"scripts in workflow/scripts that no rule runs: {orphans}"
