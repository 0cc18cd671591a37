# Run table, path helpers and per-rule settings shared by the rule files.

import importlib.util
import re
from pathlib import Path

from codedeps import CodeDeps
from mfoml.config import RUN_ID_PATTERN, canonical_json, dataset_options, rule_params
from mfoml.config import run_table
from mfoml.config.text import TEXT_ARCHS, TEXT_SOURCES, pretrain_params, source_of
from mfoml.nets.registry import ARCHS, arch_info, builder_modules
from mfoml.data.files import source_files

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
    stage=r"[A-Za-z0-9][A-Za-z0-9_.+-]*",


def code_version(script, skip=(), extra=()):
    """Version of the code a job of rule script ``script`` executes, as a ``params`` entry.

    A hash of the normalized syntax trees of the script and of the mfoml modules it imports
    (transitively; workflow/rules/codedeps.py): a job reruns when that code changes in meaning,
    never for a touch, a checkout, or a comment, docstring or formatting edit (the profile's
    rerun-triggers leave out Snakemake's mtime-based `code` trigger for scripts). ``skip``:
    dotted module names imported only on code paths the job does not take (left out with what
    only they import); ``extra``: such modules that the job does execute.
    """
    return CODE.code_version(script, skip, extra)


# Modules only text runs and text data sets execute: the other jobs do not depend on them.
TEXT_NET_MODULES = ("mfoml.nets.transformer", "mfoml.nets.hf")
TEXT_DATA_MODULES = ("mfoml.data.textsets", "mfoml.data.textfile")
# Builder modules of the architecture registry (imported by name when a model is built): a run's
# code version holds its own architecture's builder, never another's.
ARCH_MODULES = tuple(m for m in builder_modules() if m != "mfoml.nets.models")


def is_text_run(run):
    return run.model_spec.get("arch") in TEXT_ARCHS


def arch_module(run):
    """The builder module of ``run``'s architecture (a one-tuple; empty for an unknown arch)."""
    arch = run.model_spec.get("arch")
    return (arch_info(arch).module,) if arch in ARCHS else ()


def run_code(script, run, skip=(), extra=()):
    """Code version of ``script`` for ``run`` (its architecture's builder module, not the
    others'; the SSL encoder's modules for self-supervised runs only, ``extra`` for the runs
    taking that path).
    """
    extra = tuple(extra) + arch_module(run)
    skip = tuple(skip) + (() if run.is_ssl else SSL_MODEL) + ARCH_MODULES
    return code_version(script, tuple(m for m in skip if m not in extra), extra)


def factory_version(spec):
    """Version of an ``arch: module`` model's factory file (its normalized syntax tree: an edit
    of what it does changes it, a touch or a comment does not); "" for other models."""
    if spec.get("arch") != "module":
        return ""
    target = str(spec["factory"]).rpartition(":")[0]
    if target.endswith(".py"):
        path = Path(target)
    else:
        found = importlib.util.find_spec(target)
        path = Path(found.origin) if found is not None and found.origin else None
    if path is None or not path.is_file():
        raise WorkflowError(f"models: factory {spec['factory']!r}: {target} not found")
    return f"-factory-{CODE.source_hash(path.resolve())[:16]}"


def data_code(wildcards):
    """Code version of a data job (the text modules for text sources only)."""
    text = source_of(config, wildcards.dataset) in TEXT_SOURCES
    return code_version("data.py", () if text else TEXT_DATA_MODULES)


def data_inputs(wildcards):
    """Inputs of a data set: for a text set taking its tokenizer from another set, that set;
    for a file source (imagefolder, table, textfile, arrays) its file or every image of its
    folder, so that a changed file reruns the data job and what depends on it."""
    inputs = {}
    variant = config["data"]["variants"].get(wildcards.dataset) or {}
    other = (variant.get("text") or {}).get("tokenizer_from")
    if other:
        inputs["tokenizer_source"] = data_dir(other)
    files = source_files(variant.get("source", ""), variant.get("path"))
    if files:
        inputs["source_files"] = files
    return inputs


def pretrain_dir(stage):
    return f"results/pretrain/{stage}/checkpoints"


