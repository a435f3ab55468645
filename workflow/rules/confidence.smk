# Calibrated confidence of the registrations on CoMIRs (config `confidence`; docs/method.md,
# section 15): fitted per variant and run on the calibration test set (validation split), judged
# on every other test set.


rule calibrate:
    """The calibration of one registration run on one variant's CoMIRs: evidence of its results on
    the calibration test set and on unrelated pairs, a logistic fit, the threshold, reliability.
    """
    input:
        unpack(input_files(targets.calibrate_input, "dataset", "variant", "run")),
    output:
        calibration="results/{dataset}/{variant}/confidence/{run}.json",
        evidence="results/{dataset}/{variant}/confidence/{run}_evidence.csv",
    log:
        "results/{dataset}/logs/{variant}/calibrate/{run}.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/calibrate/{run}.tsv"
    conda:
        "../../envs/register.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        modalities=rule_params(params.image_modalities, "dataset"),
        confidence=rule_params(params.confidence_params, "dataset"),
        seed=config["seed"],
    script:
        "../../scripts/calibrate.py"


rule evaluate_confidence:
    """How well the confidence separates right from wrong on one test set: of the accepted, how
    many are right; of the right, how many are accepted; unrelated pairs accepted; a reliability
    diagram beside the calibration data's."""
    input:
        unpack(
            input_files(
                targets.evaluate_confidence_input, "dataset", "variant", "testset"
            )
        ),
    output:
        table=evaluation_report(
            f"{EVALUATION}/tables/confidence.csv", "confidence", "table", "confidence"
        ),
        markdown=f"{EVALUATION}/tables/confidence.md",
        figure=evaluation_report(
            f"{EVALUATION}/figures/reliability.png",
            "confidence",
            "figure",
            "reliability",
        ),
    log:
        "results/{dataset}/logs/{variant}/evaluate_confidence/{testset}.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/evaluate_confidence/{testset}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        success_fraction=lambda wc: DATASETS[wc.dataset]["confidence"][
            "success_fraction"
        ],
        runs=rule_params(jobs.calibrated_runs, "dataset", "variant"),
    script:
        "../../scripts/evaluate_confidence.py"


rule calibrate_model:
    """A variant's model file with the calibration of every calibrated run inside, for the apply
    stage and the command line (python -m comir register judges with it)."""
    input:
        model=trained_model,
        calibrations=lambda wc: files(
            targets.calibration_files(config, wc.dataset, wc.variant, "calibration")
        ),
    output:
        "results/{dataset}/{variant}/model/comir-calibrated.pt",
    log:
        "results/{dataset}/logs/{variant}/calibrate_model.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/calibrate_model.tsv"
    conda:
        "../../envs/apply.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=rule_params(params.calibrated_run_specs, "dataset", "variant"),
    script:
        "../../scripts/calibrate_model.py"


# The same for a variant's ACCR model file (its encoders are the variant's networks, so it holds
# the calibrations of every calibrated run, ACCR's among them): the apply stage's model for method accr.
use rule calibrate_model as calibrate_accr_model with:
    input:
        model=input_files(targets.accr_model, "dataset", "variant"),
        calibrations=lambda wc: files(
            targets.calibration_files(config, wc.dataset, wc.variant, "calibration")
        ),
    output:
        "results/{dataset}/{variant}/model/accr-calibrated.pt",
    log:
        "results/{dataset}/logs/{variant}/calibrate_accr_model.log",
    benchmark:
        "results/{dataset}/benchmarks/{variant}/calibrate_accr_model.tsv"
