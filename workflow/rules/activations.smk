# Per checkpoint and split, one ordered pass storing every probe layer as a memory-mappable
# float16 array: results/runs/{run}/activations/{epoch}/{split}/.
# With `activations.keep: false` the dump directory is temp() (dump_output, common.smk):
# Snakemake deletes it once every consumer in the DAG (probe, NCC, SSL evaluation, similarity,
# collapse measures) has run, and rebuilds it from the checkpoints when a later rerun needs it.


rule activations:
    input:
        unpack(activation_inputs),
    output:
        dump_output("results/runs/{run}/activations"),
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
