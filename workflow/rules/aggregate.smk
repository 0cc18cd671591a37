# Tidy tables over all runs, summaries over folds (mean, std, n), the run-level correlations of
# training-data layer dynamics with test accuracy, and the study tables (phases, label noise,
# most-confused classes).


rule aggregate:
    input:
        checkpoints=expand("results/runs/{run}/checkpoints", run=RUN_IDS),
        activations=expand("results/runs/{run}/activations", run=RUN_IDS),
        probe=expand("results/runs/{run}/probe.csv", run=RUN_IDS),
        ncc=expand("results/runs/{run}/ncc.csv", run=RUN_IDS),
        # TwoNN intrinsic dimension per layer (similarity.smk; none when intrinsic_dim is off)
        intrinsic_dim=intrinsic_dim_files(),
    output:
        # REPORT_TABLES reach the report as HTML pages written by the figures rule
        **{t: f"results/tables/{t}.csv" for t in TABLES},
    log:
        "logs/aggregate.log",
    localrule: True
    conda:
        "../../envs/mfoml.yaml"
    params:
        code=code_version("aggregate.py"),
        cfg=rule_params(config, "aggregate"),
    script:
        "../scripts/aggregate.py"