def pretrain_targets():
    """The checkpoints of every MLM pretraining stage (also when no sweep uses it)."""
    return [pretrain_dir(name) for name in config.get("pretrain", {})]


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
    "dynamics",
    "dynamics_correlation",
    "phases",
    "phases_pivot",
    "noise_alpha",
    "confused_pairs",
]
# tables that also appear in the report (caption workflow/report/table_{name}.rst)
REPORT_TABLES = [
    "correlation",
    "dynamics_correlation",
    "checkpoints_summary",
    "phases_pivot",
    "noise_alpha",
    "confused_pairs",
]
FIGURES = [
    "alpha_layers",
    "ncc_layers",
    "collapse_layers",
    "accuracy_epochs",
    "confusion",
]
FIGURES += ["correlation", "noise_alpha"]


def final_targets():
    """Tables, their report pages and figures of the deep-network track (none without runs)."""
    if not RUN_IDS:
        return []
    return (
        [f"results/tables/{t}.csv" for t in TABLES]
        + [f"results/tables/html/{t}.html" for t in REPORT_TABLES]
        + [f"results/figures/{f}.{FIG_EXT}" for f in FIGURES]
    )


def train_ssl_inputs(wildcards):
    """Inputs of a self-supervised run (no fold assignment for a ``full`` run)."""
    run = run_of(wildcards)
    inputs = {"data": data_dir(run.dataset)}
    if not run.full_train:
        inputs["folds"] = folds_file(run.dataset)
    return inputs


def ssl_targets():
    """Tables and figures of the self-supervised runs (none without such runs)."""
    if not SSL_RUN_IDS:
        return []
    tables = [
        f"results/tables/ssl_{t}.csv" for t in ("layers", "layers_summary", "epochs")
    ]
    pages = ["results/tables/html/ssl_layers_summary.html"]  # its report page
    return tables + pages + [f"results/figures/ssl_{s}.{FIG_EXT}" for s in SSL_SWEEPS]


def train_inputs(wildcards):
    """Inputs of a training run (the transfer source's checkpoints when it has one)."""
    run = run_of(wildcards)
    inputs = {
        "data": data_dir(run.dataset),
    }
    if not run.full_train:  # a run on the whole training split needs no fold assignment
        inputs["folds"] = folds_file(run.dataset)
    if run.transfer:
        inputs["source"] = checkpoints_dir(run.transfer["source_run"])
    if run.pretrained:  # only these runs execute mfoml.nets.pretrain
        inputs["pretrained"] = pretrain_dir(run.pretrained["stage"])
    weights = run.model_spec.get("weights")
    if weights and str(weights).lower().endswith((".pt", ".pth", ".safetensors")):
        inputs["weights"] = weights  # a local weights file: a new file retrains
    return inputs


def train_code(wildcards):
    """Code version of a training job: the modules of optional paths count only for the runs
    taking them (SVSL: mfoml.nets.losses and through it the class means of mfoml.collapse;
    sharpness: mfoml.dynamics.edge and mfoml.dynamics.sharpness; pretrained:
    mfoml.nets.pretrain). mfoml.tracking (optional W&B logging) never changes a result and is
    never part of it."""
    run = run_of(wildcards)
    extra = []
    if run.loss_spec.get("type") == "svsl":
        extra.append("mfoml.nets.losses")
    if run.train.get("sharpness_every"):
        extra += ["mfoml.dynamics.edge", "mfoml.dynamics.sharpness"]
    if run.pretrained:
        extra.append("mfoml.nets.pretrain")
    optional = (
        "mfoml.nets.losses",
        "mfoml.nets.pretrain",
        "mfoml.dynamics.edge",
        "mfoml.dynamics.sharpness",
        "mfoml.tracking",
    )
    code = run_code("train.py", run, skip=optional, extra=tuple(extra))
    return f"{code}{factory_version(run.model_spec)}"


def activation_code(wildcards):
    """Code version of an activation dump of ``wildcards.run``."""
    return run_code("activations.py", run_of(wildcards))


def dump_output(path):
    """The dump directory ``path`` as an output: ``temp()`` unless ``activations.keep``
    (Snakemake then deletes it once every consumer in the DAG ran, and rebuilds it from the
    checkpoints when a later rerun needs it)."""
    out = directory(path)
    return out if config["activations"]["keep"] else temp(out)


def activation_inputs(wildcards):
    """Inputs of an activation dump (the run's data set, and its analysis data set if other)."""
    run = run_of(wildcards)
    inputs = {
        "checkpoints": checkpoints_dir(run.run_id),
        "data": data_dir(run.dataset),
    }
    if run.analysis_dataset != run.dataset:
        inputs["analysis_data"] = data_dir(run.analysis_dataset)
    return inputs
