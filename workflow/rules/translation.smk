rule train_translation:
    """Train one GAN translation baseline (pix2pix, CycleGAN or DRIT) on the training pairs."""
    input:
        pairs=rules.prepare_data.output.pairs,
    output:
        model="results/{dataset}/translation/{translator}/model.pt",
        history="results/{dataset}/translation/{translator}/loss.csv",
        plot=report(
            "results/{dataset}/translation/{translator}/loss.png",
            caption="../report/translation_loss.rst",
            category="Translation baselines",
            labels={"dataset": "{dataset}", "model": "{translator}", "figure": "loss"},
        ),
    log:
        "results/{dataset}/logs/translation/{translator}/train.log",
    benchmark:
        "results/{dataset}/benchmarks/translation/{translator}/train.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]["train"]
    resources:
        mem_mb=8000,
        runtime=1440,
        gpu=lambda wc: params.gpu(config, wc.dataset, "training"),
    params:
        translation=rule_params(params.translation_params, "dataset", "translator"),
        seed=config["seed"],
    script:
        "../../scripts/train_translation.py"


rule translate:
    """Every test patch of each modality translated into the other by one translation model."""
    input:
        model=rules.train_translation.output.model,
        images=rules.build_testset.output.images,
        cases=rules.build_testset.output.cases,
    output:
        images=directory("results/{dataset}/translation/{translator}/{testset}/images"),
    log:
        "results/{dataset}/logs/translation/{translator}/translate_{testset}.log",
    benchmark:
        "results/{dataset}/benchmarks/translation/{translator}/translate_{testset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]["comir"]
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=lambda wc: params.gpu(config, wc.dataset, "training"),
    params:
        modalities=rule_params(params.image_modalities, "dataset"),
        device=lambda wc: DATASETS[wc.dataset]["training"]["device"],
    script:
        "../../scripts/translate.py"


rule translation_examples:
    """The paper's Fig. 3: a test pair, its translations by every model and the variant's CoMIRs."""
    input:
        unpack(
            input_files(
                targets.translation_examples_input, "dataset", "variant", "testset"
            )
        ),
    output:
        report(
            "results/{dataset}/{variant}/comir/{testset}/translations.png",
            caption="../report/translation_examples.rst",
            category="Translation baselines",
            labels={
                "dataset": "{dataset}",
                "variant": "{variant}",
                "test set": "{testset}",
                "figure": "Fig. 3",
            },
        ),
    log:
        "results/{dataset}/logs/{variant}/translation_examples/{testset}.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/translation_examples/{testset}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        models=lambda wc: sorted(DATASETS[wc.dataset]["translation"]),
        modalities=rule_params(params.modality_names, "dataset"),
    script:
        "../../scripts/translation_examples.py"
