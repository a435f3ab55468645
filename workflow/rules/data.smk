rule prepare_data:
    """Canonical aligned pairs with their train/val/test split (synthetic data is generated here)."""
    output:
        pairs="results/{dataset}/data/pairs.csv",
    params:
        dataset=dataset_config,
        seed=config["seed"],
        image_dir=lambda wc: f"results/{wc.dataset}/data/images",
    log:
        "results/{dataset}/logs/prepare_data.log",
    benchmark:
        "results/{dataset}/benchmarks/prepare_data.tsv"
    threads: config["threads"]["data"]
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/prepare_data.py"
