rule prepare_data:
    """Canonical aligned pairs with their train/val/test split (synthetic data is generated here)."""
    output:
        pairs="results/{dataset}/data/pairs.csv",
    log:
        "results/{dataset}/logs/prepare_data.log",
    benchmark:
        "results/{dataset}/benchmarks/prepare_data.tsv"
    conda:
        "../../envs/data.yaml"
    threads: config["threads"]["data"]
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        dataset=dataset_config,
        seed=config["seed"],
        image_dir=lambda wc: f"results/{wc.dataset}/data/images",
    script:
        "../../scripts/prepare_data.py"
