# Calibrated confidence of the registrations on CoMIRs (config `confidence`; docs/method.md,
# section 15): fitted per variant and run on the calibration test set (validation split), judged
# on every other test set.


rule calibrate:
    """The calibration of one registration run on one variant's CoMIRs: evidence of its results on
    the calibration test set and on unrelated pairs, a logistic fit, the threshold, reliability.
    """
    input:
        images=lambda wc: calibration_testset(wc, rules.compute_comirs.output.comirs),
        cases=lambda wc: calibration_testset(wc, rules.build_testset.output.cases),
        registrations=lambda wc: calibration_results(wc, rules.register.output[0]),
        unrelated=lambda wc: calibration_results(wc, rules.register_unrelated.output[0]),
    output:
        calibration=f"{CALIBRATION}.json",
        evidence=f"{CALIBRATION}_evidence.csv",
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
        modalities=image_modalities,
        confidence=lambda wc: canonical(
            pick(
                DATASETS[wc.dataset]["confidence"],
                ("success_fraction", "false_accept_rate"),
            )
        ),
        seed=config["seed"],
    script:
        "../../scripts/calibrate.py"


rule evaluate_confidence:
    """How well the confidence separates right from wrong on one test set: of the accepted, how
    many are right; of the right, how many are accepted; unrelated pairs accepted; a reliability
    diagram beside the calibration data's."""
    input:
        registrations=lambda wc: judged_results(wc, rules.register.output[0]),
        unrelated=lambda wc: judged_results(wc, rules.register_unrelated.output[0]),
        calibrations=lambda wc: calibration_files(wc, ".json"),
        evidence=lambda wc: calibration_files(wc, "_evidence.csv"),
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
        runs=lambda wc: calibrated_runs(wc.dataset),
    script:
        "../../scripts/evaluate_confidence.py"


rule calibrate_model:
    """A variant's model file with the calibration of every calibrated run inside, for the apply
    stage and the command line (python -m comir register judges with it)."""
    input:
        model=trained_model,
        calibrations=lambda wc: expand(
            f"{CALIBRATION}.json",
            dataset=wc.dataset,
            variant=wc.variant,
            run=calibrated_runs(wc.dataset),
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
        runs=lambda wc: [
            canonical(
                pick(DATASETS[wc.dataset]["registration"][run], ("method", "params"))
            )
            for run in calibrated_runs(wc.dataset)
        ],
    script:
        "../../scripts/calibrate_model.py"
