# Seeded k-fold assignment over a data set's training split: stratified for classification,
# plain KFold for regression (task read from the data set's meta.json).


rule folds:
    input:
        data=data_dir("{dataset}"),
    output:
        "results/folds/{dataset}.json",
    log:
        "logs/folds/{dataset}.log",
    localrule: True
    conda:
        "../../envs/mfoml.yaml"
    params:
        code=code_version("folds.py"),
        cfg=rule_params(config, "folds"),
    script:
        "../scripts/folds.py"
