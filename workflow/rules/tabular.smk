# Tabular track (issues 6 and 15, docs/tabular.md): per data set under the stored k-fold CV,
# baselines (XGBoost included), nested random-forest and XGBoost searches, the wavelet forest
# with validation-chosen M, the wavelets of boosted trees beside it, feature importances and the
# label-noise study; then tables (mean and std over folds) and figures.
#
# Which data sets, tables and figures a configuration asks for is decided by TabularPlan
# (workflow/rules/tabular_plan.py). Every rule gets only its own slice of config["tabular"] as
# canonical JSON and lists the mfoml modules its script executes as inputs (each script imports
# only the mfoml.tabular module of its part, so editing mfoml/wavelets/ reruns the wavelet,
# boosting, importance, noise and synthetic jobs, never the baselines or the searches).

from tabular_plan import TabularPlan

TABULAR = TabularPlan(config["tabular"], FIG_EXT)
TAB_RES = config["tabular"]["resources"]
# The final targets of the track, for `rule all` (empty when tabular.enabled is false).
tabular_targets = TABULAR.targets


rule tabular_baselines:
    input:
        data=data_dir("{dataset}"),
        folds=folds_file("{dataset}"),
    output:
        "results/tabular/{dataset}/baselines.json",
    log:
        "logs/tabular/{dataset}/baselines.log",
    benchmark:
        "results/benchmarks/tabular/{dataset}/baselines.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: TAB_RES["threads"]
    resources:
        mem_mb=TAB_RES["mem_mb"],
        runtime=TAB_RES["runtime"],
    params:
        code=code_version("tabular_baselines.py"),
        cfg=TABULAR.params("baselines"),
    script:
        "../scripts/tabular_baselines.py"


rule tabular_rf_search:
    input:
        data=data_dir("{dataset}"),
        folds=folds_file("{dataset}"),
    output:
        "results/tabular/{dataset}/rf_search.json",
    log:
        "logs/tabular/{dataset}/rf_search.log",
    benchmark:
        "results/benchmarks/tabular/{dataset}/rf_search.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: TAB_RES["threads"]
    resources:
        mem_mb=TAB_RES["mem_mb"],
        runtime=TAB_RES["runtime"],
    params:
        code=code_version("tabular_rf_search.py"),
        cfg=TABULAR.params("rf_search"),
    script:
        "../scripts/tabular_rf_search.py"


rule tabular_xgb_search:
    input:
        data=data_dir("{dataset}"),
        folds=folds_file("{dataset}"),
    output:
        "results/tabular/{dataset}/xgb_search.json",
    log:
        "logs/tabular/{dataset}/xgb_search.log",
    benchmark:
        "results/benchmarks/tabular/{dataset}/xgb_search.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: TAB_RES["threads"]
    resources:
        mem_mb=TAB_RES["mem_mb"],
        runtime=TAB_RES["runtime"],
    params:
        code=code_version("tabular_xgb_search.py"),
        cfg=TABULAR.params("xgb_search"),
    script:
        "../scripts/tabular_xgb_search.py"


rule tabular_wavelet:
    input:
        data=data_dir("{dataset}"),
        folds=folds_file("{dataset}"),
    output:
        "results/tabular/{dataset}/wavelet.json",
    log:
        "logs/tabular/{dataset}/wavelet.log",
    benchmark:
        "results/benchmarks/tabular/{dataset}/wavelet.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: TAB_RES["threads"]
    resources:
        mem_mb=TAB_RES["mem_mb"],
        runtime=TAB_RES["runtime"],
    params:
        code=code_version("tabular_wavelet.py"),
        cfg=TABULAR.params("wavelet"),
    script:
        "../scripts/tabular_wavelet.py"


rule tabular_boosting:
    input:
        data=data_dir("{dataset}"),
        folds=folds_file("{dataset}"),
    output:
        "results/tabular/{dataset}/boosting.json",
    log:
        "logs/tabular/{dataset}/boosting.log",
    benchmark:
        "results/benchmarks/tabular/{dataset}/boosting.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: TAB_RES["threads"]
    resources:
        mem_mb=TAB_RES["mem_mb"],
        runtime=TAB_RES["runtime"],
    params:
        code=code_version("tabular_boosting.py"),
        cfg=TABULAR.params("boosting"),
    script:
        "../scripts/tabular_boosting.py"


rule tabular_importance:
    input:
        data=data_dir("{dataset}"),
        folds=folds_file("{dataset}"),
    output:
        "results/tabular/{dataset}/importance.json",
    log:
        "logs/tabular/{dataset}/importance.log",
    benchmark:
        "results/benchmarks/tabular/{dataset}/importance.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: TAB_RES["threads"]
    resources:
        mem_mb=TAB_RES["mem_mb"],
        runtime=TAB_RES["runtime"],
    params:
        code=code_version("tabular_importance.py"),
        cfg=TABULAR.params("importance"),
    script:
        "../scripts/tabular_importance.py"


rule tabular_synthetic:
    output:
        "results/tabular/synthetic.json",
    log:
        "logs/tabular/synthetic.log",
    benchmark:
        "results/benchmarks/tabular/synthetic.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: TAB_RES["threads"]
    resources:
        mem_mb=TAB_RES["mem_mb"],
        runtime=TAB_RES["runtime"],
    params:
        code=code_version("tabular_synthetic.py"),
        cfg=TABULAR.params("synthetic"),
    script:
        "../scripts/tabular_synthetic.py"


rule tabular_noise:
    input:
        data=data_dir("{dataset}"),
        folds=folds_file("{dataset}"),
    output:
        "results/tabular/{dataset}/noise.json",
    log:
        "logs/tabular/{dataset}/noise.log",
    benchmark:
        "results/benchmarks/tabular/{dataset}/noise.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: TAB_RES["threads"]
    resources:
        mem_mb=TAB_RES["mem_mb"],
        runtime=TAB_RES["runtime"],
    params:
        code=code_version("tabular_noise.py"),
        cfg=TABULAR.params("noise"),
    script:
        "../scripts/tabular_noise.py"


rule tabular_tables:
    input:
        baselines=TABULAR.results("baselines"),
        rf_search=TABULAR.results("rf_search"),
        xgb_search=TABULAR.results("xgb_search"),
        wavelet=TABULAR.results("wavelet"),
        boosting=TABULAR.results("boosting"),
        importance=TABULAR.results("importance"),
        noise=TABULAR.results("noise"),
        synthetic=TABULAR.results("synthetic"),
    output:
        **TABULAR.table_paths(),
    log:
        "logs/tabular/tables.log",
    localrule: True
    conda:
        "../../envs/mfoml.yaml"
    params:
        code=code_version("tabular_tables.py"),
        cfg=TABULAR.params("tables"),
    script:
        "../scripts/tabular_tables.py"


rule tabular_figures:
    input:
        **TABULAR.table_paths(),
    output:
        **{
            name: report(
                path,
                caption=f"../report/tabular_{name}.rst",
                category="Tabular",
            )
            for name, path in TABULAR.figure_paths().items()
        },
    log:
        "logs/tabular/figures.log",
    localrule: True
    conda:
        "../../envs/mfoml.yaml"
    params:
        code=code_version("tabular_figures.py"),
        cfg=canonical_json({"dpi": config["figures"]["dpi"]}),
    script:
        "../scripts/tabular_figures.py"
