"""mfoml pipeline: data -> folds -> train -> activations -> probe, ncc -> aggregate -> figures;
self-supervised runs: train_ssl -> activations -> ssl_eval -> ssl_aggregate -> ssl_figures.

Run `snakemake --cores all` (default config/config.yaml) or
`snakemake --cores all --configfile config/experiments/<study>.yaml`; see docs/pipeline.md.
"""

import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")

# OpenMP threads sleep at once when they wait instead of spinning (libgomp's default spins at
# every barrier): with torch.set_num_threads(N) beside another busy process, spinning threads
# hold the cores that the others need and a training epoch took up to 35x longer (issue 27,
# benchmarks/bench_train.py). Read when libgomp loads, so set here, before any job or the
# warm-start server imports torch: both inherit this environment. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The numeric core of this checkout (also when an installed copy exists elsewhere), and the
# workflow's own planning modules (workflow/rules/*.py).
sys.path.insert(0, os.path.join(workflow.basedir, "workflow", "scripts"))
sys.path.insert(0, os.path.join(workflow.basedir, "workflow", "rules"))

from mfoml.config import ConfigError, check_work, check_yaml_file, validate_config

# A --configfile given on the command line replaces the embedded default instead of being
# merged into it, so that every experiment file is complete on its own (schema defaults fill
# the omitted keys).
if not workflow.overwrite_configfiles:
    workflow.configfile(os.path.join(workflow.basedir, "config", "config.yaml"))

try:
    # Snakemake's YAML loading keeps the last of two equal keys: re-read the files strictly.
    for configfile_path in workflow.configfiles:
        check_yaml_file(configfile_path)
    validate_config(config)
    check_work(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/folds.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/activations.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/ncc.smk"
include: "workflow/rules/similarity_common.smk"
include: "workflow/rules/similarity.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/tabular.smk"
include: "workflow/rules/dynamics_common.smk"
include: "workflow/rules/dynamics.smk"
include: "workflow/rules/ssl.smk"
include: "workflow/rules/warm.smk"


rule all:
    default_target: True
    input:
        final_targets(),
        ssl_targets(),
        tabular_targets(),
        pretrain_targets(),
        dynamics_targets(),
        similarity_targets(),
