"""From a dataset's configuration to the canonical pairs table (id, split, path_A, path_B, height, width).

Only the files are checked here (readable, channels, equal sizes, finite pixels, value range);
whether an image is large enough depends on the training patch and the test sets, and is
checked by the stages that need it (:func:`comir.imaging.preprocess.check_image_sizes`), so that
changing those settings does not redo the data (docs/how-to/ablations.md, "A changed setting
reruns only the jobs it affects").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from comir.data.convert import convert_record
from comir.data.pairs import Modality, discover_pairs, split_pairs, validate_pairs
from comir.data.synthetic import SyntheticSpec, write_dataset

log = logging.getLogger(__name__)

PAIRS_TABLE_COLUMNS = ("id", "split", "path_A", "path_B", "height", "width")


def prepare_dataset(
    dataset: Mapping[str, Any], seed: int, image_dir: Path, record: Path | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The pairs table (id, split, path_A, path_B, height, width) and a description of its origin (layout.json).

    Parameters
    ----------
    dataset : Mapping[str, Any]
        The dataset's configuration: ``source`` (``"synthetic"``, ``"zenodo"`` or ``"pairs"``), that
        source's section and ``modalities`` (name, channels, max_value).
    seed : int
        Seed of the synthetic images and of a split by fractions.
    image_dir : pathlib.Path
        Where synthetic or converted images are written.
    record : pathlib.Path or None, optional
        The unpacked Zenodo record of a dataset of source ``zenodo``. Default None.

    Returns
    -------
    table : pandas.DataFrame
        Columns ``id, split, path_A, path_B, height, width``.
    layout : dict[str, Any]
        The origin's description: ``source``, ``pairs_per_split`` and, for a Zenodo record, what
        :func:`comir.data.convert.convert_record` describes.

    Raises
    ------
    comir.io.InputError
        If a modality, the data or the split is invalid (files named).
    ValueError
        If a ``zenodo`` dataset is given without ``record``.
    """
    modalities = dataset["modalities"]
    mods = tuple(
        Modality(modalities[s]["name"], modalities[s]["channels"], modalities[s].get("max_value")) for s in ("A", "B")
    )
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
        found = discover_pairs(cfg["root"], mods, tuple(cfg["extensions"]))
        split = cfg["split"]
        table = split_pairs(
            found,
            train=split.get("train"),
            val=split.get("val"),
            test=split.get("test"),
            fractions=tuple(split["fractions"]) if split.get("fractions") else None,
            seed=seed,
        )
    table = table.reset_index(drop=True)
    sizes = validate_pairs(table, mods)["sizes"]
    table["height"] = [h for h, _ in sizes]
    table["width"] = [w for _, w in sizes]
    layout["pairs_per_split"] = {str(k): int(v) for k, v in table["split"].value_counts().sort_index().items()}
    log.info("pairs per split: %s", layout["pairs_per_split"])
    return table[list(PAIRS_TABLE_COLUMNS)], layout
