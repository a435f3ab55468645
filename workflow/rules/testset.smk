rule build_testset:
    """Reference patches, rigidly transformed floating patches and their ground truth."""
    input:
        pairs="results/{dataset}/data/pairs.csv",
    output:
        images=directory("results/{dataset}/testset/images"),
        cases=report(
            "results/{dataset}/testset/cases.csv",
            caption="../report/testset.rst",
            category="Test set",
            labels={"dataset": "{dataset}", "table": "cases"},
        ),
    log:
        "results/{dataset}/logs/build_testset.log",
    benchmark:
        "results/{dataset}/benchmarks/build_testset.tsv"
    conda:
        "../../envs/data.yaml"
    threads: config["threads"]["data"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        testset=lambda wc: DATASETS[wc.dataset]["testset"],
        seed=config["seed"],
    script:
        "../../scripts/build_testset.py"
