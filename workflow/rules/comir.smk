rule compute_comirs:
    """CoMIRs of every test patch (float32 TIFF) with PNG previews."""
    input:
        model="results/{dataset}/model/comir.pt",
        images="results/{dataset}/testset/images",
        cases="results/{dataset}/testset/cases.csv",
    output:
        comirs=directory("results/{dataset}/comir/images"),
        previews=directory("results/{dataset}/comir/previews"),
        examples=report(
            "results/{dataset}/comir/examples.png",
            caption="../report/examples.rst",
            category="CoMIRs",
            labels={"dataset": "{dataset}", "figure": "examples"},
        ),
    log:
        "results/{dataset}/logs/compute_comirs.log",
    benchmark:
        "results/{dataset}/benchmarks/compute_comirs.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]["comir"]
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=lambda wc: 0 if DATASETS[wc.dataset]["inference"]["device"] == "cpu" else 1,
    params:
        dataset=dataset_config,
    script:
        "../../scripts/compute_comirs.py"
