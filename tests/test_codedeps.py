"""workflow/rules/codedeps.py: which mfoml modules a rule script executes, and a code version
that changes with what the code does, not with comments, docstrings or formatting."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from codedeps import CodeDeps, normalized_source

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"

CODE = '''"""Module docstring."""

import math


def area(r):
    """Area of a circle."""
    return math.pi * r**2  # the formula
'''


def test_normalized_source_ignores_comments_docstrings_and_formatting() -> None:
    base = normalized_source(CODE)
    same = [
        CODE.replace("# the formula", "# another comment"),
        CODE.replace('"""Area of a circle."""', '"""Area of a disc (docstring edited)."""'),
        CODE.replace('"""Module docstring."""\n', ""),
        CODE.replace("math.pi * r**2", "math.pi * r ** 2").replace("\n\n\n", "\n\n\n\n"),
        "# header comment\n" + CODE,
    ]
    for text in same:
        assert normalized_source(text) == base, text
    changed = [
        CODE.replace("r**2", "r**3"),
        CODE.replace("def area(r)", "def area(radius)").replace("* r", "* radius"),
        CODE + "\nTAU = 2 * math.pi\n",
        CODE.replace('    """Area of a circle."""\n', '    """Area."""\n    r = abs(r)\n'),
    ]
    for text in changed:
        assert normalized_source(text) != base, text


def test_rule_scripts_resolve_to_the_modules_they_execute() -> None:
    code = CodeDeps(SCRIPTS)
    ce_train = code.script_modules("train.py", skip=("mfoml.nets.losses",))
    svsl_train = code.script_modules("train.py", extra=("mfoml.nets.losses",))
    assert "mfoml.nets.training" in ce_train and "mfoml.data.store" in ce_train
    assert not any(m.startswith("mfoml.collapse") for m in ce_train)
    assert "mfoml.collapse.accumulators" in svsl_train  # SVSL uses the class means
    assert "mfoml.collapse.measures" not in svsl_train
    # the training jobs behind the thin scripts; the sharpness tracker (mfoml.dynamics.edge) and
    # the MLM stage's encoder only where common.smk's train_code keeps them
    plain = code.script_modules(
        "train.py",
        skip=(
            "mfoml.nets.losses",
            "mfoml.nets.pretrain",
            "mfoml.dynamics.edge",
            "mfoml.dynamics.sharpness",
        ),
    )
    assert {"mfoml.nets.supervised", "mfoml.nets.trainjob", "mfoml.nets.transfer"} <= set(plain)
    assert not any(m.startswith("mfoml.dynamics.") for m in plain)
    assert "mfoml.nets.transformer" not in plain
    sharp = code.script_modules("train.py", extra=("mfoml.dynamics.edge",))
    assert "mfoml.dynamics.sharpness" in sharp  # through the tracker
    ssl = code.script_modules("train_ssl.py")
    assert {"mfoml.nets.ssl_job", "mfoml.nets.trainjob"} <= set(ssl)
    assert "mfoml.nets.supervised" not in ssl and "mfoml.nets.transfer" not in ssl
    ncc = code.script_modules("ncc.py")
    assert {"mfoml.collapse.table", "mfoml.collapse.measures"} <= set(ncc)
    assert not any(m.startswith("mfoml.wavelets") for m in ncc)
    # `from mfoml import plots` then plots.plot_x(): the lazily exported modules count
    assert "mfoml.plots.pipeline" in code.script_modules("figures.py")
    # the tabular baselines never execute the wavelet forest
    assert not any(
        m.startswith("mfoml.wavelets") for m in code.script_modules("tabular_baselines.py")
    )
    assert "mfoml.wavelets.forest" in code.script_modules("tabular_noise.py")


def test_thin_scripts_resolve_to_their_modules() -> None:
    """The rule scripts that delegate to one mfoml module (issue 24) depend on it and on what it
    imports: the registry of per-layer measures reruns the tables that use it, and the probe
    still does not depend on the NCC code."""
    code = CodeDeps(SCRIPTS)
    probe = code.script_modules("probe.py")
    assert {"mfoml.nets.layer_probe", "mfoml.wavelets.probe", "mfoml.data.subsample"} <= set(probe)
    assert not any(m.startswith(("mfoml.collapse", "mfoml.analysis")) for m in probe)
    assert "mfoml.nets.layer_probe" in code.script_modules("ssl_eval.py")  # shared settings
    aggregate = code.script_modules("aggregate.py")
    assert {"mfoml.analysis.aggregate_tables", "mfoml.layer_measures"} <= set(aggregate)
    assert not any(m.startswith("mfoml.collapse") for m in aggregate)
    assert "mfoml.layer_measures" in code.script_modules("ncc.py")  # the geometry columns
    assert "mfoml.nets.dump_splits" in code.script_modules("activations.py")
    assert "mfoml.similarity.cka_summary" in code.script_modules("similarity_tables.py")


def test_code_version_follows_meaning(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    shutil.copytree(SCRIPTS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    before = CodeDeps(scripts)
    ncc_v, probe_v = before.code_version("ncc.py"), before.code_version("probe.py")
    measures = scripts / "mfoml" / "collapse" / "measures.py"
    measures.write_text(measures.read_text() + "\n# a comment\n")
    assert CodeDeps(scripts).code_version("ncc.py") == ncc_v
    measures.write_text(measures.read_text() + "\n_CHANGED = 1\n")
    after = CodeDeps(scripts)
    assert after.code_version("ncc.py") != ncc_v
    assert after.code_version("probe.py") == probe_v


RULE_SCRIPTS = sorted(p.name for p in SCRIPTS.glob("*.py"))


def test_warm_start_client_is_not_in_code_versions(tmp_path: Path) -> None:
    """Every rule script imports mfoml.warm (how the job runs, not what it computes): editing it
    changes no code version, so no job reruns."""
    scripts = tmp_path / "scripts"
    shutil.copytree(SCRIPTS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    code = CodeDeps(scripts)
    assert all("mfoml.warm" in code.imports(scripts / s) for s in RULE_SCRIPTS)
    before = {s: code.code_version(s) for s in RULE_SCRIPTS}
    warm = scripts / "mfoml" / "warm.py"
    warm.write_text(warm.read_text() + "\n_CHANGED = 1\n")
    assert {s: CodeDeps(scripts).code_version(s) for s in RULE_SCRIPTS} == before


def test_cached_facts_give_the_versions_of_a_fresh_parse(tmp_path: Path, monkeypatch) -> None:
    """The on-disk cache is keyed by content: filled, then hit (no parse at all), it gives the
    code versions of an uncached parse; the per-file hash is that of :func:`normalized_source`,
    so versions computed before the cache existed stay valid (nothing reruns)."""
    import codedeps

    cold = CodeDeps(SCRIPTS, cache=None)
    expected = {s: cold.code_version(s) for s in RULE_SCRIPTS}
    cache = tmp_path / "cache"
    assert {s: CodeDeps(SCRIPTS, cache=cache).code_version(s) for s in RULE_SCRIPTS} == expected
    n_files = len(list(cache.glob("*.json")))
    assert n_files > 50  # one entry per distinct file read
    probe = SCRIPTS / "mfoml" / "wavelets" / "probe.py"
    text = probe.read_text(encoding="utf-8")
    assert cold.source_hash(probe) == hashlib.sha256(normalized_source(text).encode()).hexdigest()

    def no_parse(*args, **kwargs):
        raise AssertionError("parsed although the cache holds the file")

    monkeypatch.setattr(codedeps, "file_facts", no_parse)
    assert {s: CodeDeps(SCRIPTS, cache=cache).code_version(s) for s in RULE_SCRIPTS} == expected
    assert len(list(cache.glob("*.json"))) == n_files


def test_damaged_or_unwritable_cache_is_ignored(tmp_path: Path, monkeypatch) -> None:
    cold = CodeDeps(SCRIPTS, cache=None).code_version("probe.py")
    cache = tmp_path / "cache"
    CodeDeps(SCRIPTS, cache=cache).code_version("probe.py")
    for entry in cache.glob("*.json"):
        entry.write_text('{"source_hash": ')  # truncated entry
    assert CodeDeps(SCRIPTS, cache=cache).code_version("probe.py") == cold
    assert all(json.loads(e.read_text())["source_hash"] for e in cache.glob("*.json"))
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    assert CodeDeps(SCRIPTS, cache=blocked / "cache").code_version("probe.py") == cold
    # where the cache lives: $MFOML_CODEDEPS_CACHE (empty: none), else under $XDG_CACHE_HOME
    monkeypatch.setenv("MFOML_CODEDEPS_CACHE", "")
    assert CodeDeps(SCRIPTS).cache is None
    monkeypatch.delenv("MFOML_CODEDEPS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert CodeDeps(SCRIPTS).cache == tmp_path / "xdg" / "mfoml" / "codedeps"
