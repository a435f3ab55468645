# ACCR (docs/explanation/accr.md), with a dataset's `accr` section: stage 2 after a variant's CoMIR
# training (its networks are the encoders), the registration runs with method accr (rule
# register, in an environment with PyTorch) and the attention figure of each test set's first pair.


rule train_accr:
    """Train a variant's ACCR model (stage 2): cross-modal attention and a registration head on its two
    CoMIR networks, on the training pairs moved by known random transforms."""
    input:
        encoders=trained_model,
        pairs=rules.prepare_data.output.pairs,
    output:
        model="results/{dataset}/{variant}/model/accr.pt",
        history="results/{dataset}/{variant}/model/accr_loss.csv",
    log:
        "results/{dataset}/logs/{variant}/train_accr.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/train_accr.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["threads"]["train"]
    resources:
        mem_mb=8000,
        runtime=600,
        gpu=rule_params(params.accr_gpu, "dataset", "variant"),
    params:
        accr=rule_params(params.accr_params, "dataset", "variant"),
        seed=config["seed"],
    script:
        "../../scripts/train_accr.py"


# The register rule's script, with its own inputs and an environment with PyTorch.
use rule register as register_accr with:
    """One registration run with method accr (comir.register.MODEL_METHODS) in one direction over all
    cases of a test set: the variant's ACCR model registers the original patches as its networks read
    them; the rows are those of every run."""
    input:
        images=rules.build_testset.output.images,
        cases=rules.build_testset.output.cases,
        truth=input_files(targets.registration_truth, "dataset", "testset"),
        model=input_files(targets.accr_model, "dataset", "source"),
        # A calibrated run (the dataset's confidence section): its results are judged on the CoMIRs.
        calibration=input_files(
            targets.registration_calibration, "dataset", "source", "testset", "run"
        ),
        evidence=input_files(
            targets.registration_evidence, "dataset", "source", "testset", "run"
        ),
    wildcard_constraints:
        run=alternatives(jobs.registration_runs(config, "register_accr")) or "(?!)",
    conda:
        "../../envs/accr.yaml"
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=rule_params(params.registration_gpu, "dataset", "source", "run"),
    params:
        run=rule_params(params.registration_params, "dataset", "source", "run"),
        image_input=ORIGINAL,
        input_label=rule_params(params.input_label, "dataset", "source"),
        modalities=rule_params(params.network_input_modalities, "dataset", "source"),
        seed=config["seed"],


# A calibrated ACCR run with each reference against the floating patch of another place (rule
# register_unrelated's counterpart; every result wrong).
use rule register_accr as register_accr_unrelated with:
    output:
        "results/{dataset}/{source}/registration/{testset}/unrelated/{run}_{direction}.csv",
    log:
        "results/{dataset}/logs/{source}/register/{testset}/unrelated/{run}_{direction}.log",
    benchmark:
        "results/{dataset}/benchmarks/{source}/register/{testset}/unrelated/{run}_{direction}.tsv"


rule accr_attention:
    """Where a variant's ACCR model attends: reference locations of a test set's first pair and their
    attention over the floating image."""
    input:
        model=rules.train_accr.output.model,
        images=rules.build_testset.output.images,
        cases=rules.build_testset.output.cases,
    output:
        figure=report(
            "results/{dataset}/{variant}/accr/{testset}/attention.png",
            caption="../report/attention.rst",
            category="ACCR",
            subcategory="{dataset} / {variant}",
            labels={"test set": "{testset}", "figure": "attention"},
        ),
    log:
        "results/{dataset}/logs/{variant}/accr_attention/{testset}.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/accr_attention/{testset}.tsv"
    conda:
        "../../envs/accr.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        attention=rule_params(params.attention_params, "dataset", "variant"),
    script:
        "../../scripts/accr_attention.py"
