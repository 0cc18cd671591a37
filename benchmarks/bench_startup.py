"""Share of a finished run's CPU time spent on job start-up (issue: performance).

Reads the run's own benchmark files (``results/benchmarks/**.tsv``, Snakemake's ``benchmark:``
output, column ``cpu_time``) and measures, for every rule script, the CPU cost of a *no-op job*:
a fresh interpreter that imports exactly the modules the script imports at its top level, plus
the Snakemake script preamble (``snakemake.script``), and exits. The start-up share of a rule is
``jobs x no-op cost / sum of the jobs' CPU time``; the total is over every benchmarked job.

Usage (after ``snakemake --cores N`` in the repository root)::

    python benchmarks/bench_startup.py            # this checkout's results/
    python benchmarks/bench_startup.py --results path/to/results --repeat 5

Modules a job loads later on its default path count as start-up too (:data:`CALL_TIME`): the
probe imports the fast builder (numba) at its first fit, the SSL evaluation also scikit-learn's
logistic regression, and ``torch.optim`` imports
``torch._dynamo`` on its first ``add_param_group``.

Rules without a ``benchmark:`` directive (data, folds, aggregate, figures, tabular tables and
figures: one job per data set or one in all) are listed with their no-op cost only.
"""

from __future__ import annotations

import argparse
import ast
import csv
import os
import resource
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"


#: rule -> modules imported inside functions on the rule's default path (first use)
CALL_TIME = {
    "probe": ["mfoml.wavelets.fasttree", "mfoml.wavelets.cart_build"],
    "ssl_eval": ["mfoml.wavelets.fasttree", "mfoml.wavelets.cart_build", "sklearn.linear_model"],
    "train": ["torch._dynamo"],
    "train_ssl": ["torch._dynamo"],
    "pretrain": ["torch._dynamo"],
}


def top_level_imports(script: Path) -> list[str]:
    """Modules imported at the top level of a rule script."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    mods: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            mods += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.append(node.module)
    return [m for m in mods if m != "sys"]


def child_cpu(cmd: list[str], env: dict[str, str]) -> float:
    """CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def noop_cost(modules: list[str], repeat: int) -> float:
    """Median CPU seconds of a fresh interpreter importing ``modules``."""
    env = dict(os.environ, PYTHONPATH=str(SCRIPTS))
    mods = ["snakemake.script", *modules]
    code = f"import importlib\nfor m in {mods!r}:\n    importlib.import_module(m)\n"
    return statistics.median(child_cpu([sys.executable, "-c", code], env) for _ in range(repeat))


def rule_of(bench: Path, root: Path) -> str:
    """The rule script (without .py) of a benchmark file."""
    rel = bench.relative_to(root).parts
    if rel[0] == "tabular":
        return "tabular_" + Path(rel[-1]).stem
    if rel[0] == "pretrain":
        return "pretrain"
    return Path(rel[-1]).stem


def job_cpu_times(results: Path) -> dict[str, list[float]]:
    root = results / "benchmarks"
    out: dict[str, list[float]] = defaultdict(list)
    for bench in sorted(root.rglob("*.tsv")):
        with bench.open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        for row in rows:
            out[rule_of(bench, root)].append(float(row["cpu_time"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=REPO / "results")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    jobs = job_cpu_times(args.results)
    if not jobs:
        sys.exit(f"no benchmark files under {args.results / 'benchmarks'}: run the workflow first")
    bare = noop_cost([], args.repeat)
    print(f"bare interpreter + snakemake.script: {bare:.2f} CPU-s")
    print(f"{'rule':<22}{'jobs':>6}{'job CPU-s':>12}{'no-op CPU-s':>13}{'start-up share':>16}")
    total_cpu = total_start = 0.0
    for script in sorted(SCRIPTS.glob("*.py")):
        rule = script.stem
        cost = noop_cost(top_level_imports(script) + CALL_TIME.get(rule, []), args.repeat)
        times = jobs.get(rule, [])
        cpu = sum(times)
        share = f"{len(times) * cost / cpu:15.1%}" if cpu > 0 else f"{'(no benchmark)':>15}"
        print(f"{rule:<22}{len(times):>6}{cpu:>12.1f}{cost:>13.2f} {share}")
        total_cpu += cpu
        total_start += len(times) * cost
    print(
        f"{'all benchmarked jobs':<22}{sum(map(len, jobs.values())):>6}{total_cpu:>12.1f}"
        f"{'':>13} {total_start / total_cpu:15.1%}"
    )


if __name__ == "__main__":
    main()
