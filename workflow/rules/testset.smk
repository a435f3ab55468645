rule build_testset:
    """Reference patches, rigidly transformed floating patches and their ground truth."""
    input:
        pairs=rules.prepare_data.output.pairs,
        record=input_files(targets.prebuilt_input, "dataset", "testset"),
    output:
        images=directory("results/{dataset}/testsets/{testset}/images"),
        cases=report(
            "results/{dataset}/testsets/{testset}/cases.csv",
            caption="../report/testset.rst",
            category="Test set",
            labels={"dataset": "{dataset}", "test set": "{testset}", "table": "cases"},
        ),
    log:
        "results/{dataset}/logs/build_testset/{testset}.log",
    benchmark:
        "results/{dataset}/benchmarks/build_testset/{testset}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: config["threads"]["data"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        build=rule_params(params.testset_params, "dataset", "testset"),
        seed=config["seed"],
    script:
        "../../scripts/build_testset.py"
