"""The conda environments in envs/ pin exactly the dependencies of pyproject.toml.

Users running ``snakemake --software-deployment-method conda`` get envs/*.yaml; everybody else
gets pyproject.toml. These tests keep the two from drifting apart, and check that every
``conda:`` directive of the workflow names an existing environment file.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;,]+)\s*$")


def normalize(name: str) -> str:
    """PEP 503 normalized project name (``Scikit_Learn`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(requirements: list[str], where: str) -> dict[str, str]:
    """Map normalized package name -> pinned version; fail on anything but ``name==version``."""
    pins: dict[str, str] = {}
    for req in requirements:
        m = REQUIREMENT.match(req)
        assert m, f"{where}: {req!r} is not an exact pin of the form name==version"
        name = normalize(m.group(1))
        assert name not in pins, f"{where}: {name} is listed twice"
        pins[name] = m.group(2)
    return pins


def pyproject_pins() -> dict[str, str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return parse_pins(data["project"]["dependencies"], "pyproject.toml [project] dependencies")


def env_pins(path: Path) -> tuple[dict[str, str], list[str]]:
    """The pip pins of a conda environment file, and its conda (non-pip) dependencies."""
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict) and "dependencies" in env, f"{path.name}: no dependencies list"
    pip_reqs: list[str] = []
    conda_deps: list[str] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"{path.name}: unexpected mapping {dep!r}"
            pip_reqs.extend(dep["pip"])
        else:
            conda_deps.append(str(dep))
    return parse_pins(pip_reqs, f"envs/{path.name} pip section"), conda_deps


def test_there_is_an_environment() -> None:
    assert ENV_FILES, "envs/ holds no *.yaml conda environment"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_match_pyproject(path: Path) -> None:
    expected = pyproject_pins()
    pins, _ = env_pins(path)
    missing = sorted(set(expected) - set(pins))
    extra = sorted(set(pins) - set(expected))
    assert not missing, f"envs/{path.name} lacks pyproject dependencies {missing}"
    assert not extra, f"envs/{path.name} has packages not in pyproject dependencies: {extra}"
    wrong = {n: (pins[n], expected[n]) for n in expected if pins[n] != expected[n]}
    assert not wrong, f"envs/{path.name} pins differ from pyproject (env, pyproject): {wrong}"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_python_and_channels(path: Path) -> None:
    """Python itself comes from conda, in the version range pyproject requires; nothing else."""
    env = yaml.safe_load(path.read_text())
    _, conda_deps = env_pins(path)
    names = {re.split(r"[=<>! ]", d, maxsplit=1)[0] for d in conda_deps}
    assert names == {"python", "pip"}, (
        f"envs/{path.name}: conda dependencies other than python and pip {sorted(names)}; "
        "add packages to pyproject.toml and the pip section instead"
    )
    python = next(d for d in conda_deps if d.startswith("python"))
    m = re.fullmatch(r"python\s*=+\s*(\d+)\.(\d+)(?:\.\*)?", python)
    assert m, f"envs/{path.name}: python must be pinned to a minor version, got {python!r}"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    low = re.fullmatch(r">=\s*(\d+)\.(\d+)", requires)
    assert low, f"unexpected requires-python {requires!r}"
    assert (int(m.group(1)), int(m.group(2))) >= (int(low.group(1)), int(low.group(2)))
    assert env.get("channels") and "defaults" not in env["channels"], (
        f"envs/{path.name}: list channels explicitly (conda-forge), not the 'defaults' channel"
    )


def conda_directives() -> list[tuple[Path, str]]:
    """(rule file, environment path as written) for every ``conda:`` directive."""
    files = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    pattern = re.compile(r"^\s+conda:\s*(?:\n\s+)?[\"']([^\"']+)[\"']", re.MULTILINE)
    found = []
    for f in files:
        if f.exists():
            found.extend((f, m.group(1)) for m in pattern.finditer(f.read_text()))
    return found


def test_conda_directives_name_existing_envs() -> None:
    directives = conda_directives()
    assert directives, "no rule declares a conda: environment (see envs/ and docs/cluster.md)"
    env_files = {p.resolve() for p in ENV_FILES}
    for rule_file, rel in directives:
        # Snakemake resolves conda: paths relative to the file that contains the directive.
        target = (rule_file.parent / rel).resolve()
        assert target in env_files, (
            f"{rule_file.relative_to(REPO)}: conda: {rel!r} -> {target} is not one of envs/*.yaml"
        )
