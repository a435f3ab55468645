# Helpers for the stage files: configuration look-ups and the list of final outputs.

DATASETS = config["datasets"]


def dataset_config(wildcards):
    return DATASETS[wildcards.dataset]


def registration_jobs(dataset):
    """(run name, input, direction) of every registration of a dataset."""
    cfg = DATASETS[dataset]
    return [
        (name, image_input, direction)
        for name, spec in cfg["registration"].items()
        for image_input in spec["inputs"]
        for direction in cfg["directions"]
    ]


def registration_images(wildcards):
    if wildcards.input == "comir":
        return f"results/{wildcards.dataset}/comir/images"
    return f"results/{wildcards.dataset}/testset/images"


def registration_csvs(wildcards):
    return [
        f"results/{wildcards.dataset}/registration/{name}_{image_input}_{direction}.csv"
        for name, image_input, direction in registration_jobs(wildcards.dataset)
    ]


def final_outputs():
    outputs = []
    for dataset in DATASETS:
        outputs += [
            f"results/{dataset}/model/loss.png",
            f"results/{dataset}/comir/examples.png",
            f"results/{dataset}/tables/success.md",
            f"results/{dataset}/tables/wilcoxon.md",
            f"results/{dataset}/figures/ecdf.png",
            f"results/{dataset}/figures/error_vs_displacement.png",
            f"results/{dataset}/figures/success.png",
        ]
    return outputs
