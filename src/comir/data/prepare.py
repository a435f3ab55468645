"""From a dataset's configuration to the canonical pairs table (id, split, path_A, path_B)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from comir.data.pairs import Modality, discover_pairs, split_pairs, validate_pairs
from comir.data.records import convert_record
from comir.data.synthetic import SyntheticSpec, write_dataset
from comir.preprocess import rotation_crop
from comir.testset import TestSetRecipe

log = logging.getLogger(__name__)


def minimum_image_size(dataset: Mapping[str, Any], seed: int) -> int:
    """Smallest image side that training crops and the patches of every recipe test set fit into."""
    sizes = [rotation_crop(dataset["training"]["patch_size"])]
    sizes += [
        TestSetRecipe.from_config(testset, seed).min_source_size()
        for testset in dataset["testsets"].values()
        if testset["recipe"] != "prebuilt"  # a prebuilt test set comes with its own patches
    ]
    return max(sizes)


def prepare_dataset(
    dataset: Mapping[str, Any], seed: int, image_dir: Path, record: Path | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The pairs table (id, split, path_A, path_B) and a description of its origin (layout.json).

    ``record`` is the unpacked Zenodo record of a dataset of source ``zenodo``.
    """
    modalities = dataset["modalities"]
    mods = tuple(Modality(modalities[s]["name"], modalities[s]["channels"]) for s in ("A", "B"))
    layout: dict[str, Any] = {"source": dataset["source"]}
    if dataset["source"] == "synthetic":
        cfg = dataset["synthetic"]
        total = cfg["n_train"] + cfg["n_val"] + cfg["n_test"]
        spec = SyntheticSpec(n_images=total, size=cfg["size"], seed=seed)
        names = (mods[0].name, mods[1].name)
        ids = write_dataset(spec, image_dir, names)
        splits = ["train"] * cfg["n_train"] + ["val"] * cfg["n_val"] + ["test"] * cfg["n_test"]
        table = pd.DataFrame(
            {
                "id": ids,
                "split": splits,
                "path_A": [str((image_dir / names[0] / f"{i}.tif").resolve()) for i in ids],
                "path_B": [str((image_dir / names[1] / f"{i}.tif").resolve()) for i in ids],
            }
        )
    elif dataset["source"] == "zenodo":
        if record is None:
            raise ValueError("a dataset of source 'zenodo' needs its unpacked record")
        table, layout = convert_record(record, image_dir, mods, dataset["zenodo"])
    else:
        cfg = dataset["pairs"]
        found = discover_pairs(Path(cfg["root"]), mods, tuple(cfg["extensions"]))
        split = cfg["split"]
        table = split_pairs(
            found,
            train=split.get("train"),
            val=split.get("val"),
            test=split.get("test"),
            fractions=tuple(split["fractions"]) if split.get("fractions") else None,
            seed=seed,
        )
    validate_pairs(table, mods, minimum_image_size(dataset, seed))
    layout["pairs_per_split"] = {str(k): int(v) for k, v in table["split"].value_counts().sort_index().items()}
    log.info("pairs per split: %s", layout["pairs_per_split"])
    return table[["id", "split", "path_A", "path_B"]], layout
