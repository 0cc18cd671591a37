# Data sets in the normalized on-disk format (generated or downloaded): resources/data/{dataset}.


rule data:
    input:
        unpack(data_inputs),
    output:
        directory("resources/data/{dataset}"),
    log:
        "logs/data/{dataset}.log",
    localrule: True
    conda:
        "../../envs/mfoml.yaml"
    params:
        code=data_code,
        options=lambda wildcards: canonical_json(
            dataset_options(config, wildcards.dataset)
        ),
    script:
        "../scripts/data.py"
