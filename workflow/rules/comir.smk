rule compute_comirs:
    """CoMIRs of every patch of a test set (float32 TIFF) with PNG previews."""
    input:
        model=trained_model,
        images=rules.build_testset.output.images,
        cases=rules.build_testset.output.cases,
    output:
        comirs=directory("results/{dataset}/{variant}/comir/{testset}/images"),
        previews=directory("results/{dataset}/{variant}/comir/{testset}/previews"),
        examples=report(
            "results/{dataset}/{variant}/comir/{testset}/examples.png",
            caption="../report/examples.rst",
            category="CoMIRs",
            labels={
                "dataset": "{dataset}",
                "variant": "{variant}",
                "test set": "{testset}",
                "figure": "examples",
            },
        ),
    log:
        "results/{dataset}/logs/{variant}/compute_comirs/{testset}.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/compute_comirs/{testset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]["comir"]
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=lambda wc: params.gpu(config, wc.dataset, "inference", wc.variant),
    params:
        modalities=rule_params(params.network_input_modalities, "dataset", "variant"),
        inference=rule_params(params.inference_params, "dataset", "variant"),
    script:
        "../../scripts/compute_comirs.py"
