# Figures of the report (seaborn), one caption each in workflow/report/, and the report's tables
# rendered as HTML pages (results/tables/html/).


rule figures:
    input:
        **{t: f"results/tables/{t}.csv" for t in TABLES},
    output:
        **{
            f"table_{t}": report(
                f"results/tables/html/{t}.html",
                caption=f"../report/table_{t}.rst",
                category="Tables",
            )
            for t in REPORT_TABLES
        },
        alpha_layers=report(
            f"results/figures/alpha_layers.{FIG_EXT}",
            caption="../report/alpha_layers.rst",
            category="Smoothness",
        ),
        ncc_layers=report(
            f"results/figures/ncc_layers.{FIG_EXT}",
            caption="../report/ncc_layers.rst",
            category="NCC and neural collapse",
        ),
        collapse_layers=report(
            f"results/figures/collapse_layers.{FIG_EXT}",
            caption="../report/collapse_layers.rst",
            category="NCC and neural collapse",
        ),
        accuracy_epochs=report(
            f"results/figures/accuracy_epochs.{FIG_EXT}",
            caption="../report/accuracy_epochs.rst",
            category="Accuracy",
        ),
        confusion=report(
            f"results/figures/confusion.{FIG_EXT}",
            caption="../report/confusion.rst",
            category="Accuracy",
        ),
        correlation=report(
            f"results/figures/correlation.{FIG_EXT}",
            caption="../report/correlation.rst",
            category="Dynamics vs accuracy",
        ),
        noise_alpha=report(
            f"results/figures/noise_alpha.{FIG_EXT}",
            caption="../report/noise_alpha.rst",
            category="Smoothness",
        ),
    log:
        "logs/figures.log",
    localrule: True
    conda:
        "../../envs/mfoml.yaml"
    params:
        code=code_version("figures.py"),
        cfg=rule_params(config, "figures"),
    script:
        "../scripts/figures.py"
