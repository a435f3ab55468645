rule register:
    """One registration run in one direction over all cases of a test set, on the originals or on a
    variant's CoMIRs (with a calibration: each result's confidence; on a test set with a
    deformation: each result's target registration error)."""
    input:
        images=input_files(targets.registration_images, "dataset", "source", "testset"),
        originals=input_files(
            targets.registration_originals, "dataset", "source", "testset", "run"
        ),
        cases=rules.build_testset.output.cases,
        calibration=input_files(
            targets.registration_calibration, "dataset", "source", "testset", "run"
        ),
        # On a test set with a deformation: its patches' folder, which holds each case's truth.
        truth=input_files(targets.registration_truth, "dataset", "testset"),
    output:
        "results/{dataset}/{source}/registration/{testset}/{run}_{direction}.csv",
    log:
        "results/{dataset}/logs/{source}/register/{testset}/{run}_{direction}.log",
    benchmark:
        "results/{dataset}/benchmarks/{source}/register/{testset}/{run}_{direction}.tsv"
    # The runs of a method with a model of its own are rule register_accr's (workflow/rules/accr.smk).
    wildcard_constraints:
        run=alternatives(jobs.registration_runs(config, "register")) or "(?!)",
    # Registrations are many short, independent jobs: on a cluster they are submitted in
    # groups (profiles/slurm sets how many share one submission).
    group:
        "registration"
    conda:
        "../../envs/register.yaml"
    threads: config["threads"]["register"]
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        run=rule_params(params.registration_params, "dataset", "source", "run"),
        # Translated images are used as computed, like CoMIRs; the results name their model.
        image_input=lambda wc: params.image_input(wc.source),
        input_label=rule_params(params.input_label, "dataset", "source"),
        modalities=rule_params(params.image_modalities, "dataset"),
        seed=config["seed"],
    script:
        "../../scripts/register.py"


# A run whose deformable stage has save_fields: the register rule's job, which also writes each
# case's total field (<case>_field.h5) into a folder beside its CSV, to inspect a case.
use rule register as register_fields with:
    output:
        "results/{dataset}/{source}/registration/{testset}/{run}_{direction}.csv",
        fields=directory(
            "results/{dataset}/{source}/registration/{testset}/{run}_{direction}_fields"
        ),
    wildcard_constraints:
        run=alternatives(jobs.registration_runs(config, "register_fields")) or "(?!)",


# A calibrated run on CoMIRs with each reference against the floating patch of another place (every
# result wrong; docs/method.md, section 15): how often its confidence accepts a pair with nothing
# to register. The script tells it from the register rule by its name.
use rule register as register_unrelated with:
    output:
        "results/{dataset}/{source}/registration/{testset}/unrelated/{run}_{direction}.csv",
    log:
        "results/{dataset}/logs/{source}/register/{testset}/unrelated/{run}_{direction}.log",
    benchmark:
        "results/{dataset}/benchmarks/{source}/register/{testset}/unrelated/{run}_{direction}.tsv"
