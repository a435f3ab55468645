"""Data sets: where the aligned pairs come from (a record's prebuilt test sets: :mod:`comir.testset.prebuilt`).

- :mod:`comir.data.prepare`: from a dataset's configuration to the pipeline's pairs table.
- :mod:`comir.data.pairs`: discover, validate and split a user's folder ``root/<modality>/<id>.<ext>``.
- :mod:`comir.data.synthetic`: a deterministic two-modality data set that shares only part of its structure.
- :mod:`comir.data.zenodo`: download, verify and unpack a Zenodo record, online or offline (a package:
  record, files, transfer, offline, download, unpack).
- :mod:`comir.data.layouts`: recognise the layout of an unpacked record (pairs, images, test sets; a
  package: tree, result, metadata, detect).
- :mod:`comir.data.convert`: convert a record's aligned pairs to the canonical ``<modality>/<id>.tif``.
"""

from comir.data.pairs import (
    PAIRS_COLUMNS,
    SPLITS,
    Modality,
    discover_pairs,
    split_pairs,
    validate_pairs,
)
from comir.data.synthetic import SyntheticSpec, generate_pair, render_pair, write_dataset

__all__ = [
    "PAIRS_COLUMNS",
    "SPLITS",
    "Modality",
    "SyntheticSpec",
    "discover_pairs",
    "generate_pair",
    "render_pair",
    "split_pairs",
    "validate_pairs",
    "write_dataset",
]
