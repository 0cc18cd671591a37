# Run table, path helpers and per-rule settings shared by the rule files.

import ast
import functools
import os
from pathlib import Path

from mfoml.config import RUN_ID_PATTERN, canonical_json, dataset_options, rule_params
from mfoml.config import run_table

RUNS = {run.run_id: run for run in run_table(config)}
RUN_IDS = list(RUNS)
SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
MFOML = SCRIPTS / "mfoml"
# Training and activation jobs ask the scheduler for a GPU unless the device is the CPU; a local
# run without `--resources gpu=N` does not limit them, and device "auto" falls back to the CPU.
GPU = 0 if config["device"] == "cpu" else 1
FIG_EXT = config["figures"]["format"]


wildcard_constraints:
    run=RUN_ID_PATTERN,
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.+-]*",


@functools.cache
def _mfoml_imports(path):
    """Names of the mfoml modules imported (anywhere) by the Python file ``path`` (cached for
    the lifetime of this Snakemake process)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    in_package = Path(path).parent == MFOML
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "mfoml" and len(parts) > 1:
                    names.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            parts = mod.split(".") if mod else []
            if node.level == 0 and parts[:1] == ["mfoml"]:
                if len(parts) > 1:
                    names.add(parts[1])
                else:
                    names.update(alias.name for alias in node.names)
            elif node.level == 1 and in_package:
                if parts:
                    names.add(parts[0])
                else:
                    names.update(alias.name for alias in node.names)
    return {n for n in names if (MFOML / f"{n}.py").is_file()}


def module_files(names):
    """The files of the mfoml modules ``names`` and of everything they import (transitively)."""
    todo = list(names)
    seen = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_mfoml_imports(MFOML / f"{name}.py"))
    # relative to the working directory, so that a copied working directory stays up to date
    return sorted(os.path.relpath(MFOML / f"{name}.py") for name in seen)


def script_modules(script, skip=()):
    """The mfoml module files a rule script executes (transitively), as rule inputs.

    Snakemake tracks the script itself (code trigger) but not what it imports; listing the
    modules as inputs makes an edit of e.g. mfoml/ncc.py rerun exactly the jobs using it.
    Modules in ``skip`` (imported only on some code paths) are left out with their imports;
    the rule adds them for the jobs that execute them.
    """
    return module_files(sorted(_mfoml_imports(SCRIPTS / script) - set(skip)))


def run_of(wildcards):
    """The run-table row of ``wildcards.run`` (a clear error for an unknown id)."""
    try:
        return RUNS[wildcards.run]
    except KeyError:
        raise WorkflowError(
            f"run {wildcards.run!r} is not in the run table of this configuration"
        ) from None


def run_dir(run_id):
    return f"results/runs/{run_id}"


def checkpoints_dir(run_id):
    return f"results/runs/{run_id}/checkpoints"


def data_dir(dataset):
    return f"resources/data/{dataset}"


def folds_file(dataset):
    return f"results/folds/{dataset}.json"


def res(rule_name, key):
    """A resource setting of ``config['resources'][rule_name]``."""
    return config["resources"][rule_name][key]


TABLES = [
    "layers",
    "layers_summary",
    "epochs",
    "epochs_summary",
    "checkpoints",
    "checkpoints_summary",
    "confusion",
    "correlation_points",
    "correlation",
]
# tables that also appear in the report
REPORT_TABLES = ["correlation", "checkpoints_summary"]
FIGURES = [
    "alpha_layers",
    "ncc_layers",
    "collapse_layers",
    "accuracy_epochs",
    "confusion",
]
FIGURES += ["correlation"]


def final_targets():
    """Tables and figures of the deep-network track (none without runs)."""
    if not RUN_IDS:
        return []
    return [f"results/tables/{t}.csv" for t in TABLES] + [
        f"results/figures/{f}.{FIG_EXT}" for f in FIGURES
    ]


def train_inputs(wildcards):
    """Inputs of a training run (the transfer source's checkpoints when it has one)."""
    run = run_of(wildcards)
    inputs = {
        "data": data_dir(run.dataset),
        "folds": folds_file(run.dataset),
        "code": script_modules("train.py", skip=("losses",)),
    }
    if run.loss_spec.get("type") == "svsl":  # only SVSL runs execute mfoml.losses
        inputs["loss_code"] = module_files(["losses"])
    if run.transfer:
        inputs["source"] = checkpoints_dir(run.transfer["source_run"])
    return inputs


def activation_inputs(wildcards):
    """Inputs of an activation dump (the analysis data set may differ from the training one)."""
    run = run_of(wildcards)
    return {
        "checkpoints": checkpoints_dir(run.run_id),
        "data": data_dir(run.analysis_dataset),
        "code": script_modules("activations.py"),
    }
