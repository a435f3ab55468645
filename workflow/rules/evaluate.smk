rule evaluate:
    """Success counts with Clopper-Pearson intervals, Wilcoxon tests, eCDF and displacement figures."""
    input:
        registrations=input_files(
            targets.registration_csvs, "dataset", "variant", "testset"
        ),
    output:
        success=evaluation_report(
            f"{EVALUATION}/tables/success.csv", "success", "table", "success"
        ),
        success_md=f"{EVALUATION}/tables/success.md",
        wilcoxon=evaluation_report(
            f"{EVALUATION}/tables/wilcoxon.csv", "wilcoxon", "table", "Wilcoxon tests"
        ),
        wilcoxon_md=f"{EVALUATION}/tables/wilcoxon.md",
        provenance=f"{EVALUATION}/tables/provenance.json",
        ecdf=evaluation_report(
            f"{EVALUATION}/figures/ecdf.png", "ecdf", "figure", "eCDF"
        ),
        displacement=evaluation_report(
            f"{EVALUATION}/figures/error_vs_displacement.png",
            "displacement",
            "figure",
            "error vs displacement",
        ),
        bars=evaluation_report(
            f"{EVALUATION}/figures/success.png",
            "success_bars",
            "figure",
            "success rates",
        ),
    log:
        "results/{dataset}/logs/{variant}/evaluate/{testset}.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/evaluate/{testset}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: config["threads"]["evaluate"]
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        evaluation=rule_params(params.statistics_settings, "dataset"),
        provenance=rule_params(
            params.evaluation_provenance, "dataset", "variant", "testset"
        ),
    script:
        "../../scripts/evaluate.py"


rule evaluate_tre:
    """On a test set with a known deformation: successes within TRE thresholds with Clopper-Pearson
    intervals, Wilcoxon tests on the cases' median TRE, its eCDF."""
    input:
        registrations=input_files(
            targets.registration_csvs, "dataset", "variant", "testset"
        ),
    output:
        table=evaluation_report(
            f"{EVALUATION}/tables/tre.csv", "tre", "table", "TRE success"
        ),
        markdown=f"{EVALUATION}/tables/tre.md",
        wilcoxon=evaluation_report(
            f"{EVALUATION}/tables/tre_wilcoxon.csv",
            "tre_wilcoxon",
            "table",
            "TRE Wilcoxon tests",
        ),
        wilcoxon_md=f"{EVALUATION}/tables/tre_wilcoxon.md",
        ecdf=evaluation_report(
            f"{EVALUATION}/figures/tre_ecdf.png", "tre_ecdf", "figure", "TRE eCDF"
        ),
    log:
        "results/{dataset}/logs/{variant}/evaluate_tre/{testset}.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/evaluate_tre/{testset}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        evaluation=rule_params(params.tre_settings, "dataset"),
    script:
        "../../scripts/evaluate_tre.py"


rule timing:
    """Time per stage (paper, Table 3) from the jobs' benchmark files: whole test set and per pair."""
    input:
        unpack(input_files(targets.stage_benchmarks, "dataset", "variant", "testset")),
        cases=rules.build_testset.output.cases,
    output:
        table=evaluation_report(
            f"{EVALUATION}/tables/timing.csv", "timing", "table", "time per stage"
        ),
        markdown=f"{EVALUATION}/tables/timing.md",
    log:
        "results/{dataset}/logs/{variant}/timing/{testset}.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/timing/{testset}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        jobs=rule_params(jobs.registration_jobs, "dataset", "variant"),
        networks=rule_params(params.timing_networks, "dataset", "variant"),
    script:
        "../../scripts/timing.py"


rule compare_variants:
    """Variants against each other on the same cases (e.g. MSE vs cosine critic, paper Fig. 9)."""
    input:
        registrations=input_files(targets.comparison_csvs, "dataset", "testset"),
    output:
        table=report(
            "results/{dataset}/comparison/{testset}/variants.csv",
            caption="../report/variants.rst",
            category="Variants",
            subcategory="{dataset} / {testset}",
            labels={"table": "Wilcoxon tests between variants"},
        ),
        markdown="results/{dataset}/comparison/{testset}/variants.md",
        success=report(
            "results/{dataset}/comparison/{testset}/success.csv",
            caption="../report/variants_success.rst",
            category="Variants",
            subcategory="{dataset} / {testset}",
            labels={"table": "successes per variant"},
        ),
        success_md="results/{dataset}/comparison/{testset}/success.md",
        figure=report(
            "results/{dataset}/comparison/{testset}/variants.png",
            caption="../report/variants.rst",
            category="Variants",
            subcategory="{dataset} / {testset}",
            labels={"figure": "errors per variant"},
        ),
    log:
        "results/{dataset}/logs/compare_variants/{testset}.log",
    benchmark:
        "results/{dataset}/benchmarks/compare_variants/{testset}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        evaluation=rule_params(params.comparison_settings, "dataset"),
    script:
        "../../scripts/compare_variants.py"


rule agreement:
    """How alike the two modalities' CoMIRs of the same places are (the paper's critic comparison)."""
    input:
        comirs=rules.compute_comirs.output.comirs,
        cases=rules.build_testset.output.cases,
    output:
        table=evaluation_report(
            f"{EVALUATION}/tables/agreement.csv", "agreement", "table", "agreement"
        ),
        markdown=f"{EVALUATION}/tables/agreement.md",
        cases=f"{EVALUATION}/tables/agreement_cases.csv",
    log:
        "results/{dataset}/logs/{variant}/agreement/{testset}.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/agreement/{testset}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        seed=config["seed"],
    script:
        "../../scripts/agreement.py"


rule pool_folds:
    """Several datasets' registrations pooled (e.g. cross-validation folds): success counts with
    Clopper-Pearson intervals pooled, per dataset and per image, Wilcoxon tests, eCDF; per core
    (image) and run, worst cores first, with their patches, CoMIRs and image statistics.
    """
    input:
        unpack(input_files(targets.pool_patches, "pool")),
        registrations=input_files(targets.pool_registrations, "pool"),
    output:
        success=report(
            "results/pools/{pool}/success.csv",
            caption="../report/pool.rst",
            category="Pooled",
            subcategory="{pool}",
            labels={"table": "success, pooled"},
        ),
        markdown="results/pools/{pool}/success.md",
        per_dataset="results/pools/{pool}/success_per_dataset.md",
        per_image="results/pools/{pool}/success_per_image.md",
        wilcoxon="results/pools/{pool}/wilcoxon.md",
        ecdf=report(
            "results/pools/{pool}/ecdf.png",
            caption="../report/pool.rst",
            category="Pooled",
            subcategory="{pool}",
            labels={"figure": "eCDF, pooled"},
        ),
        cores=report(
            "results/pools/{pool}/cores.csv",
            caption="../report/pool_cores.rst",
            category="Pooled",
            subcategory="{pool}",
            labels={"table": "success per core"},
        ),
        cores_figure=report(
            "results/pools/{pool}/cores.png",
            caption="../report/pool_cores.rst",
            category="Pooled",
            subcategory="{pool}",
            labels={"figure": "cores, worst first"},
        ),
    log:
        "results/pools/logs/{pool}.log",
    benchmark:
        "results/pools/benchmarks/{pool}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        datasets=rule_params(params.pool_datasets, "pool"),
        pooled=lambda wc: config["pools"][wc.pool]["datasets"],
        modalities=rule_params(params.pool_modalities, "pool"),
        evaluation=lambda wc: params.statistics_settings(
            config, config["pools"][wc.pool]["datasets"][0]
        ),
    script:
        "../../scripts/pool_folds.py"
