"""Share of a finished run's CPU time spent on job start-up, cold and warm (issue: performance).

For every rule script this measures, in one run, the CPU cost of a *no-op job* two ways:

- **cold** (``warm_start: false``): a fresh interpreter that loads the Snakemake script preamble
  (``snakemake.script``), imports exactly the modules the script imports at its top level plus
  those its default path imports on first use (:data:`CALL_TIME`), and exits;
- **warm** (the default for local runs, ``mfoml.warm``): the same no-op script run through a real
  warm-start server that has already preloaded those modules; its cost is the client process
  (interpreter, preamble, request, wait) plus the forked child's CPU (as the server reports it).

The run's jobs are read from the warm-start server's log (``logs/warm_start.log``: each job's
rule and CPU time, and the server's own CPU: its imports) when the run was warm, else from the
run's benchmark files (``results/benchmarks/**.tsv``, column ``cpu_time``). Start-up of a warm
run = jobs x warm no-op cost + the server's CPU + once per rule the first-use imports of
:data:`CALL_TIME` (paid by the rule's first job before the server has them); of a cold run =
jobs x cold no-op cost. The share divides by the run's total CPU time when ``--run-cpu`` gives it
(user + system of ``/usr/bin/time snakemake ...``, which includes every job and the server), else
by the sum over the jobs (which leaves out Snakemake's own process: an overestimate).

Usage (after ``snakemake --cores N`` in the repository root)::

    /usr/bin/time -f "%U %S" snakemake --cores 2      # note user + system
    python benchmarks/bench_startup.py --run-cpu 512
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"
sys.path.insert(0, str(SCRIPTS))

from mfoml.warm_server import start_server, top_level_imports  # noqa: E402

#: rule -> modules imported inside functions on the rule's default path (first use)
CALL_TIME = {
    "probe": ["mfoml.wavelets.fasttree", "mfoml.wavelets.cart_build"],
    "ssl_eval": ["mfoml.wavelets.fasttree", "mfoml.wavelets.cart_build", "sklearn.linear_model"],
    "train": ["torch._dynamo"],
    "train_ssl": ["torch._dynamo"],
    "pretrain": ["torch._dynamo"],
}
PREAMBLE = ["snakemake.script", "snakemake.logging", "snakemake.iocontainers"]
JOB_LINE = re.compile(r"job \d+ \(pid (\d+)\): rule (\S+) ")
END_LINE = re.compile(r"pid (\d+) ended with status -?\d+, ([\d.]+) CPU-s")
SERVER_LINE = re.compile(r"server CPU ([\d.]+) s")


def rule_modules(rule: str) -> list[str]:
    mods = top_level_imports(str(SCRIPTS / f"{rule}.py")) + CALL_TIME.get(rule, [])
    return [m for m in mods if m != "sys"]


def noop_script(modules: list[str], warm: bool) -> str:
    lines = ["import sys", "__real_file__ = __file__", f"sys.path.insert(0, {str(SCRIPTS)!r})"]
    lines += [f"import {m}" for m in PREAMBLE]
    if warm:
        lines += ["from mfoml.warm import delegate", "delegate(None)"]  # plain python: no job
    lines += [f"import {m}" for m in modules]
    return "\n".join(lines) + "\n"


def child_cpu(cmd: list[str], env: dict[str, str]) -> float:
    """CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cold_cost(path: Path, repeat: int) -> float:
    """Median CPU seconds of the no-op script run as its own process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("MFOML_WARM_SOCKET", None)
    return statistics.median(child_cpu([sys.executable, str(path)], env) for _ in range(repeat))


def last_job_cpu(log: Path) -> float:
    ends = END_LINE.findall(log.read_text())
    return float(ends[-1][1])


def warm_cost(path: Path, server, log: Path, repeat: int) -> float:
    """Median CPU seconds of client + forked child for the no-op script (after one warm-up)."""
    env = dict(os.environ, MFOML_WARM_SOCKET=server.socket_path, OMP_NUM_THREADS="1")
    child_cpu([sys.executable, str(path)], env)  # the server preloads the modules
    costs = []
    for _ in range(repeat):
        client = child_cpu([sys.executable, str(path)], env)
        costs.append(client + last_job_cpu(log))
    return statistics.median(costs)


def rule_of_benchmark(bench: Path, root: Path) -> str:
    """The rule script (without .py) of a benchmark file."""
    rel = bench.relative_to(root).parts
    if rel[0] == "tabular":
        return "tabular_" + Path(rel[-1]).stem
    if rel[0] == "pretrain":
        return "pretrain"
    return Path(rel[-1]).stem


def jobs_from_benchmarks(results: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    root = results / "benchmarks"
    for bench in sorted(root.rglob("*.tsv")):
        with bench.open() as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                out[rule_of_benchmark(bench, root)].append(float(row["cpu_time"]))
    return out


def jobs_from_server_log(log: Path) -> tuple[dict[str, list[float]], float]:
    """Per rule the CPU seconds of its jobs, and the server's own CPU seconds."""
    text = log.read_text()
    rule_of_pid = {pid: rule for pid, rule in JOB_LINE.findall(text)}
    out: dict[str, list[float]] = defaultdict(list)
    for pid, cpu in END_LINE.findall(text):
        if pid in rule_of_pid:
            out[rule_of_pid[pid]].append(float(cpu))
    server = SERVER_LINE.findall(text)
    return out, float(server[-1]) if server else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=REPO / "results")
    ap.add_argument("--logs", type=Path, default=REPO / "logs")
    ap.add_argument("--run-cpu", type=float, help="user + system CPU-s of the whole run")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    server_log = args.logs / "warm_start.log"
    warm_run = server_log.exists()
    if warm_run:
        jobs, server_cpu = jobs_from_server_log(server_log)
    else:
        jobs, server_cpu = jobs_from_benchmarks(args.results), 0.0
    if not jobs:
        sys.exit(f"no jobs found in {server_log} or {args.results / 'benchmarks'}: run first")

    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    log = tmp / "warm.log"
    server = start_server(str(SCRIPTS), str(log))
    if server is None:
        sys.exit("the warm-start server did not start (Linux only)")
    rows = []
    try:
        for script in sorted(SCRIPTS.glob("*.py")):
            rule = script.stem
            mods = rule_modules(rule)
            cold_path, warm_path = tmp / f"cold_{rule}.py", tmp / f"warm_{rule}.py"
            cold_path.write_text(noop_script(mods, warm=False))
            warm_path.write_text(noop_script(mods, warm=True))
            first_use = CALL_TIME.get(rule, [])
            base = tmp / f"base_{rule}.py"
            base.write_text(noop_script([m for m in mods if m not in first_use], warm=False))
            cold = cold_cost(cold_path, args.repeat)
            extra = cold - cold_cost(base, args.repeat) if first_use else 0.0
            warm = warm_cost(warm_path, server, log, args.repeat)
            rows.append((rule, jobs.get(rule, []), cold, warm, max(extra, 0.0)))
    finally:
        server.stop()

    print(f"run: {'warm start' if warm_run else 'cold (one interpreter per job)'}")
    print(f"{'rule':<24}{'jobs':>5}{'job CPU-s':>11}{'cold no-op':>12}{'warm no-op':>12}")
    total_jobs = total_cpu = cold_start = warm_start = 0.0
    for rule, times, cold, warm, extra in rows:
        print(f"{rule:<24}{len(times):>5}{sum(times):>11.1f}{cold:>12.2f}{warm:>12.2f}")
        total_jobs += len(times)
        total_cpu += sum(times)
        cold_start += len(times) * cold
        if times:
            warm_start += len(times) * warm + extra
    warm_start += server_cpu
    denominator = args.run_cpu or total_cpu + (server_cpu if warm_run else 0.0)
    label = "the run's CPU time" if args.run_cpu else "the jobs' CPU time (Snakemake excluded)"
    print(
        f"{int(total_jobs)} jobs, {total_cpu:.1f} CPU-s in the jobs, server {server_cpu:.1f} CPU-s"
    )
    if warm_run:
        print(
            f"start-up of this warm run: {warm_start:.1f} CPU-s = {warm_start / denominator:.1%} of {label}"
        )
        print(f"the same jobs started cold would pay {cold_start:.1f} CPU-s of start-up")
    else:
        print(
            f"start-up of this cold run: {cold_start:.1f} CPU-s = {cold_start / denominator:.1%} of {label}"
        )
        print(f"the same jobs started warm would pay {warm_start:.1f} CPU-s (server not counted)")
    print(f"cold / warm start-up ratio: {cold_start / max(warm_start, 1e-9):.1f}x")


if __name__ == "__main__":
    main()
