rule train:
    """Train the two CoMIR networks of one variant jointly with the contrastive loss."""
    input:
        pairs=rules.prepare_data.output.pairs,
    output:
        model="results/{dataset}/{variant}/model/comir.pt",
        history="results/{dataset}/{variant}/model/loss.csv",
        plot=report(
            "results/{dataset}/{variant}/model/loss.png",
            caption="../report/loss.rst",
            category="Training",
            labels={"dataset": "{dataset}", "variant": "{variant}", "figure": "loss"},
        ),
    log:
        "results/{dataset}/logs/{variant}/train.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/train.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]["train"]
    resources:
        mem_mb=8000,
        runtime=600,
        gpu=lambda wc: params.gpu(config, wc.dataset, "training", wc.variant),
    params:
        network=rule_params(params.network_params, "dataset", "variant"),
        seed=config["seed"],
        resume_state="results/{dataset}/{variant}/model/training_state.pt",
    script:
        "../../scripts/train.py"
