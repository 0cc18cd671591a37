# Run table, path helpers and per-rule settings shared by the rule files.

from pathlib import Path

from codedeps import CodeDeps
from mfoml.config import RUN_ID_PATTERN, canonical_json, dataset_options, rule_params
from mfoml.config import run_table

RUNS = {run.run_id: run for run in run_table(config)}
RUN_IDS = list(RUNS)
SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
CODE = CodeDeps(SCRIPTS)
# Training and activation jobs ask the scheduler for a GPU unless the device is the CPU; a local
# run without `--resources gpu=N` does not limit them, and device "auto" falls back to the CPU.
GPU = 0 if config["device"] == "cpu" else 1
FIG_EXT = config["figures"]["format"]


wildcard_constraints:
    run=RUN_ID_PATTERN,
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.+-]*",


def code_version(script, skip=(), extra=()):
    """Version of the code a job of rule script ``script`` executes, as a ``params`` entry.

    A hash of the normalized syntax trees of the script and of the mfoml modules it imports
    (transitively; workflow/rules/codedeps.py): a job reruns when that code changes in meaning,
    never for a touch, a checkout, or a comment, docstring or formatting edit (the profile's
    rerun-triggers leave out Snakemake's mtime-based `code` trigger for scripts). ``skip`` /
    ``extra``: dotted module names imported only on some code paths (see train_code).
    """
    return CODE.code_version(script, skip, extra)


def train_code(wildcards):
    """Code version of a training job: only SVSL runs execute mfoml.nets.losses (and, through
    it, the class means of mfoml.collapse); the other runs never retrain for that code.
    """
    if run_of(wildcards).loss_spec.get("type") == "svsl":
        return code_version("train.py", extra=("mfoml.nets.losses",))
    return code_version("train.py", skip=("mfoml.nets.losses",))


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
    }
    if run.transfer:
        inputs["source"] = checkpoints_dir(run.transfer["source_run"])
    return inputs


def activation_inputs(wildcards):
    """Inputs of an activation dump (the analysis data set may differ from the training one)."""
    run = run_of(wildcards)
    return {
        "checkpoints": checkpoints_dir(run.run_id),
        "data": data_dir(run.analysis_dataset),
    }
