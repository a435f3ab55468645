rule register:
    """One registration method on one input (CoMIRs or originals) in one direction, all test cases."""
    input:
        images=registration_images,
        cases="results/{dataset}/testset/cases.csv",
    output:
        "results/{dataset}/registration/{run}_{input}_{direction}.csv",
    log:
        "results/{dataset}/logs/register/{run}_{input}_{direction}.log",
    benchmark:
        "results/{dataset}/benchmarks/register/{run}_{input}_{direction}.tsv"
    conda:
        "../../envs/register.yaml"
    threads: config["threads"]["register"]
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        spec=lambda wc: DATASETS[wc.dataset]["registration"][wc.run],
        dataset=dataset_config,
        seed=config["seed"],
    script:
        "../../scripts/register.py"
