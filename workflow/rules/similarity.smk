# More lenses on each layer (issue 25; mfoml.similarity, config keys `similarity`,
# `intrinsic_dim`, `embedding`; functions in similarity_common.smk): linear CKA (unbiased HSIC)
# between layers, checkpoints and runs, the TwoNN intrinsic dimension per layer (a column of
# results/tables/layers.csv), and UMAP pictures of the layers (off by default: umap-learn's cost).


rule intrinsic_dim:
    input:
        activations="results/runs/{run}/activations",
    output:
        "results/runs/{run}/intrinsic_dim.csv",
    log:
        "logs/runs/{run}/intrinsic_dim.log",
    benchmark:
        "results/benchmarks/{run}/intrinsic_dim.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: res("ncc", "threads")
    resources:
        mem_mb=res("ncc", "mem_mb"),
        runtime=res("ncc", "runtime"),
    params:
        code=code_version("intrinsic_dim.py"),
        cfg=canonical_json(INTRINSIC_DIM),
    script:
        "../scripts/intrinsic_dim.py"


rule cka:
    input:
        activations="results/runs/{run}/activations",
    output:
        "results/runs/{run}/cka.csv",
    log:
        "logs/runs/{run}/cka.log",
    benchmark:
        "results/benchmarks/{run}/cka.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: res("ncc", "threads")
    resources:
        mem_mb=res("ncc", "mem_mb"),
        runtime=res("ncc", "runtime"),
    params:
        code=code_version("cka.py"),
        cfg=canonical_json(SIMILARITY),
    script:
        "../scripts/cka.py"


rule similarity_tables:
    input:
        cka=expand("results/runs/{run}/cka.csv", run=RUN_IDS),
        activations=(
            expand("results/runs/{run}/activations", run=RUN_IDS)
            if SIMILARITY["across_runs"]
            else []
        ),
    output:
        **{
            f"{t}{s}": f"results/tables/{t}{s}.csv"
            for t in CKA_TABLES
            for s in ("", "_summary")
        },
    log:
        "logs/similarity_tables.log",
    localrule: True
    conda:
        "../../envs/mfoml.yaml"
    params:
        code=code_version("similarity_tables.py"),
        cfg=canonical_json(
            {
                **SIMILARITY,
                "name": config["name"],
                "runs": [RUNS[rid].metadata() for rid in RUN_IDS],
                "groups": cross_run_groups() if SIMILARITY["across_runs"] else [],
            }
        ),
    script:
        "../scripts/similarity_tables.py"


rule lenses_figures:
    input:
        unpack(lens_figure_inputs),
    output:
        **{
            name: report(
                path,
                caption=f"../report/{name}.rst",
                category="Layer similarity and intrinsic dimension",
            )
            for name, path in lens_figures().items()
        },
    log:
        "logs/lenses_figures.log",
    localrule: True
    conda:
        "../../envs/mfoml.yaml"
    params:
        code=code_version("lenses_figures.py"),
        cfg=rule_params(config, "figures"),
    script:
        "../scripts/lenses_figures.py"


rule embedding:
    input:
        activations="results/runs/{run}/activations",
    output:
        report(
            f"results/figures/embedding/{{run}}.{FIG_EXT}",
            caption="../report/embedding.rst",
            category="Layer pictures (UMAP)",
            subcategory="{run}",
        ),
    log:
        "logs/runs/{run}/embedding.log",
    benchmark:
        "results/benchmarks/{run}/embedding.tsv"
    wildcard_constraints:
        run=EMBEDDING_RUN_REGEX,
    conda:
        "../../envs/mfoml.yaml"
    threads: res("ncc", "threads")
    resources:
        mem_mb=res("ncc", "mem_mb"),
        runtime=res("ncc", "runtime"),
    params:
        code=code_version("embedding.py"),
        cfg=canonical_json({**EMBEDDING, "figures": config["figures"]}),
    script:
        "../scripts/embedding.py"
