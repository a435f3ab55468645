rule prepare_data:
    """Canonical aligned pairs with their split (synthetic data is generated, records are converted)."""
    input:
        record=input_files(targets.record_input, "dataset"),
        files=input_files(jobs.pairs_files, "dataset"),
    output:
        pairs="results/{dataset}/data/pairs.csv",
        layout="results/{dataset}/data/layout.json",
    log:
        "results/{dataset}/logs/prepare_data.log",
    benchmark:
        "results/{dataset}/benchmarks/prepare_data.tsv"
    conda:
        "../../envs/data.yaml"
    threads: config["threads"]["data"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        dataset=rule_params(params.data_params, "dataset"),
        seed=config["seed"],
        image_dir=lambda wc: f"results/{wc.dataset}/data/images",
    script:
        "../../scripts/prepare_data.py"
