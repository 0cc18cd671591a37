# Tidy tables over all runs, summaries over folds (mean, std, n) and the Spearman correlation
# between training-data layer dynamics and test accuracy.


rule aggregate:
    input:
        checkpoints=expand("results/runs/{run}/checkpoints", run=RUN_IDS),
        activations=expand("results/runs/{run}/activations", run=RUN_IDS),
        probe=expand("results/runs/{run}/probe.csv", run=RUN_IDS),
        ncc=expand("results/runs/{run}/ncc.csv", run=RUN_IDS),
    output:
        **{t: f"results/tables/{t}.csv" for t in TABLES if t not in REPORT_TABLES},
        correlation=report(
            "results/tables/correlation.csv",
            caption="../report/table_correlation.rst",
            category="Tables",
        ),
        checkpoints_summary=report(
            "results/tables/checkpoints_summary.csv",
            caption="../report/table_checkpoints.rst",
            category="Tables",
        ),
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
