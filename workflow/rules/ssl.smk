# Self-supervised runs (losses of type simclr, vicreg, barlow, byol; config/schema/ssl.schema.yaml):
# training without labels (train_ssl, instead of train), the usual activation dumps, per-layer
# evaluation per label set (ssl_eval), tables over folds (ssl_aggregate) and one figure per
# experiment (ssl_figures). Supervised runs never reach these rules.


ruleorder: train_ssl > train


rule train_ssl:
    input:
        unpack(train_ssl_inputs),
    output:
        directory("results/runs/{run}/checkpoints"),
    log:
        "logs/runs/{run}/train.log",
    benchmark:
        "results/benchmarks/{run}/train.tsv"
    wildcard_constraints:
        run=SSL_RUN_REGEX,
    conda:
        "../../envs/mfoml.yaml"
    threads: res("train", "threads")
    resources:
        gpu=GPU,
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
    params:
        code=code_version("train_ssl.py"),
        cfg=lambda wildcards: rule_params(config, "train", run_of(wildcards)),
    script:
        "../scripts/train_ssl.py"


rule ssl_eval:
    input:
        activations="results/runs/{run}/activations",
    output:
        "results/runs/{run}/ssl_eval.csv",
    log:
        "logs/runs/{run}/ssl_eval.log",
    benchmark:
        "results/benchmarks/{run}/ssl_eval.tsv"
    wildcard_constraints:
        run=SSL_RUN_REGEX,
    conda:
        "../../envs/mfoml.yaml"
    threads: res("ssl_eval", "threads")
    resources:
        mem_mb=res("ssl_eval", "mem_mb"),
        runtime=res("ssl_eval", "runtime"),
    params:
        code=code_version("ssl_eval.py"),
        cfg=rule_params(config, "ssl_eval"),
    script:
        "../scripts/ssl_eval.py"


rule ssl_aggregate:
    input:
        evals=expand("results/runs/{run}/ssl_eval.csv", run=SSL_RUN_IDS),
        checkpoints=expand("results/runs/{run}/checkpoints", run=SSL_RUN_IDS),
    output:
        layers="results/tables/ssl_layers.csv",
        summary="results/tables/ssl_layers_summary.csv",  # in the report as HTML (ssl_figures)
        epochs="results/tables/ssl_epochs.csv",
    log:
        "logs/ssl_aggregate.log",
    localrule: True
    conda:
        "../../envs/mfoml.yaml"
    params:
        code=code_version("ssl_aggregate.py"),
        cfg=rule_params(config, "ssl_aggregate"),
    script:
        "../scripts/ssl_aggregate.py"


rule ssl_figures:
    input:
        summary="results/tables/ssl_layers_summary.csv",
    output:
        [
            report(
                f"results/figures/ssl_{sweep}.{FIG_EXT}",
                caption="../report/ssl_layers.rst",
                category="Self-supervised",
            )
            for sweep in SSL_SWEEPS
        ],
        table=report(
            "results/tables/html/ssl_layers_summary.html",
            caption="../report/table_ssl_layers.rst",
            category="Self-supervised",
        ),
    log:
        "logs/ssl_figures.log",
    localrule: True
    conda:
        "../../envs/mfoml.yaml"
    params:
        code=code_version("ssl_figures.py"),
        cfg=rule_params(config, "figures"),
        experiments=SSL_SWEEPS,
    script:
        "../scripts/ssl_figures.py"
