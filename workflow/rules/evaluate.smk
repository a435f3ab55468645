rule evaluate:
    """Success counts with Clopper-Pearson intervals, Wilcoxon tests, eCDF and displacement figures."""
    input:
        registrations=registration_csvs,
    output:
        success=report(
            "results/{dataset}/tables/success.csv",
            caption="../report/success.rst",
            category="Results",
            labels={"dataset": "{dataset}", "table": "success"},
        ),
        success_md="results/{dataset}/tables/success.md",
        wilcoxon=report(
            "results/{dataset}/tables/wilcoxon.csv",
            caption="../report/wilcoxon.rst",
            category="Results",
            labels={"dataset": "{dataset}", "table": "Wilcoxon tests"},
        ),
        wilcoxon_md="results/{dataset}/tables/wilcoxon.md",
        provenance="results/{dataset}/tables/provenance.json",
        ecdf=report(
            "results/{dataset}/figures/ecdf.png",
            caption="../report/ecdf.rst",
            category="Results",
            labels={"dataset": "{dataset}", "figure": "eCDF"},
        ),
        displacement=report(
            "results/{dataset}/figures/error_vs_displacement.png",
            caption="../report/displacement.rst",
            category="Results",
            labels={"dataset": "{dataset}", "figure": "error vs displacement"},
        ),
        bars=report(
            "results/{dataset}/figures/success.png",
            caption="../report/success_bars.rst",
            category="Results",
            labels={"dataset": "{dataset}", "figure": "success rates"},
        ),
    log:
        "results/{dataset}/logs/evaluate.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: config["threads"]["evaluate"]
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        evaluation=lambda wc: DATASETS[wc.dataset]["evaluation"],
        config=config,
    script:
        "../../scripts/evaluate.py"
