# The representations themselves (paper section 4.1; docs/representation.md): equivariance of
# each variant's CoMIRs to rotations and translations, and their reproducibility across short
# training runs of the dataset's network. Each measurement runs where the dataset's
# `representation` section turns it on.


rule equivariance:
    """Rotation (paper Fig. 2) and translation equivariance of one variant's CoMIRs on test images."""
    input:
        model=trained_model,
        pairs=rules.prepare_data.output.pairs,
    output:
        rotation="results/{dataset}/{variant}/representation/equivariance_rotation.csv",
        rotation_md="results/{dataset}/{variant}/representation/equivariance_rotation.md",
        translation=representation_report(
            "results/{dataset}/{variant}/representation/equivariance_translation.csv",
            "equivariance",
            "{dataset} / {variant}",
            "table",
            "translation equivariance",
        ),
        translation_md="results/{dataset}/{variant}/representation/equivariance_translation.md",
        figure=representation_report(
            "results/{dataset}/{variant}/representation/equivariance.png",
            "equivariance",
            "{dataset} / {variant}",
            "figure",
            "rotation equivariance",
        ),
    log:
        "results/{dataset}/logs/{variant}/equivariance.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/equivariance.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]["comir"]
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=lambda wc: params.gpu(config, wc.dataset, "inference", wc.variant),
    params:
        settings=lambda wc: params.representation_settings(
            config, wc.dataset, "equivariance"
        ),
        inference=rule_params(params.inference_params, "dataset", "variant"),
    script:
        "../../scripts/equivariance.py"


rule equivariance_comparison:
    """Rotation equivariance of every variant of a dataset in one polar plot (e.g. C4 on and off, paper Fig. 2)."""
    input:
        tables=input_files(targets.rotation_tables, "dataset"),
    output:
        representation_report(
            "results/{dataset}/representation/equivariance_variants.png",
            "equivariance",
            "{dataset}",
            "figure",
            "rotation equivariance of the variants",
        ),
    log:
        "results/{dataset}/logs/equivariance_comparison.log",
    benchmark:
        "results/{dataset}/benchmarks/equivariance_comparison.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        variants=rule_params(jobs.sorted_variants, "dataset"),
    script:
        "../../scripts/equivariance_plot.py"


rule reproducibility:
    """Paper Table 1: mean pairwise correlation of the CoMIRs of short training runs with bootstrap intervals."""
    input:
        pairs=rules.prepare_data.output.pairs,
    output:
        table=representation_report(
            "results/{dataset}/representation/reproducibility.csv",
            "reproducibility",
            "{dataset}",
            "table",
            "reproducibility",
        ),
        markdown="results/{dataset}/representation/reproducibility.md",
        pairwise="results/{dataset}/representation/reproducibility_pairs.csv",
        figure=representation_report(
            "results/{dataset}/representation/reproducibility.png",
            "reproducibility",
            "{dataset}",
            "figure",
            "reproducibility",
        ),
    log:
        "results/{dataset}/logs/reproducibility.log",
    benchmark:
        "results/{dataset}/benchmarks/reproducibility.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]["train"]
    resources:
        mem_mb=8000,
        # The paper's settings train 110 networks: hours on a GPU.
        runtime=1440,
        gpu=lambda wc: params.gpu(config, wc.dataset, "training"),
    params:
        network=rule_params(params.dataset_network_params, "dataset"),
        settings=lambda wc: params.representation_settings(
            config, wc.dataset, "reproducibility"
        ),
        seed=config["seed"],
    script:
        "../../scripts/reproducibility.py"
