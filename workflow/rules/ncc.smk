# NCC mismatch/accuracy (train and test) and neural-collapse metrics NC1-NC4 per layer and
# checkpoint.


rule ncc:
    input:
        activations="results/runs/{run}/activations",
    output:
        "results/runs/{run}/ncc.csv",
    log:
        "logs/runs/{run}/ncc.log",
    benchmark:
        "results/benchmarks/{run}/ncc.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: res("ncc", "threads")
    resources:
        mem_mb=res("ncc", "mem_mb"),
        runtime=res("ncc", "runtime"),
    params:
        code=code_version("ncc.py", skip=("mfoml.tracking",)),  # tracking: output-neutral
        cfg=rule_params(config, "ncc"),
    script:
        "../scripts/ncc.py"
