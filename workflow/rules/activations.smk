# Per checkpoint and split, one ordered pass storing every probe layer as a memory-mappable
# float16 array: results/runs/{run}/activations/{epoch}/{split}/.


rule activations:
    input:
        unpack(activation_inputs),
    output:
        directory("results/runs/{run}/activations"),
    log:
        "logs/runs/{run}/activations.log",
    benchmark:
        "results/benchmarks/{run}/activations.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: res("activations", "threads")
    resources:
        gpu=GPU,
        mem_mb=res("activations", "mem_mb"),
        runtime=res("activations", "runtime"),
    params:
        code=activation_code,
        cfg=lambda wildcards: rule_params(config, "activations", run_of(wildcards)),
    script:
        "../scripts/activations.py"
