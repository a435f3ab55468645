rule train:
    """Train the two CoMIR networks jointly with the contrastive loss."""
    input:
        pairs="results/{dataset}/data/pairs.csv",
    output:
        model="results/{dataset}/model/comir.pt",
        history="results/{dataset}/model/loss.csv",
        plot=report(
            "results/{dataset}/model/loss.png",
            caption="../report/loss.rst",
            category="Training",
            labels={"dataset": "{dataset}", "figure": "loss"},
        ),
    log:
        "results/{dataset}/logs/train.log",
    benchmark:
        "results/{dataset}/benchmarks/train.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]["train"]
    resources:
        mem_mb=8000,
        runtime=600,
        gpu=lambda wc: 0 if DATASETS[wc.dataset]["training"]["device"] == "cpu" else 1,
    params:
        dataset=dataset_config,
        seed=config["seed"],
        config=config,
    script:
        "../../scripts/train.py"
