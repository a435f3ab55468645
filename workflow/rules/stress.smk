rule stress_curve:
    """A stress series (config `stress`): success rate against severity, the base test set at 0."""
    input:
        successes=stress_success_tables,
    output:
        table=report(
            "results/{dataset}/{variant}/evaluation/stress/{series}.csv",
            caption="../report/stress.rst",
            category="Results",
            subcategory="{dataset} / {variant} / stress",
            labels={"series": "{series}", "table": "success against severity"},
        ),
        figure=report(
            "results/{dataset}/{variant}/evaluation/stress/{series}.png",
            caption="../report/stress.rst",
            category="Results",
            subcategory="{dataset} / {variant} / stress",
            labels={"series": "{series}", "figure": "success against severity"},
        ),
    log:
        "results/{dataset}/logs/{variant}/stress_curve/{series}.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/stress_curve/{series}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        severities=stress_severities,
        fractions=lambda wc: statistics_settings(wc.dataset)["success_fractions"],
        kind=lambda wc: stress_series(wc)["kind"],
        modality=lambda wc: stress_series(wc)["modality"],
    script:
        "../../scripts/stress_curve.py"
