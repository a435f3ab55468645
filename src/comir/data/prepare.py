"""From a dataset's configuration to the canonical pairs table (id, split, path_A, path_B)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from comir.data.pairs import Modality, discover_pairs, split_pairs, validate_pairs
from comir.data.synthetic import SyntheticSpec, write_dataset
from comir.preprocess import rotation_crop
from comir.testset import TestSetRecipe

log = logging.getLogger(__name__)


def minimum_image_size(dataset: Mapping[str, Any], seed: int) -> int:
    """Smallest image side that both training crops and test-set patches fit into."""
    recipe = TestSetRecipe.from_config(dataset["testset"], seed)
    return max(recipe.min_source_size(), rotation_crop(dataset["training"]["patch_size"]))


def prepare_dataset(dataset: Mapping[str, Any], seed: int, image_dir: Path) -> pd.DataFrame:
    modalities = dataset["modalities"]
    if dataset["source"] == "synthetic":
        cfg = dataset["synthetic"]
        total = cfg["n_train"] + cfg["n_val"] + cfg["n_test"]
        spec = SyntheticSpec(n_images=total, size=cfg["size"], seed=seed)
        names = (modalities["A"]["name"], modalities["B"]["name"])
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
        mods = (Modality(names[0], modalities["A"]["channels"]), Modality(names[1], modalities["B"]["channels"]))
    else:
        cfg = dataset["pairs"]
        mods = tuple(Modality(modalities[s]["name"], modalities[s]["channels"]) for s in ("A", "B"))
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
    log.info("pairs per split: %s", table["split"].value_counts().to_dict())
    return table[["id", "split", "path_A", "path_B"]]
