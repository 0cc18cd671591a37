# One training run: checkpoints at the configured epochs plus metrics.csv, run.json and the
# training split (with the labels actually trained on) in results/runs/{run}/checkpoints.


rule train:
    input:
        unpack(train_inputs),
    output:
        directory("results/runs/{run}/checkpoints"),
    log:
        "logs/runs/{run}/train.log",
    benchmark:
        "results/benchmarks/{run}/train.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: res("train", "threads")
    resources:
        gpu=GPU,
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
    params:
        code=train_code,
        cfg=lambda wildcards: rule_params(config, "train", run_of(wildcards)),
    script:
        "../scripts/train.py"
