rule testset_pairs:
    """A test set as a folder of unaligned pairs with their true transforms, for validating the apply stage."""
    input:
        cases=rules.build_testset.output.cases,
        images=rules.build_testset.output.images,
    output:
        pairs=directory(
            "results/{dataset}/testsets/{testset}/unaligned_{reference}/pairs"
        ),
        truth="results/{dataset}/testsets/{testset}/unaligned_{reference}/truth.csv",
    log:
        "results/{dataset}/logs/testset_pairs/{testset}_{reference}.log",
    benchmark:
        "results/{dataset}/benchmarks/testset_pairs/{testset}_{reference}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: config["threads"]["data"]
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        modalities=rule_params(params.modality_names, "dataset"),
    script:
        "../../scripts/testset_pairs.py"


rule register_pairs:
    """One batch of an apply job: a trained model (or an ensemble's models, in its order)
    registers unaligned pairs (transform, warped image, overlay and CoMIRs per pair)."""
    input:
        model=input_files(targets.apply_model, "job"),
        pairs=input_files(targets.apply_pairs, "job"),
    output:
        table="results/apply/{job}/batches/{batch}.csv",
        pairs=report(
            directory("results/apply/{job}/pairs/{batch}"),
            patterns=["{id}/overlay.png"],
            caption="../report/overlay.rst",
            category="Registered pairs",
            subcategory="{job}",
            labels={"pair": "{id}", "batch": "{batch}"},
        ),
    log:
        "results/apply/logs/{job}/register_pairs/{batch}.log",
    benchmark:
        "results/apply/benchmarks/{job}/register_pairs/{batch}.tsv"
    conda:
        "../../envs/apply.yaml"
    threads: config["threads"]["comir"]
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        settings=rule_params(params.apply_settings, "job"),
        batches=lambda wc: APPLY[wc.job]["batches"],
        seed=config["seed"],
    script:
        "../../scripts/register_pairs.py"


rule summarise_pairs:
    """All pairs of an apply job in one table, the failed and low-quality ones flagged."""
    input:
        tables=input_files(targets.apply_batches, "job"),
    output:
        summary=report(
            "results/apply/{job}/summary.csv",
            caption="../report/apply_summary.rst",
            category="Registered pairs",
            subcategory="{job}",
            labels={"table": "summary"},
        ),
        markdown="results/apply/{job}/summary.md",
    log:
        "results/apply/logs/{job}/summarise_pairs.log",
    benchmark:
        "results/apply/benchmarks/{job}/summarise_pairs.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        min_quality=lambda wc: APPLY[wc.job]["min_quality"],
    script:
        "../../scripts/summarise_pairs.py"


rule apply_errors:
    """An apply job's pairs against their known transforms: corner errors, in the per-case format of
    the experiment's registrations."""
    input:
        summary=rules.summarise_pairs.output.summary,
        truth=input_files(targets.apply_truth, "job"),
    output:
        "results/apply/{job}/evaluation/cases.csv",
    log:
        "results/apply/logs/{job}/apply_errors.log",
    benchmark:
        "results/apply/benchmarks/{job}/apply_errors.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../../scripts/apply_errors.py"


rule evaluate_apply:
    """The apply jobs with known transforms against each other: success counts with Clopper-Pearson
    intervals, Wilcoxon tests on shared pairs, eCDF."""
    input:
        cases=input_files(targets.apply_evaluated),
    output:
        success=report(
            "results/apply/evaluation/success.csv",
            caption="../report/apply_success.rst",
            category="Registered pairs",
            subcategory="known transforms",
            labels={"table": "success"},
        ),
        markdown="results/apply/evaluation/success.md",
        wilcoxon="results/apply/evaluation/wilcoxon.md",
        ecdf=report(
            "results/apply/evaluation/ecdf.png",
            caption="../report/apply_ecdf.rst",
            category="Registered pairs",
            subcategory="known transforms",
            labels={"figure": "eCDF"},
        ),
    log:
        "results/apply/logs/evaluate_apply.log",
    benchmark:
        "results/apply/benchmarks/evaluate_apply.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        # The schema's evaluation settings: the apply jobs may use models of several datasets.
        evaluation=section_defaults("evaluation"),
    script:
        "../../scripts/evaluate_apply.py"
