# Run table, path helpers and per-rule settings shared by the rule files.

import re
from pathlib import Path

from codedeps import CodeDeps
from mfoml.config import RUN_ID_PATTERN, canonical_json, dataset_options, rule_params
from mfoml.config import run_table

RUNS = {run.run_id: run for run in run_table(config)}
# the supervised runs; self-supervised ones (ssl.smk) have their own rules and tables
RUN_IDS = [rid for rid, run in RUNS.items() if not run.is_ssl]
SSL_RUN_IDS = [rid for rid, run in RUNS.items() if run.is_ssl]
SSL_SWEEPS = sorted({RUNS[rid].sweep for rid in SSL_RUN_IDS})
# wildcard constraint of the self-supervised rules: exactly these run ids (none: never matches)
SSL_RUN_REGEX = "|".join(re.escape(rid) for rid in SSL_RUN_IDS) or "(?!)"
# mfoml.nets.checkpoints imports the SSL encoder only for SSL checkpoints (function level)
SSL_MODEL = ("mfoml.nets.ssl_model",)
SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
CODE = CodeDeps(SCRIPTS)
# Training and activation jobs ask the scheduler for a GPU unless the device is the CPU; a local
# run without `--resources gpu=N` does not limit them, and device "auto" falls back to the CPU.
GPU = 0 if config["device"] == "cpu" else 1
FIG_EXT = config["figures"]["format"]


wildcard_constraints:
    run=RUN_ID_PATTERN,
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.+-]*",


def module_files(names):
    """The files of the mfoml modules ``names`` (dotted) and of everything they import."""
    return CODE.files(CODE.closure(names))


def script_modules(script, skip=()):
    """The mfoml module files a rule script executes (transitively), as rule inputs.

    Snakemake tracks the script itself (code trigger) but not what it imports; listing the
    modules as inputs makes an edit of e.g. mfoml/collapse/measures.py rerun exactly the jobs
    using it. Modules in ``skip`` (dotted names, imported only on some code paths) are left out
    with their imports; the rule adds them for the jobs that execute them.
    """
    return CODE.files(CODE.script_modules(script, skip))


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


def ssl_targets():
    """Tables and figures of the self-supervised runs (none without such runs)."""
    if not SSL_RUN_IDS:
        return []
    tables = [
        f"results/tables/ssl_{t}.csv" for t in ("layers", "layers_summary", "epochs")
    ]
    return tables + [f"results/figures/ssl_{s}.{FIG_EXT}" for s in SSL_SWEEPS]


def train_inputs(wildcards):
    """Inputs of a training run (the transfer source's checkpoints when it has one)."""
    run = run_of(wildcards)
    inputs = {
        "data": data_dir(run.dataset),
        "folds": folds_file(run.dataset),
        "code": script_modules("train.py", skip=("mfoml.nets.losses", *SSL_MODEL)),
    }
    if run.loss_spec.get("type") == "svsl":  # only SVSL runs execute mfoml.nets.losses
        inputs["loss_code"] = module_files(["mfoml.nets.losses"])
    if run.transfer:
        inputs["source"] = checkpoints_dir(run.transfer["source_run"])
    return inputs


def activation_inputs(wildcards):
    """Inputs of an activation dump (the analysis data set may differ from the training one)."""
    run = run_of(wildcards)
    inputs = {
        "checkpoints": checkpoints_dir(run.run_id),
        "data": data_dir(run.analysis_dataset),
        "code": script_modules("activations.py", skip=SSL_MODEL),
    }
    if run.is_ssl:  # loading an SSL checkpoint executes the SSL encoder's modules
        inputs["ssl_code"] = module_files(list(SSL_MODEL))
    return inputs
