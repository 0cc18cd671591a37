# Masked-language-model pretraining stages (config `pretrain`): an arch-transformer encoder
# trained on the token ids of a text data set's training split, with its own checkpoints in
# results/pretrain/{stage}/checkpoints (+ metrics.csv, stage.json). Sweeps start from it with
# `pretrained` (rule train).


rule pretrain:
    input:
        data=lambda wildcards: data_dir(config["pretrain"][wildcards.stage]["dataset"]),
    output:
        directory("results/pretrain/{stage}/checkpoints"),
    log:
        "logs/pretrain/{stage}.log",
    benchmark:
        "results/benchmarks/pretrain/{stage}.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: res("pretrain", "threads")
    resources:
        gpu=GPU,
        mem_mb=res("pretrain", "mem_mb"),
        runtime=res("pretrain", "runtime"),
    params:
        code=code_version("pretrain.py"),
        cfg=lambda wildcards: pretrain_params(config, wildcards.stage),
    script:
        "../scripts/pretrain.py"
