# Seeded k-fold assignment over a data set's training split: stratified for classification,
# plain KFold for regression (task read from the data set's meta.json).


rule folds:
    input:
        data=data_dir("{dataset}"),
        code=script_modules("folds.py"),
    output:
        "results/folds/{dataset}.json",
    log:
        "logs/folds/{dataset}.log",
    localrule: True
    conda:
        "../../envs/mfoml.yaml"
    params:
        cfg=rule_params(config, "folds"),
    script:
        "../scripts/folds.py"
