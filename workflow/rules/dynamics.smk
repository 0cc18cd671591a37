# Training dynamics and class geometry (issue 13; config keys `dynamics`, `train.sharpness_every`,
# `ncc.geometry`). Always: figures of the per-epoch gradient norm, of the error against the
# parameter count and of the per-layer geometry (from the aggregated tables). Optional, per run:
# sharpness and input sensitivity per checkpoint (rule dynamics_checkpoints), the weight
# trajectory (dynamics_trajectory), interpolation between a run's checkpoints
# (dynamics_interpolation_run) and between two runs (dynamics_interpolation_pair), collected by
# dynamics_tables. Their resources: `resources.dynamics`.


wildcard_constraints:
    pair=r"[0-9]+",


rule dynamics_checkpoints:
    input:
        unpack(_run_inputs),
    output:
        "results/runs/{run}/dynamics.csv",
    log:
        "logs/runs/{run}/dynamics_checkpoints.log",
    benchmark:
        "results/benchmarks/{run}/dynamics_checkpoints.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: res("dynamics", "threads")
    resources:
        gpu=GPU,
        mem_mb=res("dynamics", "mem_mb"),
        runtime=res("dynamics", "runtime"),
    params:
        code=code_version("dynamics_checkpoints.py"),
        cfg=lambda wildcards: dynamics_params(config, "checkpoint", run_of(wildcards)),
    script:
        "../scripts/dynamics_checkpoints.py"


rule dynamics_trajectory:
    input:
        unpack(_run_inputs),
    output:
        surface="results/runs/{run}/trajectory_surface.csv",
        path="results/runs/{run}/trajectory_path.csv",
    log:
        "logs/runs/{run}/dynamics_trajectory.log",
    benchmark:
        "results/benchmarks/{run}/dynamics_trajectory.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: res("dynamics", "threads")
    resources:
        mem_mb=res("dynamics", "mem_mb"),
        runtime=res("dynamics", "runtime"),
    params:
        code=code_version("dynamics_trajectory.py"),
        cfg=lambda wildcards: dynamics_params(config, "trajectory", run_of(wildcards)),
    script:
        "../scripts/dynamics_trajectory.py"


rule dynamics_interpolation_run:
    input:
        unpack(_run_inputs),
    output:
        "results/runs/{run}/interpolation.csv",
    log:
        "logs/runs/{run}/dynamics_interpolation_run.log",
    benchmark:
        "results/benchmarks/{run}/dynamics_interpolation_run.tsv"
    conda:
        "../../envs/mfoml.yaml"
    threads: res("dynamics", "threads")
    resources:
        gpu=GPU,
        mem_mb=res("dynamics", "mem_mb"),
        runtime=res("dynamics", "runtime"),
    params:
        code=code_version("dynamics_interpolation_run.py"),
        cfg=lambda wildcards: dynamics_params(config, "within", run_of(wildcards)),
    script:
        "../scripts/dynamics_interpolation_run.py"


rule dynamics_interpolation_pair:
    input:
        unpack(_pair_inputs),
    output:
        "results/interpolation/pair{pair}.csv",
    log:
        "logs/interpolation/pair{pair}.log",
    conda:
        "../../envs/mfoml.yaml"
    threads: res("dynamics", "threads")
    resources:
        gpu=GPU,
        mem_mb=res("dynamics", "mem_mb"),
        runtime=res("dynamics", "runtime"),
    params:
        code=code_version("dynamics_interpolation_pair.py"),
        cfg=_pair_params,
    script:
        "../scripts/dynamics_interpolation_pair.py"


if dynamics_table_outputs():

    rule dynamics_tables:
        input:
            **dynamics_table_inputs(),
        output:
            **dynamics_table_outputs(),
        log:
            "logs/dynamics_tables.log",
        localrule: True
        conda:
            "../../envs/mfoml.yaml"
        params:
            code=code_version("dynamics_tables.py"),
            cfg=canonical_json(
                {"runs": [r.metadata() for r in RUNS.values()], "pairs": PAIRS}
            ),
        script:
            "../scripts/dynamics_tables.py"


rule dynamics_figures:
    input:
        **dynamics_table_outputs(),
        epochs="results/tables/epochs.csv",
        layers="results/tables/layers.csv",
    output:
        **{
            name: report(
                path,
                caption=f"../report/{name}.rst",
                category="Training dynamics and geometry",
            )
            for name, path in dynamics_figure_outputs().items()
        },
    log:
        "logs/dynamics_figures.log",
    localrule: True
    conda:
        "../../envs/mfoml.yaml"
    params:
        code=code_version("dynamics_figures.py"),
        cfg=dynamics_params(config, "figures"),
    script:
        "../scripts/dynamics_figures.py"
