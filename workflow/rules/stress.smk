rule stress_curve:
    """A stress series (config `stress`): success rate against severity, the base test set at 0."""
    input:
        successes=input_files(
            targets.stress_success_tables, "dataset", "variant", "series"
        ),
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
        severities=rule_params(jobs.stress_severities, "dataset", "series"),
        fractions=lambda wc: params.statistics_settings(config, wc.dataset)[
            "success_fractions"
        ],
        kind=lambda wc: jobs.stress_series(config, wc.dataset, wc.series)["kind"],
        modality=lambda wc: jobs.stress_series(config, wc.dataset, wc.series)[
            "modality"
        ],
    script:
        "../../scripts/stress_curve.py"
