# Sparsity probe: Besov smoothness alpha (with band) per layer, checkpoint and split.


rule probe:
    input:
        activations="results/runs/{run}/activations",
    output:
        table="results/runs/{run}/probe.csv",
        curves="results/runs/{run}/probe_curves.json",
    log:
        "logs/runs/{run}/probe.log",
    benchmark:
        "results/benchmarks/{run}/probe.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: res("probe", "threads")
    resources:
        mem_mb=res("probe", "mem_mb"),
        runtime=res("probe", "runtime"),
    params:
        code=code_version("probe.py"),
        cfg=rule_params(config, "probe"),
    script:
        "../scripts/probe.py"
